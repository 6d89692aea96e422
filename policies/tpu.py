"""TPU shape, chip counts, fit and GKE versions: a slice that no pod can use, or a pod that can
never run on the slice it selects, is paid for by the hour until someone notices."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
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

from components import facts, models, sizing, tokens
from components.errors import ConfigError
from policies.k8s import (
    MULTI_HOST_KINDS,
    UNKNOWN,
    Container,
    Flags,
    KubeObject,
    PodTemplate,
    at,
    listed,
    plain,
    pod_templates,
    stack_objects,
    whole,
)

CLUSTER = tokens.CLUSTER
NODE_POOL = tokens.NODE_POOL
# Which generation a node's gke-tpu-accelerator label value names.
ACCELERATOR_TO_GENERATION: Mapping[str, str] = MappingProxyType({g.accelerator: g.name for g in facts.GENERATIONS.values()})
# How GKE names TPU machine types: a misspelt one is reported, not taken for a CPU machine.
TPU_MACHINE = re.compile(r"(ct\d+[a-z]*|tpu\d+[a-z]*)-")
ACC, TOPO, TPU = facts.ACCELERATOR_LABEL, facts.TOPOLOGY_LABEL, facts.TPU_RESOURCE


@dataclass(frozen=True)
class Placement:
    """Where a pod's TPU selection puts it: the generation, the topology, and the slices of that
    topology a pod of this template can be part of (one VM each for a single pod, as many VMs as
    the group has pods for a multi-host workload). `source` says how the pod selected it."""

    generation: facts.Generation
    topology: str
    slices: tuple[facts.Slice, ...]
    source: str
    count: int | None = None  # chips per node, where a ComputeClass states them

    @property
    def chips_per_pod(self) -> list[int]:
        if self.count is not None:
            return [self.count]
        return sorted({s.chips_per_vm for s in self.slices})

    def slice_for(self, chips: Any) -> facts.Slice:
        return next((s for s in self.slices if s.chips_per_vm == chips), self.slices[0])


# A ComputeClass by name: the (accelerator, topology, chips per node) of each TPU priority, UNKNOWN when unreadable.
ComputeClasses = dict[str, Any]


def compute_classes(objects: list[KubeObject]) -> ComputeClasses:
    found: ComputeClasses = {}
    for obj in objects:
        if obj.kind != facts.COMPUTE_CLASS_KIND or not isinstance(obj.name, str):
            continue
        priorities = at(obj.body, "spec", "priorities")
        shapes: Any = []
        for priority in listed(priorities):
            tpu = at(priority, "tpu")
            if tpu is None:
                continue  # a CPU or GPU fallback of the class
            shape = (at(tpu, "type"), at(tpu, "topology"), whole(at(tpu, "count")))
            if UNKNOWN in shape or tpu is UNKNOWN:
                shapes = UNKNOWN
                break
            if shape not in shapes:
                shapes.append(shape)
        found[obj.name] = UNKNOWN if priorities is UNKNOWN else shapes
    return found


def _slices(generation: facts.Generation, topology: str, hosts: Any) -> tuple[facts.Slice, ...]:
    shapes = generation.slices_of(topology)
    if hosts is UNKNOWN:
        return shapes
    return tuple(s for s in shapes if s.vms == hosts) if hosts != 1 else tuple(s for s in shapes if not s.multi_host)


def _placement(pod: PodTemplate, accelerator: Any, topology: Any, source: str, count: int | None = None) -> Placement | None:
    if not isinstance(accelerator, str) or not isinstance(topology, str) or accelerator not in ACCELERATOR_TO_GENERATION:
        return None
    generation = facts.GENERATIONS[ACCELERATOR_TO_GENERATION[accelerator]]
    slices = _slices(generation, topology, pod.hosts)
    return Placement(generation, topology, slices, source, count) if slices else None


def placements(pod: PodTemplate, classes: ComputeClasses) -> list[Placement]:
    """The TPU shapes a pod selects: by the two node labels, or by a ComputeClass of the input
    (each distinct TPU priority of it). A ComputeClass that is not in the input cannot be read."""
    accelerator, topology = pod.selector(ACC), pod.selector(TOPO)
    if accelerator is not None or topology is not None:
        found = _placement(pod, accelerator, topology, f"{ACC}={accelerator}, {TOPO}={topology}")
        return [found] if found else []
    name = pod.compute_class
    shapes = classes.get(name) if isinstance(name, str) else None
    if not isinstance(shapes, list):
        return []
    found_all = [_placement(pod, a, t, f"ComputeClass {name}", c if isinstance(c, int) else None) for a, t, c in shapes]
    return [f for f in found_all if f is not None]


def placement(pod: PodTemplate, classes: ComputeClasses | None = None) -> Placement | None:
    found = placements(pod, classes or {})
    return found[0] if found else None


def _pods(args: StackValidationArgs) -> Iterator[tuple[KubeObject, PodTemplate, ComputeClasses]]:
    objects = stack_objects(args.resources)
    classes = compute_classes(objects)
    for obj in objects:
        for pod in pod_templates(obj):
            yield obj, pod, classes


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
def _shape_problem(pod: PodTemplate, accelerator: Any, topology: Any, via: str = "") -> str | None:
    """What is wrong with the TPU shape a pod selects (by labels, or through a ComputeClass: `via`), or None."""
    if accelerator not in ACCELERATOR_TO_GENERATION:
        known = ", ".join(ACCELERATOR_TO_GENERATION)
        return f"{ACC}={accelerator}{via} is no GKE TPU accelerator; use one of {known}."
    generation = facts.GENERATIONS[ACCELERATOR_TO_GENERATION[accelerator]]
    shapes = generation.slices_of(topology)
    if not shapes:
        return f"{TOPO}={topology}{via} is not a {generation.name} topology; {accelerator} offers {', '.join(generation.topologies)}."
    hosts = pod.hosts
    if hosts is UNKNOWN or _slices(generation, topology, hosts):
        return None
    if hosts == 1:
        return (
            f"{TOPO}={topology}{via} is a multi-host slice ({shapes[0].vms} VMs of {shapes[0].machine_type}) but a "
            f"{pod.owner.kind} pod runs on one VM and never gets the slice; choose a single-host topology "
            f"({_single_host(generation)}) or a multi-host workload ({'; '.join(MULTI_HOST_KINDS)})."
        )
    fitting = ", ".join(s.topology for s in generation.slices if s.vms == hosts) or "none"
    return (
        f"{TOPO}={topology}{via}: {hosts} pods take one slice together but it is {' or '.join(str(s.vms) for s in shapes)} VM(s); "
        f"one pod runs per VM, so the group never forms. Choose a {generation.name} topology of {hosts} VMs ({fitting}) "
        f"or change the group size."
    )


def _group_selection(pods: list[PodTemplate]) -> str | None:
    """What is wrong with how a LeaderWorkerSet's hosts select their slice: every pod that takes
    chips is one host of the group's slice, so all of them select the same accelerator, topology
    (and ComputeClass). A leader that takes no chips (Pathways-style) is not a host and not compared."""
    hosts = []
    for pod in pods:
        chips = pod.tpu_chips
        shape = (pod.selector(ACC), pod.selector(TOPO), pod.compute_class)
        if chips is UNKNOWN or UNKNOWN in shape:
            return None
        if chips:
            hosts.append((pod.path, shape))
    if len({shape for _, shape in hosts}) < 2:
        return None
    said = "; ".join(
        f"{path} selects "
        + ", ".join(f"{k}={v}" for k, v in zip((ACC, TOPO, facts.COMPUTE_CLASS_LABEL), shape, strict=True) if v is not None)
        for path, shape in hosts
    )
    return (
        f"the pods of one group take one TPU slice together, but its templates select different ones ({said}); "
        f"the group's hosts never land on one slice and the group never forms. Give every template that requests "
        f"{TPU} the same {ACC} and {TOPO}."
    )


def validate_pod_topology(args: StackValidationArgs, report: ReportViolation) -> None:
    for obj in stack_objects(args.resources):
        if obj.kind == "LeaderWorkerSet":
            problem = _group_selection(pod_templates(obj))
            if problem:
                report(f"{obj.label}: {problem}", obj.urn)
    for obj, pod, classes in _pods(args):
        accelerator, topology, chips, chosen = pod.selector(ACC), pod.selector(TOPO), pod.tpu_chips, pod.compute_class
        if UNKNOWN in (accelerator, topology):
            continue
        if accelerator is None and topology is None:
            if chosen is UNKNOWN or (isinstance(chosen, str) and chosen not in classes):
                continue  # a ComputeClass defined elsewhere chooses type, topology and count
            shapes = classes.get(chosen) if isinstance(chosen, str) else None
            if shapes is UNKNOWN:
                continue
            if shapes is not None:
                if not shapes and isinstance(chips, int) and chips > 0:
                    report(f"{pod.label}: requests {chips} {TPU} but ComputeClass {chosen} has no TPU priority.", obj.urn)
                for shape_accelerator, shape_topology, _ in shapes:
                    problem = _shape_problem(pod, shape_accelerator, shape_topology, f" (through ComputeClass {chosen})")
                    if problem:
                        report(f"{pod.label}: {problem}", obj.urn)
                continue
            if isinstance(chips, int) and chips > 0:
                report(
                    f"{pod.label}: requests {chips} {TPU} but has neither node selector {ACC} nor {TOPO} (nor a "
                    f"{facts.COMPUTE_CLASS_LABEL} with a TPU priority); Autopilot rejects the pod and Standard cannot tell which "
                    f"slice it needs. Set both in spec.nodeSelector.",
                    obj.urn,
                )
            continue
        if accelerator is None or topology is None:
            have, missing = (f"{TOPO}={topology}", ACC) if accelerator is None else (f"{ACC}={accelerator}", TOPO)
            report(
                f"{pod.label}: selects {have} but no {missing}; Autopilot requires both TPU node selectors and "
                f"Standard places the pod on any slice that matches the one given. Add {missing}.",
                obj.urn,
            )
            continue
        problem = _shape_problem(pod, accelerator, topology)
        if problem:
            report(f"{pod.label}: {problem}", obj.urn)


# --- tpu-chip-request ----------------------------------------------------------------------------
def validate_chip_request(args: StackValidationArgs, report: ReportViolation) -> None:
    for obj, pod, classes in _pods(args):
        for container in pod.containers:
            requested, limit = container.tpu("requests"), container.tpu("limits")
            if UNKNOWN in (requested, limit) or requested is None:
                continue  # a limit alone is fine: Kubernetes copies an extended resource's limit into its request
            if limit is None:
                report(
                    f"{container.label}: requests {requested} {TPU} without a limit; Kubernetes rejects an extended-resource "
                    f"request without an equal limit. Set resources.limits.{TPU}: {requested}.",
                    obj.urn,
                )
            elif requested != limit:
                report(
                    f"{container.label}: {TPU} request {requested} differs from its limit {limit}; TPU chips cannot be "
                    f"overcommitted and the API server rejects the pod. Set both to the same count.",
                    obj.urn,
                )
        chips = pod.tpu_chips
        if chips is UNKNOWN:
            continue
        for where in placements(pod, classes):
            allowed = where.chips_per_pod
            wanted = " or ".join(map(str, allowed))
            shape = f"{where.generation.accelerator} {where.topology}"
            if chips == 0:
                if pod.tolerates_tpu is not False:
                    continue  # a leader that takes no chips on purpose and says so
                report(
                    f"{pod.label}: selects {shape} but requests no {TPU}; only pods that request chips tolerate TPU nodes, "
                    f"so it stays Pending. Request {wanted} in resources.limits, or, for a pod that runs on the TPU nodes "
                    f"without chips on purpose (a Pathways or LeaderWorkerSet leader), tolerate the {TPU} NoSchedule taint.",
                    obj.urn,
                )
            elif chips not in allowed:
                machines = ", ".join(sorted({s.machine_type for s in where.slices}))
                other = next(
                    (s for s in where.generation.slices_of(where.topology) if s not in where.slices and s.chips_per_vm == chips), None
                )
                hint = (
                    f" {chips} chips per pod is the {other.vms}-node form of {where.topology} on {other.machine_type}, "
                    f"which one {pod.owner.kind} pod cannot span."
                    if other and not pod.multi_host
                    else ""
                )
                via = f" (through {where.source})" if where.count is not None else ""
                report(
                    f"{pod.label}: requests {chips} {TPU} but a pod on {shape}{via} must take all {wanted} chips "
                    f"of its node ({machines}); request {wanted} in requests and limits.{hint}",
                    obj.urn,
                )


# --- tpu-tensor-parallel -------------------------------------------------------------------------
def _devices(generation: facts.Generation, chips: int) -> str:
    per = generation.devices_per_chip
    return f"{chips} chips" if per == 1 else f"{chips} chips = {chips * per} devices ({generation.name} has {per} TensorCores per chip)"


def validate_tensor_parallel(args: StackValidationArgs, report: ReportViolation) -> None:
    for obj, pod, classes in _pods(args):
        chips = pod.tpu_chips
        if not isinstance(chips, int) or chips == 0:
            continue
        for where in placements(pod, classes):
            # A multi-host group shards over every chip of the slice; a single-host pod over its own.
            held = where.slice_for(chips).chips if pod.multi_host else chips
            total = held * where.generation.devices_per_chip
            unit = "chips" if where.generation.devices_per_chip == 1 else "devices"
            for container, _ in _serving(pod):
                flags = container.flags
                default = facts.VLLM_DEFAULT_PARALLEL_SIZE
                sizes = [_flag_number(flags, f"{name}-parallel-size", default) for name in ("tensor", "pipeline", "data")]
                if not all(isinstance(n, int) for n in sizes):
                    continue
                tp, pp, dp = sizes
                if tp * pp * dp == total:
                    continue
                used = f"--tensor-parallel-size={tp}" + "".join(
                    f" x --{name}-parallel-size={n}" for name, n in (("pipeline", pp), ("data", dp)) if n != 1
                )
                fix = f"--tensor-parallel-size={total}" if pp == dp == 1 else f"their product = {total}"
                report(
                    f"{container.label}: {used} uses {tp * pp * dp} {unit} but the {'slice' if pod.multi_host else 'pod'} holds "
                    f"{_devices(where.generation, held)} ({where.topology}); vLLM on TPU must shard over all of them. Set {fix}.",
                    obj.urn,
                )


# --- model-fits-hbm ------------------------------------------------------------------------------
def _replica_slice(where: Placement, chips: Any, data_parallel: int) -> facts.Slice | None:
    """The slice one model replica holds: the pod's (or group's) slice, or for --data-parallel-size N
    the single-host slice of 1/N of its chips."""
    whole_slice = where.slice_for(chips)
    if data_parallel == 1:
        return whole_slice
    per_replica, rest = divmod(whole_slice.chips, data_parallel)
    return None if rest else next((s for s in where.generation.slices if s.chips == per_replica and not s.multi_host), None)


def validate_model_fits(args: StackValidationArgs, report: ReportViolation) -> None:
    for obj, pod, classes in _pods(args):
        chips = pod.tpu_chips
        for where in placements(pod, classes):
            for container, model in _serving(pod):
                arch = models.lookup(model)
                if arch is None:
                    continue
                flags = container.flags
                max_len = _flag_number(flags, "max-model-len", arch.max_context)
                utilization = _flag_number(flags, "gpu-memory-utilization", facts.VLLM_DEFAULT_GPU_MEMORY_UTILIZATION, float)
                data_parallel = _flag_number(flags, "data-parallel-size", 1)
                if not isinstance(max_len, int) or not isinstance(utilization, float) or not isinstance(data_parallel, int):
                    continue
                tpu_slice = _replica_slice(where, chips, max(data_parallel, 1))
                if tpu_slice is None:
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
                    replica = f" (one of {data_parallel} data-parallel replicas)" if data_parallel > 1 else ""
                    report(
                        f"{container.label}: {model} on {where.generation.name} {tpu_slice.topology}{replica} at --max-model-len={max_len} "
                        f"and --gpu-memory-utilization={utilization:g}: {error.allowed}. Select a larger topology (and its chips) "
                        f"or a lower --max-model-len, or vLLM fails at start-up (RESOURCE_EXHAUSTED on HBM).",
                        obj.urn,
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
    if single is not None and not allowed:
        report(
            f"{label}: {topology} on {machine} is {shape.vms} nodes of {shape.chips_per_vm} chips; a pod that needs all {shape.chips} "
            f"chips on one node never schedules there. Use {single.machine_type} for a single-host {topology}.",
            None,
        )
    elif not allowed:
        report(
            f"{label}: {topology} is a multi-host slice ({shape.vms} VMs of {machine}, interrupted and replaced as a unit) "
            f"and this stack serves single-host workloads; choose {_single_host(generation)}, or set {ALLOW_MULTI_HOST} "
            f"in the policy config for a multi-host workload ({'; '.join(MULTI_HOST_KINDS)}).",
            None,
        )
    if kind is not UNKNOWN and kind != "COMPACT":
        given = "not set" if kind is None else repr(kind)
        report(f"{label}: placementPolicy.type is {given}; GKE forms a multi-host TPU slice only with COMPACT placement.", None)
    for problem in _multi_host_pool_problems(props, shape):
        report(f"{label}: {problem}", None)


# Node counts of a multi-host pool, per zone (in its one zone, the pool's): each is 0 or the slice's VMs.
_NODE_COUNTS = (("nodeCount",), ("initialNodeCount",), ("autoscaling", "minNodeCount"))


def _multi_host_pool_problems(props: dict[str, Any], shape: facts.Slice) -> Iterator[str]:
    """A multi-host pool is one slice (components/facts.py MULTI_HOST_ZERO_MAX_REFUSED says why and
    where from): its VMs in one zone, created and removed together, so every node count is 0 or the
    slice's VMs, autoscaling by the per-zone counts (GKE checks the slice against maxNodeCount, which
    total counts leave at 0) with location policy ANY. More slices are more pools."""
    slice_of = f"a {shape.topology} slice is {shape.vms} VMs of {shape.machine_type}, created and removed as a unit"
    zones = at(props, "nodeLocations")
    if isinstance(zones, list) and UNKNOWN not in zones and len(zones) != 1:
        yield (
            f"nodeLocations {zones} lists {len(zones)} zones but {slice_of} in one zone; "
            f"give the pool exactly one zone (one pool per slice)."
        )
    for path in _NODE_COUNTS:
        value = whole(at(props, *path))
        if value is not None and value is not UNKNOWN and value not in (0, shape.vms):
            yield f"{'.'.join(path)} is {value} but {slice_of}: set it to 0 or {shape.vms} (one pool per slice)."
    autoscaling = at(props, "autoscaling")
    if not isinstance(autoscaling, dict):
        return
    totals = [k for k in ("totalMinNodeCount", "totalMaxNodeCount") if autoscaling.get(k) is not None]
    maximum = whole(autoscaling.get("maxNodeCount"))
    if totals:
        yield (
            f"autoscaling sets {' and '.join(totals)}, which leaves the per-zone maxNodeCount at 0, and GKE refuses the "
            f'multi-host pool ("{facts.MULTI_HOST_ZERO_MAX_REFUSED} {shape.topology}"); set minNodeCount 0 or {shape.vms} '
            f"and maxNodeCount {shape.vms} instead."
        )
    elif maximum is not UNKNOWN and maximum != shape.vms:
        given = "not set" if maximum is None else maximum
        yield f"autoscaling.maxNodeCount is {given} but {slice_of}: set it to {shape.vms} (one pool per slice)."
    policy = autoscaling.get("locationPolicy")
    if policy is not UNKNOWN and policy != facts.MULTI_HOST_LOCATION_POLICY:
        yield (
            f"autoscaling.locationPolicy is {policy or 'not set (BALANCED)'}; a multi-host slice is assembled only with "
            f"{facts.MULTI_HOST_LOCATION_POLICY}."
        )


# --- tpu-node-pool-match (stack) -----------------------------------------------------------------
def _pool_shape(props: dict[str, Any]) -> Any:
    """(accelerator, topology, machine type) a TPU node pool offers; None for other pools; UNKNOWN
    when unreadable. The machine type tells the single-host and multi-host forms of one topology apart."""
    machine, topology = at(props, "nodeConfig", "machineType"), at(props, "placementPolicy", "tpuTopology")
    if UNKNOWN in (machine, topology):
        return UNKNOWN
    known = facts.machine_type_info(machine) if isinstance(machine, str) else None
    if known is None:
        return None
    generation = known[0]
    if topology is None:
        topology = next((s.topology for s in generation.slices if s.machine_type == machine and not s.multi_host), None)
    return generation.accelerator, topology, machine


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
    listing = "; ".join(f"{name}: {a} {t}" + (f" on {m}" if m != _single_host_machine(a, t) else "") for (a, t, m), name in offered.items())
    for obj in stack_objects(args.resources):
        for pod in pod_templates(obj):
            where = placement(pod)  # by labels only: a ComputeClass creates or names its own nodes
            if where is None or any((where.generation.accelerator, where.topology, s.machine_type) in offered for s in where.slices):
                continue  # tpu-pod-topology reports selectors that name no slice at all
            machines = " or ".join(sorted({s.machine_type for s in where.slices}))
            form = f" ({where.slices[0].vms} VMs: a multi-host pool)" if pod.multi_host else ""
            report(
                f"{pod.label}: selects {where.generation.accelerator} {where.topology}{form} but no TPU node pool of this Standard "
                f"cluster has that shape (pools: {listing or 'none'}); the pod stays Pending. Add a node pool of {machines} with "
                f"placementPolicy.tpuTopology {where.topology}, or select a pool's shape.",
                obj.urn,
            )


def _single_host_machine(accelerator: str, topology: Any) -> str | None:
    generation = facts.GENERATIONS.get(ACCELERATOR_TO_GENERATION.get(accelerator, ""))
    found = generation.single_host_slice(topology) if generation and isinstance(topology, str) else None
    return found.machine_type if found else None


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
    objects = stack_objects(args.resources)
    classes = compute_classes(objects)
    for obj in objects:
        for pod in pod_templates(obj):
            for used in dict.fromkeys(p.generation.name for p in placements(pod, classes)):
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
    StackValidationPolicy(
        name="tpu-pod-topology",
        description="Pods that use TPUs select both TPU node labels, with an accelerator and topology GKE offers, "
        "and a topology one pod can hold unless the workload is built for multi-host, whose group is one pod per "
        "VM of the slice, every host selecting the same slice.",
        validate=validate_pod_topology,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    StackValidationPolicy(
        name="tpu-chip-request",
        description="A pod requests google.com/tpu with request equal to limit, and exactly the chips of one node "
        "of the topology it selects.",
        validate=validate_chip_request,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    StackValidationPolicy(
        name="tpu-tensor-parallel",
        description="vLLM's --tensor-parallel-size (times --pipeline-parallel-size and --data-parallel-size) equals the "
        "TPU devices it runs on (chips times the generation's TensorCores per chip).",
        validate=validate_tensor_parallel,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    StackValidationPolicy(
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
        "and a pod that needs all its chips on one node can schedule on it; a multi-host pool (opt-in) is one slice: "
        "COMPACT placement, one zone, 0 or the slice's hosts as node counts.",
        validate=validate_node_pool_shape,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
        config_schema=PolicyConfigSchema(
            properties={
                ALLOW_MULTI_HOST: {
                    "type": "boolean",
                    "default": False,
                    "description": "Allow multi-host slices (for a LeaderWorkerSet, JobSet, Indexed Job or Ray multi-host workload).",
                }
            }
        ),
    ),
    StackValidationPolicy(
        name="tpu-node-pool-match",
        description="On a Standard cluster without node auto-provisioning, every TPU pod selects the accelerator and "
        "topology of a node pool of the stack, in the single- or multi-host form the pod needs.",
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
