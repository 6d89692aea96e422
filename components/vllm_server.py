"""VllmServer: one model's vLLM server on its TPU slice: secrets, Deployment, Service,
PodMonitoring, NetworkPolicy and PodDisruptionBudget."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from types import MappingProxyType

import pulumi
import pulumi_kubernetes as k8s

from components import facts, tokens
from components.config import ModelConfig
from components.facts import MachineType
from components.specs.namespace import ModelNamespace
from components.specs.network_policy import network_policy
from components.tpu_node_pool import SlicePlacement

NAME = "vllm"
DATA_DIR = "/data"
HF_TOKEN_DIR = "/var/run/secrets/hf"
API_KEY_DIR = "/var/run/secrets/vllm"
# An internal load balancer keeps client addresses; without sourceRanges, the private 10/8 may call.
PRIVATE_CLIENTS = "10.0.0.0/8"
PRESTOP_SECONDS = 15  # lets the load balancer stop sending new requests before vLLM drains
# Before the startup probe's clock runs, a replica waits for a TPU node (minutes when the pool or
# Autopilot scales up) and pulls the multi-GiB image.
COLD_START_MARGIN_MINUTES = 15
# What Checkov flags and the server cannot meet, with the reason. Checkov reads skips from the
# object's own metadata.annotations (not the pod template's), so they sit on the Deployment; a
# reason may not contain "=" (Checkov splits on it).
ROOT_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_23=the vllm/vllm-tpu Dockerfile sets no USER so the server runs as root; non-root on TPU is unverified",
    "checkov.io/skip2": "CKV_K8S_40=runs as UID 0 (image has no USER); escalation is off and every capability is dropped",
    "checkov.io/skip3": "CKV_K8S_43=pinned to a vLLM release tag (imageTag); the offline plan cannot resolve Docker Hub digests",
}
# Wraps the server so the API key is read from a mounted file into the process environment only.
LAUNCHER = (
    'if [ -n "$VLLM_API_KEY_FILE" ]; then VLLM_API_KEY="$(cat "$VLLM_API_KEY_FILE")"; export VLLM_API_KEY; fi; '
    'exec python3 -m vllm.entrypoints.openai.api_server "$@"'
)
# What the one serving pod on a TPU VM requests of its vCPUs and memory: the rest stays for the
# kubelet, system daemons and the Cloud Storage FUSE sidecar.
POD_SHARE_OF_NODE = 0.8

# --- Cloud Storage FUSE sidecar sizing (pod annotations) -----------------------------------------
# "0" lifts a limit, which only Standard clusters accept; Autopilot needs explicit values.
GCSFUSE_SIDECAR_STANDARD = MappingProxyType(
    {"gke-gcsfuse/cpu-limit": "0", "gke-gcsfuse/memory-limit": "0", "gke-gcsfuse/ephemeral-storage-limit": "0"}
)
GCSFUSE_SIDECAR_AUTOPILOT = MappingProxyType({"gke-gcsfuse/ephemeral-storage-limit": "40Gi"})
# The sidecar's request equals its limit when only a limit is set, so what it gets is taken out
# of the server's share; parallel downloads of the weights want a few cores.
GCSFUSE_SIDECAR_AUTOPILOT_CPU = 4
# The RAM file cache is charged to the sidecar: on Autopilot its memory must hold the weights.
GCSFUSE_CACHE_HEADROOM = 1.1
GCSFUSE_CACHE_UNKNOWN_MODEL_SHARE = 0.25  # of the pod's memory, when the model's size is not known
# What gcsfuse itself holds beside the file cache (metadata caches, parallel-download workers,
# buffers). An allowance, not a published figure: Google's docs give none for this configuration.
GCSFUSE_SIDECAR_OWN_MEMORY_GIB = 1
# On Standard the sidecar has no limit and shares the node with the kubelet and GKE's DaemonSets
# (fluentbit, gke-metadata-server, anetd, the Managed Prometheus collector, the CSI and TPU device
# plugins). An allowance for their usage, not a published figure: `kubectl describe node` lists them.
GKE_NODE_DAEMONS_MEMORY_GIB = 2


def pod_cpu(machine: MachineType) -> int:
    """The vCPUs the one serving pod on this VM requests (its share of the node)."""
    return int(machine.vcpus * POD_SHARE_OF_NODE)


def pod_memory_gib(machine: MachineType) -> int:
    """The memory (GiB) the one serving pod on this VM requests (its share of the node)."""
    return int(machine.memory_gib * POD_SHARE_OF_NODE)


def serving_args(model: ModelConfig) -> list[str]:
    args = [
        "--host=0.0.0.0",
        f"--port={facts.VLLM_PORT}",
        f"--model={model.hf_id}",
        f"--tensor-parallel-size={model.tensor_parallel_size}",
        f"--max-model-len={model.max_model_len}",
        f"--max-num-batched-tokens={model.max_num_batched_tokens}",
        f"--max-num-seqs={model.max_num_seqs}",
        f"--gpu-memory-utilization={model.gpu_memory_utilization}",
        f"--download-dir={DATA_DIR}/models",
    ]
    if model.kv_cache_dtype != "auto":
        args.append(f"--kv-cache-dtype={model.kv_cache_dtype}")
    if model.shutdown_timeout_seconds:
        args.append(f"--shutdown-timeout={model.shutdown_timeout_seconds}")
    return args


def cold_start_seconds(model: ModelConfig) -> int:
    """How long one new replica may take to become Ready: a slow one is still starting, not stuck."""
    return (model.startup_minutes + COLD_START_MARGIN_MINUTES) * 60


@dataclass(frozen=True)
class FuseSidecar:
    """The Cloud Storage FUSE sidecar of one pod: its annotations, the CPUs and memory (GiB) it
    takes from the pod's share of the node, and how far its RAM file cache may grow (MiB)."""

    annotations: dict[str, str]
    cpu: int
    memory_gib: int
    file_cache_mib: int


def gcsfuse_sidecar(model: ModelConfig, autopilot: bool) -> FuseSidecar:
    """The file cache is a memory-backed emptyDir that gcsfuse fills, so its pages are charged to
    the sidecar; an unbounded cache grows with everything read through the mount (weights and
    compiled graphs) until the sidecar is OOM-killed (Autopilot) or the pod evicted (Standard)."""
    own_gib = GCSFUSE_SIDECAR_OWN_MEMORY_GIB
    machine = model.machine
    if not autopilot:
        # Standard lifts the sidecar's limits, so the node is the bound: the cache gets what the
        # server's share, GKE's reservation, its DaemonSets and gcsfuse itself leave of the VM.
        free_gib = (
            machine.memory_gib
            - pod_memory_gib(machine)
            - facts.gke_reserved_memory_gib(machine.memory_gib)
            - GKE_NODE_DAEMONS_MEMORY_GIB
            - own_gib
        )
        return FuseSidecar(dict(GCSFUSE_SIDECAR_STANDARD), 0, 0, int(free_gib * 1024))
    if model.sizing is not None:
        weights_gib = model.sizing.weights_bytes / facts.GIB
        memory_gib = math.ceil(weights_gib * GCSFUSE_CACHE_HEADROOM) + own_gib
    else:
        memory_gib = math.ceil(pod_memory_gib(machine) * GCSFUSE_CACHE_UNKNOWN_MODEL_SHARE)
    cpu, memory = str(GCSFUSE_SIDECAR_AUTOPILOT_CPU), f"{memory_gib}Gi"
    annotations = {
        **GCSFUSE_SIDECAR_AUTOPILOT,
        "gke-gcsfuse/cpu-limit": cpu,
        "gke-gcsfuse/cpu-request": cpu,
        "gke-gcsfuse/memory-limit": memory,
        "gke-gcsfuse/memory-request": memory,
    }
    # Autopilot enforces the limit: the cache stops gcsfuse's own use short of it.
    return FuseSidecar(annotations, GCSFUSE_SIDECAR_AUTOPILOT_CPU, memory_gib, (memory_gib - own_gib) * 1024)


def compile_cache_key(model: ModelConfig) -> str:
    """Graphs compiled for one image, model, slice and set of shape-giving args are only valid for
    exactly those; a new key per combination means no replica ever reuses or overwrites stale
    graphs. Flags that shape no graph stay out, so changing one costs no 20-40 minute recompile."""
    graph_args = [arg for arg in serving_args(model) if arg.split("=", 1)[0] not in facts.VLLM_ARGS_OUTSIDE_COMPILE_CACHE_KEY]
    identity = [model.image_tag, model.generation.name, model.slice.topology, *graph_args]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Exposure:
    """How callers reach one model, decided once from its config. External: a public load balancer
    limited to sourceRanges, and callers present the API key. Internal: an internal load balancer
    (client addresses kept), which the private 10/8 may call when sourceRanges is empty."""

    external: bool
    source_ranges: tuple[str, ...]

    @property
    def service_annotations(self) -> dict[str, str]:
        return {} if self.external else {facts.INTERNAL_LB_ANNOTATIONS[0]: facts.INTERNAL_LB_VALUE}

    @property
    def allowed_sources(self) -> tuple[str, ...]:
        return self.source_ranges or (PRIVATE_CLIENTS,)


def exposure(model: ModelConfig) -> Exposure:
    return Exposure(external=model.exposure == "external", source_ranges=model.source_ranges)


def selector(model: ModelConfig) -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": model.name}


def vllm_container(model: ModelConfig, chips_per_node: int, sidecar: FuseSidecar, with_api_key: bool) -> k8s.core.v1.ContainerArgsDict:
    """The server's container: the launcher, its args and env, the node's chips and the pod's share
    of CPU and memory (less the FUSE sidecar's), probes sized to a cold start, and no privileges."""
    machine = model.machine
    resources = {
        "cpu": str(pod_cpu(machine) - sidecar.cpu),
        "memory": f"{pod_memory_gib(machine) - sidecar.memory_gib}Gi",
        facts.TPU_RESOURCE: str(chips_per_node),
    }
    env: list[k8s.core.v1.EnvVarArgsDict] = [
        {"name": "HF_TOKEN_PATH", "value": f"{HF_TOKEN_DIR}/token"},
        {"name": "HOME", "value": "/home/vllm"},
        {"name": facts.XLA_CACHE_ENV, "value": f"{DATA_DIR}/xla-cache/{compile_cache_key(model)}"},
    ]
    secret_mounts: list[k8s.core.v1.VolumeMountArgsDict] = [{"name": "hf-token", "mount_path": HF_TOKEN_DIR, "read_only": True}]
    if with_api_key:
        env.append({"name": "VLLM_API_KEY_FILE", "value": f"{API_KEY_DIR}/key"})
        secret_mounts.append({"name": "api-key", "mount_path": API_KEY_DIR, "read_only": True})
    http_get: k8s.core.v1.HTTPGetActionArgsDict = {"path": facts.VLLM_HEALTH_PATH, "port": "http"}
    return {
        "name": NAME,
        "image": f"{facts.VLLM_IMAGE_REPOSITORY}:{model.image_tag}",
        "image_pull_policy": "Always",
        "command": ["/bin/sh", "-c", LAUNCHER, NAME],
        "args": serving_args(model),
        "env": env,
        "ports": [{"name": "http", "container_port": facts.VLLM_PORT, "protocol": "TCP"}],
        "resources": {"requests": resources, "limits": resources},
        # A cold start downloads weights and compiles for up to startupMinutes; nothing else
        # probes until it is done, and liveness then tolerates minutes of a saturated server.
        "startup_probe": {
            "http_get": http_get,
            "period_seconds": 10,
            "timeout_seconds": 5,
            "failure_threshold": model.startup_minutes * 6,
        },
        "readiness_probe": {"http_get": http_get, "period_seconds": 10, "timeout_seconds": 5, "failure_threshold": 3},
        "liveness_probe": {"http_get": http_get, "period_seconds": 30, "timeout_seconds": 10, "failure_threshold": 6},
        "lifecycle": {"pre_stop": {"exec_": {"command": ["/bin/sh", "-c", f"sleep {PRESTOP_SECONDS}"]}}},
        "security_context": {
            "allow_privilege_escalation": False,
            "privileged": False,
            "read_only_root_filesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccomp_profile": {"type": "RuntimeDefault"},
        },
        "volume_mounts": [
            {"name": "model-cache", "mount_path": DATA_DIR},
            {"name": "dshm", "mount_path": "/dev/shm"},
            {"name": "tmp", "mount_path": "/tmp"},
            {"name": "home", "mount_path": "/home/vllm"},
            *secret_mounts,
        ],
    }


@dataclass(frozen=True)
class PodInputs:
    """What the pod takes from other resources: the names the Kubernetes objects and the bucket
    get (Outputs in the program, plain strings in a test)."""

    service_account_name: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    hf_token_secret: pulumi.Input[str]
    api_key_secret: pulumi.Input[str] | None


def pod_spec(model: ModelConfig, placement: SlicePlacement, sidecar: FuseSidecar, inputs: PodInputs) -> k8s.core.v1.PodSpecArgsDict:
    """The server's pod on its slice: the container, the bucket mounted through FUSE with a RAM
    file cache, scratch volumes, and the secrets as read-only files."""
    secret_volumes: list[k8s.core.v1.VolumeArgsDict] = [
        {"name": "hf-token", "secret": {"secret_name": inputs.hf_token_secret, "default_mode": 0o400}}
    ]
    if inputs.api_key_secret is not None:
        secret_volumes.append({"name": "api-key", "secret": {"secret_name": inputs.api_key_secret, "default_mode": 0o400}})
    return {
        "service_account_name": inputs.service_account_name,
        "automount_service_account_token": False,
        "node_selector": placement.node_selector,
        "tolerations": placement.tolerations,
        "affinity": placement.affinity,
        "termination_grace_period_seconds": PRESTOP_SECONDS + model.shutdown_timeout_seconds + 15,
        "security_context": {"seccomp_profile": {"type": "RuntimeDefault"}},
        "containers": [vllm_container(model, placement.chips_per_node, sidecar, inputs.api_key_secret is not None)],
        "volumes": [
            {
                "name": "model-cache",
                "csi": {
                    "driver": facts.GCSFUSE_DRIVER,
                    "volume_attributes": {
                        "bucketName": inputs.bucket_name,
                        "mountOptions": ",".join(facts.gcsfuse_mount_options(sidecar.file_cache_mib)),
                        "gcsfuseMetadataPrefetchOnMount": "true",
                    },
                },
            },
            # The sidecar takes this volume as its file cache: weights are read from RAM.
            {"name": facts.GCSFUSE_CACHE_VOLUME, "empty_dir": {"medium": "Memory"}},
            {"name": "dshm", "empty_dir": {"medium": "Memory"}},
            {"name": "tmp", "empty_dir": {}},
            {"name": "home", "empty_dir": {}},
            *secret_volumes,
        ],
    }


def deployment_annotations(model: ModelConfig) -> dict[str, str]:
    return {
        facts.COMPILE_CACHE_ANNOTATION: facts.COMPILE_CACHE_SINGLE_WRITER,
        # pulumi up waits for the first replica through a cold compile, not the default 10 minutes.
        "pulumi.com/timeoutSeconds": str(cold_start_seconds(model)),
        **ROOT_SKIPS,
    }


def deployment_spec(
    model: ModelConfig, labels: dict[str, str], sidecar: FuseSidecar, pod: k8s.core.v1.PodSpecArgsDict
) -> k8s.apps.v1.DeploymentSpecArgsDict:
    return {
        # With an HPA the count is its to own; it only exists once this first replica is ready.
        "replicas": None if model.autoscaled else 1,
        # The default 600 s marks every cold start ProgressDeadlineExceeded, which fails
        # `kubectl rollout status` and pulumi's own wait. The clock restarts whenever a new
        # pod becomes available, and rollouts start one pod at a time: one cold start each.
        "progress_deadline_seconds": cold_start_seconds(model),
        "selector": {"match_labels": selector(model)},
        # New pods start one at a time, each after the previous one is ready: one cache writer.
        "strategy": {"type": "RollingUpdate", "rolling_update": {"max_surge": 1, "max_unavailable": 0}},
        "template": {
            "metadata": {"labels": {**labels, **selector(model)}, "annotations": {"gke-gcsfuse/volumes": "true", **sidecar.annotations}},
            "spec": pod,
        },
    }


def service_annotations(model: ModelConfig, reach: Exposure) -> dict[str, str]:
    # pulumi waits for a LoadBalancer Service until it has an address and ready endpoints, 10
    # minutes by default (pulumi-kubernetes provider/pkg/await/service.go); its endpoints are
    # the server's pods, Ready only after a cold start. Waiting that long rather than skipping
    # the wait keeps the exported address and curl real on the first `pulumi up`.
    return {"pulumi.com/timeoutSeconds": str(cold_start_seconds(model)), **reach.service_annotations}


def service_spec(model: ModelConfig, reach: Exposure) -> k8s.core.v1.ServiceSpecArgsDict:
    return {
        "type": "LoadBalancer",
        # Local keeps the client's address (Cluster would SNAT it to a node's when a load balancer
        # hop lands on a node without the pod), so the NetworkPolicy's ipBlock sees the real caller.
        "external_traffic_policy": "Local",
        "selector": selector(model),
        "ports": [{"name": "http", "port": facts.VLLM_PORT, "target_port": "http", "protocol": "TCP"}],
        "load_balancer_source_ranges": list(reach.source_ranges) or None,
    }


def pod_monitoring_spec(model: ModelConfig) -> dict[str, object]:
    # A CustomResource's spec reaches the API server as written (no snake_case translation), so
    # it takes the CRD's camelCase keys: `match_labels` would be pruned, leaving an empty selector.
    return {
        "selector": {"matchLabels": selector(model)},
        "endpoints": [{"port": facts.VLLM_PORT, "path": facts.VLLM_METRICS_PATH, "interval": "15s"}],
    }


def server_network_policy(reach: Exposure) -> k8s.networking.v1.NetworkPolicySpecArgsDict:
    """The server's port, to its allowed callers and to Managed Prometheus's collectors."""
    port: list[k8s.networking.v1.NetworkPolicyPortArgsDict] = [{"port": facts.VLLM_PORT, "protocol": "TCP"}]
    collectors: k8s.meta.v1.LabelSelectorRequirementArgsDict = {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": list(facts.GMP_COLLECTOR_NAMESPACES),
    }
    return network_policy(
        [
            {"from_": [{"ip_block": {"cidr": cidr}} for cidr in reach.allowed_sources], "ports": port},
            {"from_": [{"namespace_selector": {"match_expressions": [collectors]}}], "ports": port},
        ]
    )


def disruption_budget_spec(model: ModelConfig) -> k8s.policy.v1.PodDisruptionBudgetSpecArgsDict:
    # One serving replica survives voluntary disruptions (GKE upgrades wait up to an hour for it);
    # a replica that is not Ready serves nothing and may always be evicted.
    return {"min_available": 1, "selector": {"match_labels": selector(model)}, "unhealthy_pod_eviction_policy": "AlwaysAllow"}


@dataclass(frozen=True)
class VllmServerArgs:
    model: ModelConfig
    namespace: ModelNamespace
    service_account_name: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    placement: SlicePlacement
    autopilot: bool
    hf_token: pulumi.Input[str]
    # The stack's API key: mounted only when the model is exposed externally (exposure()).
    api_key: pulumi.Input[str] | None
    labels: dict[str, str]
    # What must exist before the first pod can start: its node pool, its bucket grant.
    start_after: list[pulumi.Resource]


def object_metadata(
    namespace: str, labels: dict[str, str], annotations: dict[str, str] | None = None, object_name: str = NAME
) -> k8s.meta.v1.ObjectMetaArgsDict:
    return {"name": object_name, "namespace": namespace, "labels": labels, "annotations": annotations}


def server_secrets(
    name: str,
    namespace: str,
    labels: dict[str, str],
    hf_token: pulumi.Input[str],
    api_key: pulumi.Input[str] | None,
    opts: pulumi.ResourceOptions,
) -> tuple[pulumi.Output[str], pulumi.Output[str] | None]:
    """The Hugging Face token's Secret and, for a model exposed with one, the API key's: their names."""

    def secret(suffix: str, key: str, value: pulumi.Input[str]) -> pulumi.Output[str]:
        created = k8s.core.v1.Secret(
            f"{name}-{suffix}",
            metadata=object_metadata(namespace, labels, object_name=suffix),
            type="Opaque",
            string_data={key: value},
            opts=opts,
        )
        return created.metadata.apply(lambda m: m["name"])

    return secret("hf-token", "token", hf_token), (secret("api-key", "key", api_key) if api_key is not None else None)


class VllmServer(pulumi.ComponentResource):
    deployment: k8s.apps.v1.Deployment
    service_address: pulumi.Output[str]
    curl: pulumi.Output[str]

    def __init__(self, name: str, args: VllmServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(tokens.VLLM_SERVER, name, None, opts)
        model, reach = args.model, exposure(args.model)
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[args.namespace.resource])

        def metadata(annotations: dict[str, str] | None = None, object_name: str = NAME) -> k8s.meta.v1.ObjectMetaArgsDict:
            return object_metadata(args.namespace.name, args.labels, annotations, object_name)

        api_key = args.api_key if reach.external else None
        hf_token_secret, api_key_secret = server_secrets(name, args.namespace.name, args.labels, args.hf_token, api_key, in_namespace)
        sidecar = gcsfuse_sidecar(model, args.autopilot)
        pod = pod_spec(
            model, args.placement, sidecar, PodInputs(args.service_account_name, args.bucket_name, hf_token_secret, api_key_secret)
        )
        self.deployment = k8s.apps.v1.Deployment(
            name,
            metadata=metadata(deployment_annotations(model)),
            spec=deployment_spec(model, args.labels, sidecar, pod),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.namespace.resource, *args.start_after]),
        )
        service = k8s.core.v1.Service(
            name, metadata=metadata(service_annotations(model, reach)), spec=service_spec(model, reach), opts=in_namespace
        )
        k8s.apiextensions.CustomResource(
            name,
            api_version="monitoring.googleapis.com/v1",
            kind="PodMonitoring",
            metadata=metadata(),
            spec=pod_monitoring_spec(model),
            opts=in_namespace,
        )
        k8s.networking.v1.NetworkPolicy(name, metadata=metadata(), spec=server_network_policy(reach), opts=in_namespace)
        k8s.policy.v1.PodDisruptionBudget(name, metadata=metadata(), spec=disruption_budget_spec(model), opts=in_namespace)
        self.service_address = service.status.apply(load_balancer_address)
        self.curl = self.service_address.apply(lambda address: curl_command(model, address))
        self.register_outputs(
            {"serviceAddress": self.service_address, "curl": self.curl, "deployment": self.deployment.metadata.apply(lambda m: m["name"])}
        )


def load_balancer_address(status: k8s.core.v1.outputs.ServiceStatus | None) -> str:
    ingress = status.load_balancer.ingress if status and status.load_balancer else None
    return (ingress[0].ip or ingress[0].hostname or "") if ingress else ""


def curl_command(model: ModelConfig, address: str) -> str:
    """A first request to paste; the key is read from the caller's environment, never inlined."""
    auth = ' -H "Authorization: Bearer $VLLM_API_KEY"' if exposure(model).external else ""
    body = json.dumps({"model": model.hf_id, "prompt": "San Francisco is a", "max_tokens": 7, "temperature": 0})
    return (
        f"curl http://{address or '<pending: kubectl -n ' + model.namespace + ' get service vllm>'}:{facts.VLLM_PORT}/v1/completions"
        f" -H 'Content-Type: application/json'{auth} -d '{body}'"
    )
