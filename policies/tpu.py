"""TPU shape, chip counts, fit and GKE versions: a slice that no pod can use, or a pod that can
never run on the slice it selects, is paid for by the hour until someone notices."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from components import facts, models, sizing
from components.errors import ConfigError
from policies.k8s import (
    MULTI_HOST_KINDS,
    UNKNOWN,
    Container,
    Flags,
    PodTemplate,
    at,
    kube_object,
    plain,
    pod_templates,
    stack_objects,
    whole,
)

CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
# How GKE names TPU machine types: a misspelt one is reported, not taken for a CPU machine.
TPU_MACHINE = re.compile(r"(ct\d+[a-z]*|tpu\d+[a-z]*)-")
ACC, TOPO, TPU = facts.ACCELERATOR_LABEL, facts.TOPOLOGY_LABEL, facts.TPU_RESOURCE


@dataclass(frozen=True)
class Placement:
    """Where a pod's TPU node selectors put it: the generation, the topology, and the slices of
    that topology a pod of this workload can run on (one VM each, unless built for multi-host)."""

    generation: facts.Generation
    topology: str
    slices: tuple[facts.Slice, ...]

    @property
    def chips_per_pod(self) -> list[int]:
        return sorted({s.chips_per_vm for s in self.slices})

    def slice_for(self, chips: Any) -> facts.Slice:
        return next((s for s in self.slices if s.chips_per_vm == chips), self.slices[0])


def placement(pod: PodTemplate) -> Placement | None:
    accelerator, topology = pod.selector(ACC), pod.selector(TOPO)
    if not isinstance(accelerator, str) or not isinstance(topology, str) or accelerator not in facts.ACCELERATOR_TO_GENERATION:
        return None
    generation = facts.GENERATIONS[facts.ACCELERATOR_TO_GENERATION[accelerator]]
    slices = tuple(s for s in generation.slices_of(topology) if pod.multi_host or not s.multi_host)
    return Placement(generation, topology, slices) if slices else None


def _pods(args: ResourceValidationArgs) -> Iterator[PodTemplate]:
    obj = kube_object(args.resource_type, args.props, args.urn)
    if obj is not None:
        yield from pod_templates(obj)


def _single_host(generation: facts.Generation) -> str:
    return ", ".join(t for t in generation.topologies if generation.single_host_slice(t))


def _flag_number(flags: Flags, name: str, default: Any, parse: Callable[[Any], Any] = whole) -> Any:
    """A numeric flag, its default when absent, UNKNOWN when unreadable, None when malformed."""
    value = flags.get(name)
    if value is None or value is UNKNOWN:
        return default if value is None else value
    try:
        return parse(value)
    except ValueError:
        return None


def _serving(pod: PodTemplate) -> Iterator[tuple[Container, str]]:
    """vLLM containers that serve a model (a multi-host worker that only joins the group has none)."""
    for container in pod.vllm:
        model = container.served_model
        if isinstance(model, str):
            yield container, model


# --- tpu-pod-topology ----------------------------------------------------------------------------
def validate_pod_topology(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for pod in _pods(args):
        accelerator, topology, chips = pod.selector(ACC), pod.selector(TOPO), pod.tpu_chips
        if UNKNOWN in (accelerator, topology):
            continue
        if accelerator is None and topology is None:
            if isinstance(chips, int) and chips > 0:
                report(
                    f"{pod.label}: requests {chips} {TPU} but has neither node selector {ACC} nor {TOPO}; Autopilot rejects "
                    f"the pod and Standard cannot tell which slice it needs. Set both in spec.nodeSelector.",
                    None,
                )
            continue
        if accelerator is None or topology is None:
            have, missing = (f"{TOPO}={topology}", ACC) if accelerator is None else (f"{ACC}={accelerator}", TOPO)
            report(
                f"{pod.label}: selects {have} but no {missing}; Autopilot requires both TPU node selectors and "
                f"Standard places the pod on any slice that matches the one given. Add {missing}.",
                None,
            )
            continue
        if accelerator not in facts.ACCELERATOR_TO_GENERATION:
            known = ", ".join(facts.ACCELERATOR_TO_GENERATION)
            report(f"{pod.label}: {ACC}={accelerator} is no GKE TPU accelerator; use one of {known}.", None)
            continue
        generation = facts.GENERATIONS[facts.ACCELERATOR_TO_GENERATION[accelerator]]
        shapes = generation.slices_of(topology)
        if not shapes:
            offered = ", ".join(generation.topologies)
            report(f"{pod.label}: {TOPO}={topology} is not a {generation.name} topology; {accelerator} offers {offered}.", None)
        elif not pod.multi_host and generation.single_host_slice(topology) is None:
            report(
                f"{pod.label}: {TOPO}={topology} is a multi-host slice ({shapes[0].vms} VMs of {shapes[0].machine_type}) but a "
                f"{pod.owner.kind} pod runs on one VM and never gets the slice; choose a single-host topology "
                f"({_single_host(generation)}) or a multi-host workload ({', '.join(MULTI_HOST_KINDS)}).",
                None,
            )


# --- tpu-chip-request ----------------------------------------------------------------------------
def validate_chip_request(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for pod in _pods(args):
        for container in pod.containers:
            requested, limit = container.tpu("requests"), container.tpu("limits")
            if UNKNOWN in (requested, limit) or requested is None:
                continue  # a limit alone is fine: Kubernetes copies an extended resource's limit into its request
            if limit is None:
                report(
                    f"{container.label}: requests {requested} {TPU} without a limit; Kubernetes rejects an extended-resource "
                    f"request without an equal limit. Set resources.limits.{TPU}: {requested}.",
                    None,
                )
            elif requested != limit:
                report(
                    f"{container.label}: {TPU} request {requested} differs from its limit {limit}; TPU chips cannot be "
                    f"overcommitted and the API server rejects the pod. Set both to the same count.",
                    None,
                )
        chips, where = pod.tpu_chips, placement(pod)
        if chips is UNKNOWN or where is None:
            continue
        allowed = where.chips_per_pod
        wanted = " or ".join(map(str, allowed))
        accelerator = where.generation.accelerator
        if chips == 0:
            report(
                f"{pod.label}: selects {accelerator} {where.topology} but requests no {TPU}; only pods that request chips "
                f"tolerate TPU nodes, so it stays Pending. Request {wanted} in resources.limits.",
                None,
            )
        elif chips not in allowed:
            machines = ", ".join(sorted({s.machine_type for s in where.slices}))
            other = next((s for s in where.generation.slices_of(where.topology) if s not in where.slices and s.chips_per_vm == chips), None)
            hint = (
                f" {chips} chips per pod is the {other.vms}-node form of {where.topology} on {other.machine_type}, "
                f"which one {pod.owner.kind} pod cannot span."
                if other
                else ""
            )
            report(
                f"{pod.label}: requests {chips} {TPU} but a pod on {accelerator} {where.topology} must take all {wanted} chips "
                f"of its node ({machines}); request {wanted} in requests and limits.{hint}",
                None,
            )


# --- tpu-tensor-parallel -------------------------------------------------------------------------
def validate_tensor_parallel(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for pod in _pods(args):
        chips, where = pod.tpu_chips, placement(pod)
        if where is None or not isinstance(chips, int) or chips == 0:
            continue
        # A multi-host group shards over every chip of the slice; a single-host pod over its own.
        total = where.slice_for(chips).chips if pod.multi_host else chips
        for container, _ in _serving(pod):
            flags = container.flags
            tp = _flag_number(flags, "tensor-parallel-size", facts.VLLM_DEFAULT_PARALLEL_SIZE)
            pp = _flag_number(flags, "pipeline-parallel-size", facts.VLLM_DEFAULT_PARALLEL_SIZE)
            if not isinstance(tp, int) or not isinstance(pp, int) or tp * pp == total:
                continue
            fix = f"--tensor-parallel-size={total}" if pp == 1 else f"--tensor-parallel-size x --pipeline-parallel-size = {total}"
            report(
                f"{container.label}: --tensor-parallel-size={tp}"
                + (f" x --pipeline-parallel-size={pp}" if pp != 1 else "")
                + f" uses {tp * pp} chips but the {'slice' if pod.multi_host else 'pod'} holds {total} ({where.topology}); "
                f"vLLM on TPU must shard over all of them. Set {fix}.",
                None,
            )


# --- model-fits-hbm ------------------------------------------------------------------------------
def validate_model_fits(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for pod in _pods(args):
        where = placement(pod)
        if where is None:
            continue
        chips = pod.tpu_chips
        tpu_slice = where.slice_for(chips)
        for container, model in _serving(pod):
            arch = models.lookup(model)
            if arch is None:
                continue
            flags = container.flags
            max_len = _flag_number(flags, "max-model-len", arch.max_context)
            utilization = _flag_number(flags, "gpu-memory-utilization", facts.VLLM_DEFAULT_GPU_MEMORY_UTILIZATION, float)
            if not isinstance(max_len, int) or not isinstance(utilization, float):
                continue
            try:
                sizing.resolve(
                    key=f"{container.label} --model",
                    arch=arch,
                    generation=where.generation,
                    topology=tpu_slice.topology,
                    machine_type=tpu_slice.machine_type,
                    max_model_len=max_len,
                    concurrency=1,
                    memory_utilization=utilization,
                    allow_multi_host=tpu_slice.multi_host,
                )
            except ConfigError as error:
                report(
                    f"{container.label}: {model} on {where.generation.name} {tpu_slice.topology} at --max-model-len={max_len} and "
                    f"--gpu-memory-utilization={utilization:g}: {error.allowed}. Select a larger topology (and its chips) or a "
                    f"lower --max-model-len, or vLLM fails at start-up (RESOURCE_EXHAUSTED on HBM).",
                    None,
                )


# --- tpu-node-pool-shape -------------------------------------------------------------------------
ALLOW_MULTI_HOST = "allowMultiHost"


def validate_node_pool_shape(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NODE_POOL:
        return
    props = plain(args.props)
    machine, topology, kind = (
        at(props, *path) for path in (("nodeConfig", "machineType"), ("placementPolicy", "tpuTopology"), ("placementPolicy", "type"))
    )
    if UNKNOWN in (machine, topology):
        return
    label = f"NodePool {args.name}"
    known = facts.machine_type_info(machine) if isinstance(machine, str) else None
    if known is None:
        names = ", ".join(m.name for g in facts.GENERATIONS.values() for m in g.machine_types)
        if isinstance(machine, str) and TPU_MACHINE.match(machine):
            report(f"{label}: nodeConfig.machineType {machine} is no TPU machine type GKE offers; known: {names}.", None)
        elif topology is not None:
            report(f"{label}: placementPolicy.tpuTopology {topology} on {machine}, which has no TPUs; use one of {names}.", None)
        return
    generation, machine_type = known
    if topology is None:
        return  # a single-host pool takes its topology from the machine type
    shapes = generation.slices_of(topology)
    formed = [s for s in shapes if s.machine_type == machine]
    if not shapes:
        offered = ", ".join(generation.topologies)
        report(f"{label}: tpuTopology {topology} is not a {generation.name} topology; {generation.name} offers {offered}.", None)
        return
    if not formed:
        makers = " or ".join(sorted({s.machine_type for s in shapes}))
        chips = machine_type.chips
        report(f"{label}: {machine} ({chips} chips per VM) cannot form {generation.name} {topology}; it is built from {makers}.", None)
        return
    shape = formed[0]
    if not shape.multi_host:
        report(
            f"{label}: {topology} on {machine} is a single-host slice, and GKE refuses a topology for its pool "
            f'("{facts.SINGLE_HOST_TOPOLOGY_REFUSED}"). Remove placementPolicy: the nodes are labelled {topology} anyway.',
            None,
        )
        return
    allowed = bool(args.get_config().get(ALLOW_MULTI_HOST, False))
    single = generation.single_host_slice(topology)
    if single is not None:
        report(
            f"{label}: {topology} on {machine} is {shape.vms} nodes of {shape.chips_per_vm} chips; a pod that needs all {shape.chips} "
            f"chips on one node never schedules there. Use {single.machine_type} for a single-host {topology}.",
            None,
        )
    elif not allowed:
        report(
            f"{label}: {topology} is a multi-host slice ({shape.vms} VMs of {machine}, interrupted and replaced as a unit) "
            f"and this stack serves single-host workloads; choose {_single_host(generation)}, or set {ALLOW_MULTI_HOST} "
            f"in the policy config for a multi-host ({', '.join(MULTI_HOST_KINDS)}) workload.",
            None,
        )
    if kind is not UNKNOWN and kind != "COMPACT":
        given = "not set" if kind is None else repr(kind)
        report(f"{label}: placementPolicy.type is {given}; GKE forms a multi-host TPU slice only with COMPACT placement.", None)


# --- tpu-node-pool-match (stack) -----------------------------------------------------------------
def _pool_shape(props: dict[str, Any]) -> Any:
    """(accelerator, topology) a TPU node pool offers; None for other pools; UNKNOWN when unreadable."""
    machine, topology = at(props, "nodeConfig", "machineType"), at(props, "placementPolicy", "tpuTopology")
    if UNKNOWN in (machine, topology):
        return UNKNOWN
    known = facts.machine_type_info(machine) if isinstance(machine, str) else None
    if known is None:
        return None
    generation = known[0]
    if topology is None:
        topology = next((s.topology for s in generation.slices if s.machine_type == machine and not s.multi_host), None)
    return generation.accelerator, topology


def _standard_without_auto_provisioning(args: StackValidationArgs) -> bool:
    clusters = [plain(r.props) for r in args.resources if r.resource_type == CLUSTER]
    return bool(clusters) and all(
        at(c, "enableAutopilot") in (None, False) and at(c, "clusterAutoscaling", "enabled") in (None, False) for c in clusters
    )


def validate_node_pool_match(args: StackValidationArgs, report: ReportViolation) -> None:
    if not _standard_without_auto_provisioning(args):
        return  # Autopilot and node auto-provisioning create nodes for what pods select
    pools = {r.name: _pool_shape(plain(r.props)) for r in args.resources if r.resource_type == NODE_POOL}
    if UNKNOWN in pools.values():
        return
    offered = {shape: name for name, shape in pools.items() if shape is not None}
    listing = "; ".join(f"{name}: {a} {t}" for (a, t), name in offered.items()) or "none"
    for obj in stack_objects(args.resources):
        for pod in pod_templates(obj):
            where = placement(pod)
            if where is None or (where.generation.accelerator, where.topology) in offered:
                continue  # tpu-pod-topology reports selectors that name no slice at all
            machines = " or ".join(sorted({s.machine_type for s in where.slices}))
            report(
                f"{pod.label}: selects {where.generation.accelerator} {where.topology} but no TPU node pool of this Standard "
                f"cluster has that shape (pools: {listing}); the pod stays Pending. Add a node pool of {machines} with "
                f"placementPolicy.tpuTopology {where.topology}, or select a pool's shape.",
                obj.urn,
            )


# --- gke-version-for-tpu (stack) -----------------------------------------------------------------
def validate_gke_version(args: StackValidationArgs, report: ReportViolation) -> None:
    users: dict[str, list[str]] = {}
    pool_versions = []
    for resource in args.resources:
        if resource.resource_type == NODE_POOL:
            props = plain(resource.props)
            known = facts.machine_type_info(m) if isinstance(m := at(props, "nodeConfig", "machineType"), str) else None
            if known is not None:
                users.setdefault(known[0].name, []).append(f"NodePool {resource.name}")
                pool_versions.append((resource, known[0], at(props, "version")))
    for obj in stack_objects(args.resources):
        for pod in pod_templates(obj):
            used = facts.ACCELERATOR_TO_GENERATION.get(a) if isinstance(a := pod.selector(ACC), str) else None
            if used is not None:
                users.setdefault(used, []).append(pod.label)
    for resource in args.resources:
        if resource.resource_type != CLUSTER:
            continue
        props = plain(resource.props)
        version, autopilot = at(props, "minMasterVersion"), at(props, "enableAutopilot")
        if not isinstance(version, str) or facts.parse_gke_version(version) is None or autopilot is UNKNOWN:
            continue  # unpinned: the release channel's default version is current
        mode = "Autopilot" if autopilot else "Standard"
        for name, used_by in users.items():
            generation = facts.GENERATIONS[name]
            minimum = generation.min_gke_autopilot if autopilot else generation.min_gke_standard
            if not facts.gke_version_at_least(version, minimum):
                report(
                    f"Cluster {resource.name}: minMasterVersion {version} is older than {minimum}, the first GKE version with "
                    f"{name} TPUs on {mode} (used by {', '.join(used_by)}); set {minimum} or later, or leave the version to "
                    f"the release channel.",
                    resource.urn,
                )
    for resource, pool_generation, version in pool_versions:
        minimum = pool_generation.min_gke_standard
        if isinstance(version, str) and facts.parse_gke_version(version) and not facts.gke_version_at_least(version, minimum):
            report(
                f"NodePool {resource.name}: version {version} is older than {minimum}, the first GKE version "
                f"with {pool_generation.name} TPUs; set {minimum} or later.",
                resource.urn,
            )


POLICIES = [
    ResourceValidationPolicy(
        name="tpu-pod-topology",
        description="Pods that use TPUs select both TPU node labels, with an accelerator and topology GKE offers, "
        "and a topology one pod can hold unless the workload is built for multi-host.",
        validate=validate_pod_topology,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="tpu-chip-request",
        description="A pod requests google.com/tpu with request equal to limit, and exactly the chips of one node "
        "of the topology it selects.",
        validate=validate_chip_request,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="tpu-tensor-parallel",
        description="vLLM's --tensor-parallel-size (times --pipeline-parallel-size) equals the TPU chips it runs on.",
        validate=validate_tensor_parallel,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="model-fits-hbm",
        description="Where the model's size is known, its weights plus a KV cache for one full-length sequence fit "
        "the slice's HBM at the configured --gpu-memory-utilization.",
        validate=validate_model_fits,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="tpu-node-pool-shape",
        description="A TPU node pool's machine type, generation and placement topology agree with the TPU catalog, "
        "and a pod that needs all its chips on one node can schedule on it.",
        validate=validate_node_pool_shape,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
        config_schema=PolicyConfigSchema(
            properties={
                ALLOW_MULTI_HOST: {
                    "type": "boolean",
                    "default": False,
                    "description": "Allow multi-host slices (for a LeaderWorkerSet workload).",
                }
            }
        ),
    ),
    StackValidationPolicy(
        name="tpu-node-pool-match",
        description="On a Standard cluster without node auto-provisioning, every TPU pod selects the accelerator and "
        "topology of a node pool of the stack.",
        validate=validate_node_pool_match,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    StackValidationPolicy(
        name="gke-version-for-tpu",
        description="A pinned GKE version is at least the first one that supports each TPU generation the stack uses.",
        validate=validate_gke_version,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.MEDIUM,
    ),
]
