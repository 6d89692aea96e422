"""VllmMultiHostServer: one model's vLLM server on multi-host TPU slices: a LeaderWorkerSet with one
group per slice (a Ray cluster: the head and vLLM on the leader, a Ray worker on every other host),
its secrets, the Service and PodMonitoring on the leaders, a NetworkPolicy that lets a group's hosts
reach each other, and a PodDisruptionBudget per group. The pod specs are VllmServer's."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import facts, tokens
from components.config import ModelConfig
from components.specs.namespace import ModelNamespace
from components.tpu_node_pool import SlicePlacement
from components.vllm_server import (
    LAUNCHER,
    NAME,
    FuseSidecar,
    PodInputs,
    compile_cache_key,
    curl_command,
    deployment_annotations,
    exposure,
    gcsfuse_sidecar,
    load_balancer_address,
    object_metadata,
    pod_monitoring_spec,
    pod_spec,
    selector,
    server_network_policy,
    server_secrets,
    service_annotations,
    service_spec,
    serving_args,
)

ROLE_LABEL = "serving.tpu.dev/role"
# Not NAME: the LWS controller makes a headless Service named after the LeaderWorkerSet, through which
# LWS_LEADER_ADDRESS (<lws>-<group>.<lws>.<namespace>) resolves; it skips that Service when one of the
# name exists, and the model's own Service is named NAME (lws v0.10.0 pkg/utils/controller/controller_utils.go
# CreateHeadlessServiceIfNotExists, pkg/utils/pod/pod_utils.go).
LWS_NAME = f"{NAME}-group"
# Where a pod compiles to: its own directory, not the bucket (see compile_cache_path).
LOCAL_XLA_CACHE_DIR = "/var/cache/xla"
# On the node's disk, as Google's multi-host sample keeps it: in memory it would share the pod's
# memory limit with the FUSE RAM file cache and /dev/shm, and an overflow would OOM-kill a host (and
# with RecreateGroupOnPodRestart, restart the whole slice). The bound is this project's headroom for
# one model's compiled graphs; past it the kubelet evicts the pod rather than filling the boot disk.
LOCAL_XLA_CACHE_LIMIT = "20Gi"
# How long the leader waits for the group's hosts to join its Ray cluster, and a worker for the head
# (vllm-project/vllm examples/online_serving/multi-node-serving.sh: ray_init_timeout=300). A slice's
# hosts start together; the margin covers image pulls on a fresh node.
RAY_JOIN_SECONDS = 600
# The leader: a Ray head, then wait until every host of the group has joined, then vLLM (LAUNCHER).
RAY_HEAD = (
    f"ray start --head --port={facts.RAY_HEAD_PORT} --disable-usage-stats; "
    f'waited=0; until [ "$(python3 -c \'import ray; ray.init(address="auto", logging_level="ERROR"); '
    'print(sum(n["Alive"] for n in ray.nodes()))\')" -ge "$' + facts.LWS_GROUP_SIZE_ENV + '" ]; do '
    f'waited=$((waited + 5)); if [ "$waited" -ge {RAY_JOIN_SECONDS} ]; then echo "ray: hosts missing" >&2; exit 1; fi; sleep 5; done; '
)
# A worker host: join the leader's Ray cluster and stay (retrying while the head starts).
RAY_WORKER = (
    f'waited=0; until ray start --address="${facts.LWS_LEADER_ADDRESS_ENV}:{facts.RAY_HEAD_PORT}" --block --disable-usage-stats; do '
    f'waited=$((waited + 5)); if [ "$waited" -ge {RAY_JOIN_SECONDS} ]; then exit 1; fi; sleep 5; done'
)
# Fields whose keys are data (label names, resource names, CSI attributes), never field names.
_MAP_FIELDS = frozenset({"labels", "annotations", "node_selector", "match_labels", "volume_attributes", "requests", "limits"})


def multi_host_serving_args(model: ModelConfig) -> list[str]:
    """VllmServer's serving args, over Ray: tensor parallel over every device of the slice, pipeline 1."""
    return [
        *serving_args(model),
        f"--pipeline-parallel-size={facts.VLLM_MULTIHOST_PIPELINE_PARALLEL}",
        "--distributed-executor-backend=ray",
    ]


def compile_cache_path(model: ModelConfig) -> str:
    """Keyed as on one host (image, generation, topology, graph-shaping args) plus the hosts and the
    Ray layout, but pod-local: vLLM's Ray executor hands the leader's VLLM_XLA_CACHE_PATH to every host
    and each host's JAX writes there, so a shared directory would have a group's hosts write at once
    (facts.MULTI_HOST_CACHE_RACE_SOURCE). Each pod writing its own directory is one writer by
    construction; the price is a compile on every group's cold start."""
    identity = [compile_cache_key(model), model.slice.vms, *multi_host_serving_args(model)[-2:]]
    return f"{LOCAL_XLA_CACHE_DIR}/{hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]}"


def leader_selector(model: ModelConfig) -> dict[str, str]:
    """The leaders of every group (the Service, PodMonitoring and, through LWS's hpaPodSelector, the HPA)."""
    return {**selector(model), facts.LWS_WORKER_INDEX_LABEL: "0"}


def group_selector(index: int) -> dict[str, str]:
    """Every pod of one group."""
    return {facts.LWS_NAME_LABEL: LWS_NAME, facts.LWS_GROUP_INDEX_LABEL: str(index)}


def _host_pod(model: ModelConfig, base: k8s.core.v1.PodSpecArgsDict, leader: bool) -> dict[str, Any]:
    """VllmServer's pod, as the leader (Ray head + vLLM, probed on /health) or a worker (a Ray node)."""
    pod: dict[str, Any] = _copy(base)
    container = pod["containers"][0]
    env = [e for e in container["env"] if e["name"] != facts.XLA_CACHE_ENV]
    env.append({"name": facts.XLA_CACHE_ENV, "value": compile_cache_path(model)})
    env += [{"name": name, "value": value} for name, value in facts.VLLM_MULTIHOST_ENV.items()]
    container["env"] = env
    container["volume_mounts"] = [*container["volume_mounts"], {"name": "xla-cache", "mount_path": LOCAL_XLA_CACHE_DIR}]
    pod["volumes"] = [*pod["volumes"], {"name": "xla-cache", "empty_dir": {"size_limit": LOCAL_XLA_CACHE_LIMIT}}]
    if leader:
        container["command"] = ["/bin/sh", "-c", RAY_HEAD + LAUNCHER, NAME]
        container["args"] = multi_host_serving_args(model)
    else:
        container["name"] = "ray-worker"
        container["command"] = ["/bin/sh", "-c", RAY_WORKER]
        container.pop("args", None)
        # No HTTP server here: the leader's probes speak for the group (a lost host fails the leader).
        for probe in ("startup_probe", "readiness_probe", "liveness_probe"):
            container.pop(probe, None)
        container["ports"] = [{"name": "ray", "container_port": facts.RAY_HEAD_PORT, "protocol": "TCP"}]
    return pod


def _copy(value: Any) -> Any:
    """New dicts and lists all the way down, with the leaves shared: the pod spec holds Outputs
    (the Secrets' names), which copy.deepcopy cannot copy."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def camel_case(value: Any, key: str = "") -> Any:
    """A Kubernetes args dict (snake_case, as the typed SDK classes take it) as the API's camelCase,
    for a CustomResource, whose spec reaches the API server as written. Keys of map fields stay."""
    if isinstance(value, Mapping):
        if key in _MAP_FIELDS:
            return dict(value)
        return {_camel(k): camel_case(v, k) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [camel_case(v, key) for v in value]
    return value


def _camel(key: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
        return key
    head, *rest = key.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def leader_worker_set_spec(
    model: ModelConfig,
    labels: dict[str, str],
    sidecar: FuseSidecar,
    leader: Mapping[str, Any],
    worker: Mapping[str, Any],
) -> dict[str, Any]:
    """One group per slice (size = the slice's hosts); rollouts replace one group at a time in place."""
    annotations = {"gke-gcsfuse/volumes": "true", **sidecar.annotations}

    def template(pod: Mapping[str, Any], role: str) -> dict[str, Any]:
        return {"metadata": {"labels": {**labels, **selector(model), ROLE_LABEL: role}, "annotations": annotations}, "spec": pod}

    spec: dict[str, Any] = {
        # With an HPA the count is its to own; it only exists once the first group is Available.
        "replicas": None if model.autoscaled else 1,
        "startup_policy": "LeaderCreated",
        "rollout_strategy": {"type": "RollingUpdate", "rolling_update_configuration": {"max_unavailable": 1, "max_surge": 0}},
        "leader_worker_template": {
            "size": model.slice.vms,
            # A lost host breaks the slice's program: the whole group restarts together.
            "restart_policy": "RecreateGroupOnPodRestart",
            "leader_template": template(leader, "leader"),
            "worker_template": template(worker, "worker"),
        },
    }
    return camel_case(spec)


# The Ray workers answer nothing a probe could ask: `ray start --block` is the container's process,
# so the container exits when its raylet dies, and RecreateGroupOnPodRestart then recreates the whole
# group; the leader's /health probes (startup, readiness, liveness) speak for the group.
WORKER_PROBE_SKIPS = {
    "checkov.io/skip4": "CKV_K8S_8=the Ray workers run ray start --block and exit with their raylet; the leader's /health is probed",
    "checkov.io/skip5": "CKV_K8S_9=only the leader serves; the Service selects leaders, whose /health readiness is probed",
}


def leader_worker_set_annotations(model: ModelConfig) -> dict[str, str]:
    return {
        **deployment_annotations(model),
        **WORKER_PROBE_SKIPS,
        # pulumi up waits for the first group through a cold compile, as for a Deployment.
        facts.PULUMI_WAIT_FOR_ANNOTATION: f"condition={facts.LWS_AVAILABLE_CONDITION}",
        # Each group owns one node pool (one slice) whole, and no two groups share one.
        facts.LWS_EXCLUSIVE_TOPOLOGY_ANNOTATION: facts.NODE_POOL_LABEL,
    }


def group_network_policy(model: ModelConfig) -> k8s.networking.v1.NetworkPolicySpecArgsDict:
    """VllmServer's policy, plus any port between the pods of the LeaderWorkerSet (Ray's GCS, raylets,
    object transfer and the TPU runtime's host-to-host traffic use many)."""
    policy = server_network_policy(exposure(model))
    peers: list[k8s.networking.v1.NetworkPolicyPeerArgsDict] = [{"pod_selector": {"match_labels": {facts.LWS_NAME_LABEL: LWS_NAME}}}]
    return {
        **policy,
        "ingress": [*(policy.get("ingress") or []), {"from_": peers}],  # type: ignore[misc]
        "egress": [*(policy.get("egress") or []), {"to": peers}],  # type: ignore[misc]
    }


def group_disruption_budget_spec(model: ModelConfig, index: int) -> k8s.policy.v1.PodDisruptionBudgetSpecArgsDict:
    # Evicting any host stops its group's slice program: a serving group is disrupted whole or not at
    # all; a group that is not Ready serves nothing and may always be evicted.
    return {
        "min_available": model.slice.vms,
        "selector": {"match_labels": group_selector(index)},
        "unhealthy_pod_eviction_policy": "AlwaysAllow",
    }


@dataclass(frozen=True)
class VllmMultiHostServerArgs:
    model: ModelConfig
    namespace: ModelNamespace
    service_account_name: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    placement: SlicePlacement
    hf_token: pulumi.Input[str]
    # The stack's API key: mounted only when the model is exposed externally (exposure()).
    api_key: pulumi.Input[str] | None
    labels: dict[str, str]
    # What must exist before the first group can start: the LWS controller, the pools, the bucket grant.
    start_after: list[pulumi.Resource]


class VllmMultiHostServer(pulumi.ComponentResource):
    leader_worker_set: k8s.apiextensions.CustomResource
    lws_name: str  # the LeaderWorkerSet's
    service_address: pulumi.Output[str]
    curl: pulumi.Output[str]

    def __init__(self, name: str, args: VllmMultiHostServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(tokens.VLLM_MULTIHOST_SERVER, name, None, opts)
        model, reach = args.model, exposure(args.model)
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[args.namespace.resource])

        def metadata(annotations: dict[str, str] | None = None, object_name: str = NAME) -> k8s.meta.v1.ObjectMetaArgsDict:
            return object_metadata(args.namespace.name, args.labels, annotations, object_name)

        hf_token, api_key = server_secrets(
            name, args.namespace.name, args.labels, args.hf_token, args.api_key if reach.external else None, in_namespace
        )
        sidecar = gcsfuse_sidecar(model, autopilot=False)
        leader = pod_spec(model, args.placement, sidecar, PodInputs(args.service_account_name, args.bucket_name, hf_token, api_key))
        worker = pod_spec(model, args.placement, sidecar, PodInputs(args.service_account_name, args.bucket_name, hf_token, None))
        self.leader_worker_set = k8s.apiextensions.CustomResource(
            name,
            api_version=facts.LWS_API_VERSION,
            kind=facts.LWS_KIND,
            metadata=metadata(leader_worker_set_annotations(model), object_name=LWS_NAME),
            spec=leader_worker_set_spec(model, args.labels, sidecar, _host_pod(model, leader, True), _host_pod(model, worker, False)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.namespace.resource, *args.start_after]),
        )
        service = k8s.core.v1.Service(
            name,
            metadata=metadata(service_annotations(model, reach)),
            spec={**service_spec(model, reach), "selector": leader_selector(model)},
            opts=in_namespace,
        )
        k8s.apiextensions.CustomResource(
            name,
            api_version="monitoring.googleapis.com/v1",
            kind="PodMonitoring",
            metadata=metadata(),
            spec={**pod_monitoring_spec(model), "selector": {"matchLabels": leader_selector(model)}},
            opts=in_namespace,
        )
        k8s.networking.v1.NetworkPolicy(name, metadata=metadata(), spec=group_network_policy(model), opts=in_namespace)
        for index in range(model.max_replicas):
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-group-{index}",
                metadata=metadata(object_name=f"{LWS_NAME}-{index}"),
                spec=group_disruption_budget_spec(model, index),
                opts=in_namespace,
            )
        self.lws_name = LWS_NAME
        self.service_address = service.status.apply(load_balancer_address)
        self.curl = self.service_address.apply(lambda address: curl_command(model, address))
        self.register_outputs(
            {
                "serviceAddress": self.service_address,
                "curl": self.curl,
                "leaderWorkerSet": LWS_NAME,
            }
        )
