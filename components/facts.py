"""The one copy of the facts this project depends on: TPU generations and slices, GKE
versions, the vLLM image and its metrics, Cloud Storage FUSE options.

Sources: ../shared/reference/tpu-facts.md and vllm-gke-facts.md (Google's TPU and GKE docs,
the vLLM repository). Every other module, the policy pack and the planners read these tables;
none of them restates a number. Values the docs mark as unconfirmed are data that config can
extend (zones) rather than a closed list.

What belongs here: facts about GCP, GKE, TPUs and vLLM, each with its source (machine types,
topologies, labels, taints, versions, ForceNew and server-filled fields, error texts), and the
contracts the program and the policy pack must agree on (the compile-cache annotation, internal
load balancer annotations, moving image tags). A choice of this project that one module reads
(the pod's share of a node, the FUSE sidecar's sizing) lives with that module; type tokens are
in components/tokens.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from components import tokens

GIB = 1024**3


@dataclass(frozen=True)
class MachineType:
    """A TPU VM shape: its chips and its host vCPUs and memory (Compute Engine machine docs)."""

    name: str
    chips: int
    vcpus: int
    memory_gib: int


@dataclass(frozen=True)
class Slice:
    """One topology of a generation: how many chips, on how many VMs of which machine type."""

    topology: str
    chips: int
    vms: int
    machine_type: str

    @property
    def multi_host(self) -> bool:
        return self.vms > 1

    @property
    def chips_per_vm(self) -> int:
        return self.chips // self.vms


@dataclass(frozen=True)
class Generation:
    name: str
    accelerator: str  # value of the cloud.google.com/gke-tpu-accelerator node label
    hbm_gib_per_chip: float
    bf16_tflops_per_chip: float
    machine_types: tuple[MachineType, ...]
    slices: tuple[Slice, ...]
    zones: tuple[str, ...]
    min_gke_standard: str
    min_gke_autopilot: str
    # JAX devices (TensorCores that vLLM shards over) per chip: tensor parallelism counts these.
    # tpu7x has 2 per chip (AI-Hypercomputer/tpu-recipes inference/ironwood, vllm-project/tpu-inference);
    # v5p's two run as one megacore device; v5e and v6e have one.
    devices_per_chip: int = 1

    def machine(self, name: str) -> MachineType:
        for machine in self.machine_types:
            if machine.name == name:
                return machine
        raise KeyError(name)

    def slices_of(self, topology: str) -> tuple[Slice, ...]:
        return tuple(s for s in self.slices if s.topology == topology)

    def single_host_slice(self, topology: str) -> Slice | None:
        """The slice a single pod can own whole: all its chips on one VM."""
        return next((s for s in self.slices_of(topology) if not s.multi_host), None)

    @property
    def topologies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.topology for s in self.slices))


def _two_d(prefix: str, small: tuple[str, str, str], multi: str) -> tuple[Slice, ...]:
    """v5e and v6e share one pattern: 1x1, 2x2 and 2x4 on one VM of 1, 4 or 8 chips; 2x4 also
    as two 4-chip VMs (GKE API only); larger shapes on 4-chip VMs."""
    one, four, eight = (f"{prefix}-{s}" for s in small)
    single = (Slice("1x1", 1, 1, one), Slice("2x2", 4, 1, four), Slice("2x4", 8, 1, eight))
    shapes = (("2x4", 8), ("4x4", 16), ("4x8", 32), ("8x8", 64), ("8x16", 128), ("16x16", 256))
    return single + tuple(Slice(t, chips, chips // 4, multi) for t, chips in shapes)


# Sources: GKE "Plan TPUs in GKE" (cloud.google.com/kubernetes-engine/docs/concepts/plan-tpus:
# accelerator label values, machine types, topologies, minimum GKE versions per mode), the Cloud TPU
# pages per generation (cloud.google.com/tpu/docs/v5e, /v5p, /v6e, /tpu7x: HBM, peak bf16, zones),
# and Compute Engine's accelerator-optimized machine table for host vCPUs and memory; gathered in
# ../shared/reference/tpu-facts.md. Zones are the documented ones; config may add more.
GENERATIONS: Mapping[str, Generation] = MappingProxyType(
    {
        "v5e": Generation(
            name="v5e",
            accelerator="tpu-v5-lite-podslice",
            hbm_gib_per_chip=16,
            bf16_tflops_per_chip=197,
            machine_types=(
                MachineType("ct5lp-hightpu-1t", 1, 24, 48),
                MachineType("ct5lp-hightpu-4t", 4, 112, 192),
                MachineType("ct5lp-hightpu-8t", 8, 224, 384),
            ),
            slices=_two_d("ct5lp-hightpu", ("1t", "4t", "8t"), "ct5lp-hightpu-4t"),
            zones=("us-central1-a", "us-south1-a", "us-west1-c", "us-west4-a"),
            min_gke_standard="1.27.2-gke.2100",
            min_gke_autopilot="1.29.2-gke.1521000",
        ),
        "v5p": Generation(
            name="v5p",
            accelerator="tpu-v5p-slice",
            hbm_gib_per_chip=95,
            bf16_tflops_per_chip=459,
            machine_types=(MachineType("ct5p-hightpu-4t", 4, 208, 448),),
            slices=(
                Slice("2x2x1", 4, 1, "ct5p-hightpu-4t"),
                Slice("2x2x2", 8, 2, "ct5p-hightpu-4t"),
                Slice("2x2x4", 16, 4, "ct5p-hightpu-4t"),
                Slice("2x4x4", 32, 8, "ct5p-hightpu-4t"),
            ),
            zones=("us-central1-a", "us-east5-a"),
            min_gke_standard="1.28.3-gke.1024000",
            min_gke_autopilot="1.29.2-gke.1521000",
        ),
        "v6e": Generation(
            name="v6e",
            accelerator="tpu-v6e-slice",
            hbm_gib_per_chip=32,
            bf16_tflops_per_chip=918,
            machine_types=(
                MachineType("ct6e-standard-1t", 1, 44, 448),
                MachineType("ct6e-standard-4t", 4, 180, 720),
                MachineType("ct6e-standard-8t", 8, 180, 1440),
            ),
            slices=_two_d("ct6e-standard", ("1t", "4t", "8t"), "ct6e-standard-4t"),
            zones=("us-central1-b", "us-east1-d", "us-east5-a", "us-east5-b", "europe-west4-a"),
            min_gke_standard="1.31.2-gke.1115000",
            min_gke_autopilot="1.32.0-gke.0",
        ),
        "tpu7x": Generation(
            name="tpu7x",
            accelerator="tpu7x",
            hbm_gib_per_chip=192,
            bf16_tflops_per_chip=2307,
            # Host vCPUs and memory of tpu7x VMs are unconfirmed (not in the sourced facts): conservative guesses.
            # tpu7x-standard-1t (a 1x1x1 slice) and the 4x4x4 cube: AI-Hypercomputer/tpu-recipes inference/ironwood,
            # AI-Hypercomputer/xpk system_characteristics.py.
            machine_types=(MachineType("tpu7x-standard-1t", 1, 56, 240), MachineType("tpu7x-standard-4t", 4, 224, 960)),
            slices=(
                Slice("1x1x1", 1, 1, "tpu7x-standard-1t"),
                Slice("2x2x1", 4, 1, "tpu7x-standard-4t"),
                Slice("2x2x2", 8, 2, "tpu7x-standard-4t"),
                Slice("2x2x4", 16, 4, "tpu7x-standard-4t"),
                Slice("4x4x4", 64, 16, "tpu7x-standard-4t"),
            ),
            zones=("us-central1-c",),
            min_gke_standard="1.34.0-gke.2201000",
            min_gke_autopilot="1.34.1-gke.3084001",
            devices_per_chip=2,
        ),
    }
)


def machine_type_info(name: str) -> tuple[Generation, MachineType] | None:
    for generation in GENERATIONS.values():
        for machine in generation.machine_types:
            if machine.name == name:
                return generation, machine
    return None


# --- GKE scheduling ---------------------------------------------------------------------------
# GKE "Deploy TPU workloads in GKE Standard" (cloud.google.com/kubernetes-engine/docs/how-to/tpus):
# pods request google.com/tpu, select both labels, and TPU nodes carry the google.com/tpu taint.
TPU_RESOURCE = "google.com/tpu"
ACCELERATOR_LABEL = "cloud.google.com/gke-tpu-accelerator"
TOPOLOGY_LABEL = "cloud.google.com/gke-tpu-topology"
# pulumi-gcp container.ClusterReleaseChannel.channel; GKE "Release channels" docs.
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")
# A single-host slice's pool takes no topology: GKE answers 400 with this text (quoted in
# AI-Hypercomputer/xpk PR 825). Google's Terraform sample sets placement_policy only when a slice
# has more than one node (kubernetes-engine-samples ai-ml/gke-ray/tpu/get-started/cluster/main.tf),
# and GKE still labels the nodes with gke-tpu-topology, so pod selectors keep working.
# Multi-host slices need COMPACT placement with the topology.
SINGLE_HOST_TOPOLOGY_REFUSED = "TPU topology can't be specified with single-host TPU slice pool"
# A multi-host slice's pool is one slice: COMPACT placement with the topology, node count = the
# slice's hosts (AI-Hypercomputer/xpk src/xpk/core/nodepool.py: --num-nodes=vms_per_slice, and
# --placement-type=COMPACT --tpu-topology only when vms_per_slice > 1; kubernetes-engine-samples
# ai-ml/gke-ray/tpu/get-started/cluster/main.tf: one google_container_node_pool per slice, count =
# num_tpu_slices, node_count = nodes_per_slice). GKE scales such a pool atomically, all hosts or none
# (docs.ray.io "Use TPUs with KubeRay": "GKE scales them atomically by node pools"). GKE validates the
# slice against the per-zone max_node_count, which is 0 when total_max_node_count is used, and refuses
# the pool with this text (vllm-project/ci-infra PR 545): such a pool sits in one zone and sets
# min_node_count/max_node_count, with location_policy ANY (a balanced spread cannot assemble a slice).
MULTI_HOST_ZERO_MAX_REFUSED = "Maximum node count 0 is not a valid size of TPU pod slice with topology"
MULTI_HOST_LOCATION_POLICY = "ANY"
# GKE's node label naming a node's pool.
NODE_POOL_LABEL = "cloud.google.com/gke-nodepool"


def parse_gke_version(version: str) -> tuple[int, ...] | None:
    """'1.31.2-gke.1115000' -> (1, 31, 2, 1115000); a bare '1.32' -> (1, 32, 0, 0)."""
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:-gke\.(\d+))?", version.strip())
    if not match:
        return None
    return tuple(int(part or 0) for part in match.groups())


def gke_version_at_least(version: str, minimum: str) -> bool:
    have, need = parse_gke_version(version), parse_gke_version(minimum)
    return have is not None and need is not None and have >= need


# --- vLLM -------------------------------------------------------------------------------------
# Sources: the vLLM repository (vllm/entrypoints/openai/api_server.py for the routes, the port and
# --api-key's scope; docs/usage/security.md; release notes for --shutdown-timeout and the metrics),
# advisory GHSA-94f4-hr76-p5j6, Docker Hub vllm/vllm-tpu tags; gathered in ../shared/reference/vllm-gke-facts.md.
VLLM_IMAGE_REPOSITORY = "vllm/vllm-tpu"
VLLM_DEFAULT_TAG = "v0.22.0"
VLLM_PORT = 8000
VLLM_HEALTH_PATH = "/health"
VLLM_METRICS_PATH = "/metrics"
# Before 0.22.0 the API-key middleware could be bypassed with a crafted Host header.
VLLM_MIN_SAFE_VERSION = (0, 22, 0)
VLLM_MIN_SAFE_ADVISORY = "GHSA-94f4-hr76-p5j6"
# --shutdown-timeout (drain in-flight requests on SIGTERM) exists from this version on.
VLLM_SHUTDOWN_TIMEOUT_SINCE = (0, 18, 0)
# Paths that vLLM's --api-key does not protect.
VLLM_UNAUTHENTICATED_PATHS = ("/health", "/metrics", "/tokenize", "/detokenize", "/invocations", "/version")
# vLLM's own defaults for flags a manifest may omit (read by the policy pack's fit and parallelism checks).
VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
VLLM_DEFAULT_PARALLEL_SIZE = 1  # --tensor-parallel-size and --pipeline-parallel-size
# Either one turns the server's API key on: vLLM reads the first; the stack's launcher fills it from the file the second names.
VLLM_API_KEY_ENVS = ("VLLM_API_KEY", "VLLM_API_KEY_FILE")

# vllm/v1/metrics/loggers.py (PrometheusStatLogger) names the gauges.
METRIC_REQUESTS_WAITING = "vllm:num_requests_waiting"
METRIC_REQUESTS_RUNNING = "vllm:num_requests_running"
METRIC_KV_CACHE = "vllm:kv_cache_usage_perc"
METRIC_KV_CACHE_LEGACY = "vllm:gpu_cache_usage_perc"
# (first version that exposes it, first version that no longer does); None = open-ended.
# gpu_cache_usage_perc was hidden in 0.11 and removed in 0.12; kv_cache_usage_perc replaced it in 0.9.2.
METRIC_VERSIONS: Mapping[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]] = MappingProxyType(
    {
        METRIC_REQUESTS_WAITING: (None, None),
        METRIC_REQUESTS_RUNNING: (None, None),
        METRIC_KV_CACHE: ((0, 9, 2), None),
        METRIC_KV_CACHE_LEGACY: (None, (0, 11, 0)),
    }
)


def parse_vllm_version(tag: str) -> tuple[int, ...] | None:
    """'v0.12.0' or '0.12.0' -> (0, 12, 0); nightly and other tags -> None (unknown)."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:[.-]?post\d+|rc\d+)?", tag)
    return tuple(int(part) for part in match.groups()) if match else None


def metric_exists(metric: str, version: tuple[int, ...]) -> bool:
    since, until = METRIC_VERSIONS.get(metric, (None, None))
    return (since is None or version >= since) and (until is None or version < until)


def kv_cache_metric(version: tuple[int, ...] | None) -> str:
    return METRIC_KV_CACHE_LEGACY if version is not None and version < (0, 9, 2) else METRIC_KV_CACHE


def gmp_pod_metric(metric: str) -> str:
    """The name under which Managed Prometheus gauges reach an HPA through the adapter."""
    return f"prometheus.googleapis.com|{metric}|gauge"


def image_tag(image: str) -> str | None:
    """The tag of an image reference, or None when it has none (a digest is not a tag)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


# --- Multi-host serving: LeaderWorkerSet and Ray ---------------------------------------------------
# The LeaderWorkerSet controller, pinned (kubernetes-sigs/lws site/content/en/docs/installation/_index.md:
# "kubectl apply --server-side -f https://github.com/kubernetes-sigs/lws/releases/download/$VERSION/manifests.yaml",
# VERSION=v0.10.0; the Helm alternative, oci://registry.k8s.io/lws/charts/lws 0.10.0, installs its CRDs
# from crds/ only on the first install and never upgrades them, which the manifest does).
LWS_VERSION = "v0.10.0"
LWS_MANIFEST_URL = f"https://github.com/kubernetes-sigs/lws/releases/download/{LWS_VERSION}/manifests.yaml"
# The controller's admission webhooks (failurePolicy Fail) listen on 9443 behind a Service on 443
# (lws v0.10.0 config/webhook/service.yaml, config/default/manager_webhook_patch.yaml). A private GKE
# cluster's automatic firewall rule lets the control plane reach nodes on TCP 443 and 10250 only
# (cloud.google.com/kubernetes-engine/docs/concepts/firewall-rules, gke-<cluster>-<hash>-master), so
# without a rule for this port every LeaderWorkerSet create times out in the webhook.
LWS_WEBHOOK_PORT = 9443
# kubernetes-sigs/lws api/leaderworkerset/v1/leaderworkerset_types.go: the group, labels, annotation,
# env vars the controller injects into every pod of a group, the Available condition, and the scale
# subresource (specpath .spec.replicas, selectorpath .status.hpaPodSelector: the leaders).
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
LWS_KIND = "LeaderWorkerSet"
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"  # "0" is the leader
# One group per node pool, exclusively: with the pool label as its key, every pod of a group lands in
# one pool (one slice) and no other group shares it.
LWS_EXCLUSIVE_TOPOLOGY_ANNOTATION = "leaderworkerset.sigs.k8s.io/exclusive-topology"
LWS_LEADER_ADDRESS_ENV = "LWS_LEADER_ADDRESS"
LWS_GROUP_SIZE_ENV = "LWS_GROUP_SIZE"
LWS_AVAILABLE_CONDITION = "Available"
# pulumi-kubernetes (4.18+) awaits any object on this annotation ("condition=Available"), so a
# LeaderWorkerSet is waited for like a Deployment.
PULUMI_WAIT_FOR_ANNOTATION = "pulumi.com/waitFor"
# vLLM on a multi-host TPU slice: a Ray cluster per slice, the head on the leader (port 6379), and
# tensor parallel over every device of the slice, pipeline parallel 1: kubernetes-sigs/lws
# docs/examples/vllm/TPU/lws.yaml (v5e 4x4, size 4, --tensor-parallel-size=16), vllm-project/tpu-inference
# examples/offload/gke/benchmarks/multi-host/deploy-baseline.yaml (tpu7x 2x2x2, LWS size 2,
# --tensor-parallel-size 16) and .buildkite/features/multi-host.yml, kubernetes-engine-samples
# ai-ml/gke-ray/rayserve/llm/tpu/serve_tpu_multihost.py (v6e 4x4, tensor_parallel_size 16,
# distributed_executor_backend ray). The leader waits for every host to join before vLLM starts
# (vllm-project/vllm examples/online_serving/multi-node-serving.sh). TPU_MULTIHOST_BACKEND=ray on every
# host (tpu-inference deploy-baseline.yaml, run_multihost.sh; the RayService sample).
RAY_HEAD_PORT = 6379
VLLM_MULTIHOST_PIPELINE_PARALLEL = 1
VLLM_MULTIHOST_ENV: Mapping[str, str] = MappingProxyType({"TPU_MULTIHOST_BACKEND": "ray"})
# Google's multi-host RayService sample keeps VLLM_XLA_CACHE_PATH on local disk "to prevent multi-host
# GCSFuse race conditions" (ray-service.tpu-v6e-multihost.yaml); tpu-inference points JAX's
# persistent cache at VLLM_XLA_CACHE_PATH on every host (tpu_inference/runner/compilation_manager.py)
# and vLLM's Ray executor copies the driver's VLLM_* variables to every worker, so the hosts of a
# group would share one directory.
MULTI_HOST_CACHE_RACE_SOURCE = "kubernetes-engine-samples ai-ml/gke-ray/rayserve/llm/tpu/ray-service.tpu-v6e-multihost.yaml"


# --- Compile cache, weights --------------------------------------------------------------------
XLA_CACHE_ENV = "VLLM_XLA_CACHE_PATH"
GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
GCSFUSE_CACHE_VOLUME = "gke-gcsfuse-cache"
# The seed's options plus Google's serving guidance (GKE docs "Optimize Cloud Storage FUSE CSI driver
# performance"; GoogleCloudPlatform/gcs-fuse-csi-driver docs). The file cache's size is not among
# them: it is bounded per pod (gcsfuse_mount_options).
GCSFUSE_MOUNT_OPTIONS = (
    "implicit-dirs",
    "metadata-cache:ttl-secs:-1",
    "metadata-cache:stat-cache-max-size-mb:-1",
    "metadata-cache:type-cache-max-size-mb:-1",
    "file-cache:cache-file-for-range-read:true",
    "file-cache:enable-parallel-downloads:true",
    "file-cache:parallel-downloads-per-file:100",
    "file-cache:max-parallel-downloads:-1",
    "file-cache:download-chunk-size-mb:10",
)


def gcsfuse_mount_options(file_cache_mib: int) -> tuple[str, ...]:
    """The mount options of one pod. gcsfuse counts max-size-mb in MiB and evicts least recently
    used files beyond it; a file larger than the cache is read from the bucket, uncached
    (cloud.google.com/storage/docs/cloud-storage-fuse/file-caching, gcsfuse v2.4.0 release notes)."""
    return (*GCSFUSE_MOUNT_OPTIONS, f"file-cache:max-size-mb:{file_cache_mib}")


# Serving flags that do not change what XLA compiles, so they stay out of the compile-cache key.
# vllm/vllm-tpu compiles, before it answers /health, one graph per padded token count (up to
# max-num-batched-tokens) and request count (up to max-num-seqs) for the model, dtype, quantization
# and tensor/pipeline layout, each taking the KV cache, whose shape follows from max-model-len and
# gpu-memory-utilization (vllm-project/tpu-inference tpu_inference/runner/compilation_manager.py,
# capture_model); JAX writes them under VLLM_XLA_CACHE_PATH. These flags only bind a socket, name
# the download directory or time a shutdown. The harmless flags are listed rather than the ones
# that matter, so a flag added later keys a fresh directory until someone shows it is harmless.
VLLM_ARGS_OUTSIDE_COMPILE_CACHE_KEY = ("--host", "--port", "--download-dir", "--shutdown-timeout")

# Managed Prometheus collectors scrape from gmp-system on Standard and gke-gmp-system on Autopilot
# (GKE docs "Managed Service for Prometheus: managed collection", network policy section).
GMP_COLLECTOR_NAMESPACES = ("gmp-system", "gke-gmp-system")

# --- Autoscaling adapter ------------------------------------------------------------------------
# Pinned as in Google's manifest (GoogleCloudPlatform/k8s-stackdriver
# custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model.yaml, commit af49d863).
METRICS_ADAPTER_IMAGE = "gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.16.9-gke.0"

# --- Namespaces ---------------------------------------------------------------------------------
# Baseline is enforced (the vLLM TPU image runs as root); restricted is reported as a warning.
POD_SECURITY_LABELS = MappingProxyType({"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted"})

# --- Identity -----------------------------------------------------------------------------------
BASIC_ROLES = ("roles/owner", "roles/editor", "roles/viewer")


def workload_identity_member(project_number: str, project: str, namespace: str, ksa: str) -> str:
    return (
        f"principal://iam.googleapis.com/projects/{project_number}/locations/global/"
        f"workloadIdentityPools/{project}.svc.id.goog/subject/ns/{namespace}/sa/{ksa}"
    )


# --- GKE node memory ------------------------------------------------------------------------------
# Standard nodes reserve memory for the kubelet and the OS, by tier of the VM's memory, plus 100 MiB
# for hard eviction (cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes#memory_and_cpu_reservations).
GKE_MEMORY_RESERVATION_TIERS = ((4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (None, 0.02))
GKE_EVICTION_THRESHOLD_GIB = 100 / 1024


def gke_reserved_memory_gib(memory_gib: float) -> float:
    """Memory a Standard node keeps from pods: its tiered reservation and the eviction threshold."""
    reserved, below = 0.0, memory_gib
    for size, share in GKE_MEMORY_RESERVATION_TIERS:
        tier = below if size is None else min(below, size)
        reserved, below = reserved + tier * share, below - tier
    return reserved + GKE_EVICTION_THRESHOLD_GIB


# --- Secrets and exposure -----------------------------------------------------------------------
# Variables huggingface_hub and the tools around it take a token from; HF_TOKEN_PATH (a file) is the safe form.
HF_TOKEN_ENVS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN")
HF_TOKEN_PATTERN = r"hf_[A-Za-z0-9]{30,}"
# A LoadBalancer Service with one of these annotations set to "Internal" gets a VPC-internal address.
INTERNAL_LB_ANNOTATIONS = ("networking.gke.io/load-balancer-type", "cloud.google.com/load-balancer-type")
INTERNAL_LB_VALUE = "Internal"

# --- Compile-cache scale-out contract: VllmServer writes it, the policy pack checks it -------------
COMPILE_CACHE_ANNOTATION = "serving.tpu.dev/compile-cache"
COMPILE_CACHE_SINGLE_WRITER = "single-writer"

# --- Project APIs and node identity -------------------------------------------------------------
# A new project has compute and container off, so the first resource of the stack would fail.
# Google's samples enable them as google_project_service resources, never disabled on destroy
# (GoogleCloudPlatform/kubernetes-engine-samples ai-ml/gke-ray/tpu/get-started/cluster/main.tf).
# Enabling needs roles/serviceusage.serviceUsageAdmin on the deployer. serviceusage and
# cloudresourcemanager are on in every new project and cannot enable themselves (the provider reads
# each service's project through Resource Manager first: terraform-provider-google
# resource_google_project_service.go; k8s-config-connector issue 135): listed, they are a no-op
# there and record the dependency; the README's set-up enables them once where they are off.
REQUIRED_APIS = (
    "serviceusage.googleapis.com",
    "cloudresourcemanager.googleapis.com",  # the project number (getProject) for Workload Identity members
    "compute.googleapis.com",
    "container.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",  # Workload Identity token exchange for the pods
    "storage.googleapis.com",
    "monitoring.googleapis.com",  # Managed Prometheus and the metrics adapter
    "logging.googleapis.com",
)
# The one role a node's own service account needs for logs, metrics and resource metadata (GKE docs,
# "Use least privilege IAM service accounts"; CIS GKE Benchmark v2 5.2.1). It replaces the older set
# of logWriter, metricWriter, monitoring.viewer and stackdriver.resourceMetadata.writer. The stack's
# images are public (Docker Hub, gcr.io/gke-release), so nodes get no registry role.
NODE_SERVICE_ACCOUNT_ROLE = "roles/container.defaultNodeServiceAccount"


# --- What the providers read back: ForceNew fields and fields the service fills ------------------
# The offline plan's second-apply check (offline_plan/second_apply.py) reads these; the components
# decide how to live with each (set it, leave it unset, or ignore_changes) and the check proves it.
# Paths are Pulumi input paths (camelCase, dotted).
@dataclass(frozen=True)
class ServerFilled:
    """A field the service sets or rewrites after create, and reports back on every read."""

    path: str
    value: Any  # what it reports (a representative value: the check only needs "differs from the input")
    source: str
    machine_type_prefixes: tuple[str, ...] = ()  # only on node pools of these machine types
    only_if_unset: bool = False  # the service fills it only where the request left it out

    def applies_to(self, inputs: Mapping[str, Any]) -> bool:
        if self.only_if_unset and input_at(inputs, self.path) is not None:
            return False
        if not self.machine_type_prefixes:
            return True
        machine = input_at(inputs, "nodeConfig.machineType")
        return isinstance(machine, str) and machine.startswith(self.machine_type_prefixes)


def input_at(value: Any, path: str) -> Any:
    """The value at a dotted input path, or None where any part is missing."""
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


@dataclass(frozen=True)
class ProviderFields:
    source: str
    force_new: tuple[str, ...] = ()  # a change of any of these fields replaces the resource
    # Blocks whose presence alone is ForceNew (Terraform ForceNew on a list block applies to its count):
    # a block the service reports and the program leaves out replaces the resource.
    force_new_blocks: tuple[str, ...] = ()
    computed: tuple[str, ...] = ()  # optional+computed or output-only: left unset by the program, what is read is kept
    server_filled: tuple[ServerFilled, ...] = ()
    # Terraform-bridged resources diff the program's inputs against the state read from the cloud;
    # pulumi-kubernetes diffs against the last inputs (server-side apply owns only the fields it sent).
    reads_state: bool = True


_TF = "hashicorp/terraform-provider-google@e03b7622 google/services"
_K8S_DIFF = "pulumi/pulumi-kubernetes provider/pkg/provider/diff.go forceNewProperties"
_K8S_FORCE_NEW = ("metadata.name", "metadata.namespace")
# Fields, and blocks whose every field is ForceNew (so is their presence), of node_config.
_NODE_CONFIG_FORCE_NEW = (
    *("serviceAccount", "oauthScopes", "spot", "flexStart", "metadata", "minCpuPlatform", "preemptible"),
    *("reservationAffinity", "shieldedInstanceConfig", "advancedMachineFeatures"),
)
_NODE_CONFIG_COMPUTED = ("machineType", "labels", "diskSizeGb", "diskType", "imageType", "workloadMetadataConfig", "shieldedInstanceConfig")
# On ct6e VMs GKE sets threads_per_core=1 itself and reports it; the block is Optional, not Computed,
# and ForceNew, so a pool that leaves it out is replaced on the next apply (container/node_config.go
# schemaNodeConfig advanced_machine_features and flattenNodeConfig; GoogleCloudPlatform/cloud-foundation-fabric
# PR 3972; vllm-project/ci-infra terraform/gcp_old/tpu-inference/k8s/clusters.tf ignores it on its TPU pools).
TPU_THREADS_PER_CORE = ServerFilled(
    "nodeConfig.advancedMachineFeatures",
    {"threadsPerCore": 1, "enableNestedVirtualization": False},
    f"{_TF}/container/node_config.go (advanced_machine_features: Optional, ForceNew); cloud-foundation-fabric PR 3972",
    machine_type_prefixes=("ct6e-",),
)
# Google's TPU sample states the reservation affinity on every TPU pool, NO_RESERVATION when none is
# named ("GKE TPU node pools need the affinity stated, not left default": kubernetes-engine-samples
# ai-ml/gke-ray/tpu/get-started/cluster/main.tf), and ci-infra ignores it; the block is ForceNew and
# not computed (container/node_config.go reservation_affinity). The value GKE reports is unconfirmed.
TPU_RESERVATION_AFFINITY = ServerFilled(
    "nodeConfig.reservationAffinity",
    {"consumeReservationType": "ANY_RESERVATION"},
    "kubernetes-engine-samples ai-ml/gke-ray/tpu/get-started/cluster/main.tf; container/node_config.go",
    machine_type_prefixes=("ct5lp-", "ct5p-", "ct6e-", "tpu7x-"),
    only_if_unset=True,
)
PROVIDER_FIELDS: Mapping[str, ProviderFields] = MappingProxyType(
    {
        tokens.CLUSTER: ProviderFields(
            source=f"{_TF}/container/resource_container_cluster.go",
            force_new=(
                "name",
                "location",
                "project",
                "network",
                "subnetwork",
                "ipAllocationPolicy",
                "enableAutopilot",
                "datapathProvider",
                "initialNodeCount",
                "privateClusterConfig.masterIpv4CidrBlock",
                "masterAuth.clientCertificateConfig",
                *(f"nodeConfig.{f}" for f in _NODE_CONFIG_FORCE_NEW),
            ),
            computed=(
                "endpoint",
                "masterVersion",
                "masterAuth.clusterCaCertificate",
                "selfLink",
                "nodeConfig",
                *(f"nodeConfig.{f}" for f in _NODE_CONFIG_COMPUTED),
                "monitoringConfig",
                "monitoringConfig.enableComponents",
                "monitoringConfig.managedPrometheus.autoMonitoringConfig",
                "monitoringConfig.advancedDatapathObservabilityConfig",
                "addonsConfig",
                "clusterAutoscaling",
                "workloadIdentityConfig",
                "nodeLocations",
                "releaseChannel",
            ),
            server_filled=(
                # With separate pools the API reports the first pool's node config as the cluster's
                # (resource_container_cluster.go read, d.Set("node_config") from cluster.NodeConfig;
                # terraform-provider-google issues 12070, 17511): here a Spot ct6e pool's.
                ServerFilled(
                    "nodeConfig",
                    {"machineType": "ct6e-standard-8t", "spot": True, "advancedMachineFeatures": TPU_THREADS_PER_CORE.value},
                    "terraform-provider-google issues 12070, 17511; pulumi-gcp container/cluster.py node_config docstring",
                ),
                # Standard clusters from 1.29.2-gke.2000 get the kube-state metrics package (STORAGE, HPA,
                # POD, DAEMONSET, DEPLOYMENT, STATEFULSET) on top of SYSTEM_COMPONENTS; ci-infra ignores the block.
                ServerFilled(
                    "monitoringConfig.enableComponents",
                    ["SYSTEM_COMPONENTS", "STORAGE", "HPA", "POD", "DAEMONSET", "DEPLOYMENT", "STATEFULSET"],
                    "cloud.google.com/stackdriver/docs/solutions/gke/kube-state-metrics; vllm-project/ci-infra "
                    "terraform/gcp_old/tpu-inference/k8s/clusters.tf (ignore_changes = [monitoring_config])",
                ),
            ),
        ),
        tokens.NODE_POOL: ProviderFields(
            source=f"{_TF}/container/resource_container_node_pool.go, container/node_config.go",
            # placement_policy is ForceNew as a block only: a changed tpu_topology inside it is not sent to GKE.
            force_new=(
                *("project", "location", "cluster", "name", "namePrefix", "initialNodeCount", "queuedProvisioning"),
                *(f"nodeConfig.{f}" for f in _NODE_CONFIG_FORCE_NEW),
            ),
            force_new_blocks=("placementPolicy",),
            computed=(
                "name",
                "namePrefix",
                "nodeLocations",
                "nodeCount",
                "initialNodeCount",
                "version",
                "autoscaling.locationPolicy",
                "management",
                "nodeConfig",
                *(f"nodeConfig.{f}" for f in _NODE_CONFIG_COMPUTED),
            ),
            server_filled=(TPU_THREADS_PER_CORE, TPU_RESERVATION_AFFINITY),
        ),
        tokens.PROJECT_SERVICE: ProviderFields(
            source=f"{_TF}/resourcemanager/resource_google_project_service.go", force_new=("service", "project")
        ),
        tokens.NETWORK: ProviderFields(
            source=f"{_TF}/compute/resource_compute_network.go",
            force_new=("name", "project", "autoCreateSubnetworks"),
            computed=("selfLink", "gatewayIpv4", "routingMode", "mtu"),
        ),
        tokens.FIREWALL: ProviderFields(
            source=f"{_TF}/compute/resource_compute_firewall.go",
            force_new=("name", "project", "network", "direction"),
            computed=("selfLink", "creationTimestamp", "priority", "destinationRanges", "sourceTags", "targetTags"),
        ),
        tokens.SUBNETWORK: ProviderFields(
            # ip_cidr_range is replaced only when it shrinks (CustomizeDiff IsShrinkageIpCidr); treated as ForceNew here.
            source=f"{_TF}/compute/resource_compute_subnetwork.go",
            force_new=("name", "project", "region", "network", "ipCidrRange"),
            computed=("selfLink", "gatewayAddress", "stackType", "purpose"),
        ),
        tokens.ROUTER: ProviderFields(
            source=f"{_TF}/compute/resource_compute_router.go", force_new=("name", "project", "region", "network")
        ),
        tokens.ROUTER_NAT: ProviderFields(
            source=f"{_TF}/compute/resource_compute_router_nat.go",
            force_new=("name", "project", "region", "router", "type", "endpointTypes"),
            computed=("natIps", "enableEndpointIndependentMapping", "enableDynamicPortAllocation", "minPortsPerVm"),
        ),
        tokens.SERVICE_ACCOUNT: ProviderFields(
            source=f"{_TF}/resourcemanager/resource_google_service_account.go",
            force_new=("accountId", "project"),
            computed=("email", "member", "name", "uniqueId"),
        ),
        tokens.PROJECT_IAM_MEMBER: ProviderFields(
            source="hashicorp/terraform-provider-google google/tpgiamresource/resource_iam_member.go (every field ForceNew)",
            force_new=("project", "role", "member", "condition"),
        ),
        tokens.BUCKET: ProviderFields(
            source=f"{_TF}/storage/resource_storage_bucket.go",
            force_new=("name", "location", "project", "enableObjectRetention", "hierarchicalNamespace"),
            computed=("selfLink", "url", "rpo", "softDeletePolicy", "versioning", "effectiveLabels", "terraformLabels"),
        ),
        tokens.BUCKET_IAM_MEMBER: ProviderFields(
            source="hashicorp/terraform-provider-google google/services/storage/iam_storage_bucket.go (every field ForceNew)",
            force_new=("bucket", "role", "member", "condition"),
        ),
        **{
            token: ProviderFields(source=_K8S_DIFF, force_new=(*_K8S_FORCE_NEW, *extra), reads_state=False)
            for token, extra in {
                tokens.DEPLOYMENT: ("spec.selector",),
                tokens.K8S_SERVICE: ("spec.clusterIP",),
                # Secrets are immutable to the provider unless enableSecretMutable is set.
                tokens.SECRET: ("type", "data", "stringData"),
                tokens.ROLE_BINDING: ("roleRef",),
                tokens.CLUSTER_ROLE_BINDING: ("roleRef",),
            }.items()
        },
    }
)


def provider_fields(token: str) -> ProviderFields | None:
    """What the provider of this type reads back and replaces on; any Kubernetes kind is replaced
    on a new name or namespace."""
    known = PROVIDER_FIELDS.get(token)
    if known is None and token.startswith(tokens.KUBERNETES_PREFIX) and not token.startswith(tokens.KUBERNETES_YAML_PREFIX):
        return ProviderFields(source=_K8S_DIFF, force_new=_K8S_FORCE_NEW, reads_state=False)
    return known


# --- Policy pack: how published manifests select TPUs and name vLLM images -----------------------
# A pod can select TPUs through a custom ComputeClass (GKE "About custom compute classes"): the
# nodeSelector names the class, whose spec.priorities[].tpu gives type (the accelerator label value),
# topology and count (chips per node). TPU nodes carry the google.com/tpu NoSchedule taint; a pod that
# requests no chips runs there only with a toleration for it (JetStream Pathways and LeaderWorkerSet leaders).
COMPUTE_CLASS_LABEL = "cloud.google.com/compute-class"
COMPUTE_CLASS_KIND = "ComputeClass"
# vLLM's upstream images: the TPU build (VLLM_IMAGE_REPOSITORY) and the CUDA one, which no TPU pod can use.
VLLM_GPU_IMAGE_REPOSITORY = "vllm/vllm-openai"
# Image tags that name a channel rather than one build: "latest" and its cousins move under the same name.
# The program refuses them as imageTag; the pack flags any image tag with one as a word.
MOVING_IMAGE_TAGS = ("latest", "nightly", "main", "master", "dev", "develop", "edge", "head", "canary", "unstable", "snapshot", "stable")
