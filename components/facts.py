"""The one copy of the facts this project depends on: TPU generations and slices, GKE
versions, the vLLM image and its metrics, Cloud Storage FUSE options.

Sources: ../shared/reference/tpu-facts.md and vllm-gke-facts.md (Google's TPU and GKE docs,
the vLLM repository). Every other module, the policy pack and the planners read these tables;
none of them restates a number. Values the docs mark as unconfirmed are data that config can
extend (zones) rather than a closed list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

GIB = 1024**3
POD_SHARE_OF_NODE = 0.8


@dataclass(frozen=True)
class MachineType:
    """A TPU VM shape: its chips and its host vCPUs and memory (Compute Engine machine docs)."""

    name: str
    chips: int
    vcpus: int
    memory_gib: int

    @property
    def pod_cpu(self) -> int:
        """What the one serving pod on this VM requests: the rest stays for the kubelet, system
        daemons and the Cloud Storage FUSE sidecar."""
        return int(self.vcpus * POD_SHARE_OF_NODE)

    @property
    def pod_memory_gib(self) -> int:
        return int(self.memory_gib * POD_SHARE_OF_NODE)


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
            # Host vCPUs and memory of tpu7x VMs are unconfirmed (not in the sourced facts): a conservative guess.
            machine_types=(MachineType("tpu7x-standard-4t", 4, 224, 960),),
            slices=(
                Slice("2x2x1", 4, 1, "tpu7x-standard-4t"),
                Slice("2x2x2", 8, 2, "tpu7x-standard-4t"),
                Slice("2x2x4", 16, 4, "tpu7x-standard-4t"),
            ),
            zones=("us-central1-c",),
            min_gke_standard="1.34.0-gke.2201000",
            min_gke_autopilot="1.34.1-gke.3084001",
        ),
    }
)

ACCELERATOR_TO_GENERATION: Mapping[str, str] = MappingProxyType({g.accelerator: g.name for g in GENERATIONS.values()})


def machine_type_info(name: str) -> tuple[Generation, MachineType] | None:
    for generation in GENERATIONS.values():
        for machine in generation.machine_types:
            if machine.name == name:
                return generation, machine
    return None


# --- GKE scheduling ---------------------------------------------------------------------------
TPU_RESOURCE = "google.com/tpu"
ACCELERATOR_LABEL = "cloud.google.com/gke-tpu-accelerator"
TOPOLOGY_LABEL = "cloud.google.com/gke-tpu-topology"
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")


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
AUTOSCALING_METRICS: Mapping[str, str] = MappingProxyType(
    {"num_requests_waiting": METRIC_REQUESTS_WAITING, "kv_cache_usage": METRIC_KV_CACHE}
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


# --- Compile cache, weights --------------------------------------------------------------------
XLA_CACHE_ENV = "VLLM_XLA_CACHE_PATH"
GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
GCSFUSE_CACHE_VOLUME = "gke-gcsfuse-cache"
GCSFUSE_MOUNT_OPTIONS = (
    "implicit-dirs",
    "metadata-cache:ttl-secs:-1",
    "metadata-cache:stat-cache-max-size-mb:-1",
    "metadata-cache:type-cache-max-size-mb:-1",
    "file-cache:max-size-mb:-1",
    "file-cache:cache-file-for-range-read:true",
    "file-cache:enable-parallel-downloads:true",
    "file-cache:parallel-downloads-per-file:100",
    "file-cache:max-parallel-downloads:-1",
    "file-cache:download-chunk-size-mb:10",
)

# Managed Prometheus collectors scrape from gmp-system on Standard and gke-gmp-system on Autopilot.
GMP_COLLECTOR_NAMESPACES = ("gmp-system", "gke-gmp-system")

# --- Autoscaling adapter ------------------------------------------------------------------------
METRICS_ADAPTER_IMAGE = "gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.14.2-gke.0"
METRICS_ADAPTER_NAMESPACE = "custom-metrics"
METRICS_ADAPTER_SERVICE_ACCOUNT = "custom-metrics-stackdriver-adapter"

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
