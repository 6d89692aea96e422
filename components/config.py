"""The typed stack config and the one place it is validated.

`load_stack_config` turns the raw values of a stack file into frozen dataclasses, or raises
ConfigError with one line that names the key, the bad value and what is allowed. It runs before
any resource is registered, so a bad stack never leaves a half-built graph behind.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components import facts, sizing
from components.coerce import real_number, whole_number
from components.errors import ConfigError
from components.models import ModelArch

MODES = ("autopilot", "standard")
# Queued provisioning is left out: its nodes only come for a ProvisioningRequest (Kueue), which a
# long-running Deployment never makes, so the server would wait forever.
CAPACITY = ("on-demand", "spot", "flex-start", "reservation")
EXPOSURE = ("internal", "external")
NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
# A cold 70B start downloads the weights and compiles for 10-30 minutes; less would kill it mid-compile.
MIN_STARTUP_MINUTES = 40


@dataclass(frozen=True)
class AuthorizedNetwork:
    name: str
    cidr: str


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    mode: str
    zones: tuple[str, ...]
    release_channel: str
    version: str | None
    deletion_protection: bool
    private_endpoint: bool
    authorized_networks: tuple[AuthorizedNetwork, ...]
    system_machine_type: str
    system_nodes: int
    extra_tpu_zones: Mapping[str, tuple[str, ...]]

    @property
    def autopilot(self) -> bool:
        return self.mode == "autopilot"


@dataclass(frozen=True)
class BucketConfig:
    location: str


@dataclass(frozen=True)
class ModelConfig:
    name: str
    hf_id: str
    generation: facts.Generation
    slice: facts.Slice
    zones: tuple[str, ...]
    image_tag: str
    max_model_len: int
    max_num_batched_tokens: int
    max_num_seqs: int
    gpu_memory_utilization: float
    min_replicas: int
    max_replicas: int
    metric: str
    target: float
    capacity: str
    reservation: str | None
    exposure: str
    source_ranges: tuple[str, ...]
    startup_minutes: int
    shutdown_timeout_seconds: int
    sizing: sizing.Sizing | None = None

    @property
    def machine(self) -> facts.MachineType:
        return self.generation.machine(self.slice.machine_type)

    @property
    def autoscaled(self) -> bool:
        """More than one replica goes through an HPA, even a fixed count (min = max): the HPA only
        exists once the first replica is ready, which is what keeps the compile cache single-writer."""
        return self.max_replicas > 1

    @property
    def tensor_parallel_size(self) -> int:
        return self.slice.chips

    @property
    def namespace(self) -> str:
        return f"vllm-{self.name}"

    @property
    def vllm_version(self) -> tuple[int, ...] | None:
        return facts.parse_vllm_version(self.image_tag)

    @property
    def metric_name(self) -> str:
        if self.metric == "kv_cache_usage":
            return facts.kv_cache_metric(self.vllm_version)
        return facts.AUTOSCALING_METRICS[self.metric]


@dataclass(frozen=True)
class StackConfig:
    project: str
    region: str
    stack: str
    cluster: ClusterConfig
    bucket: BucketConfig
    models: tuple[ModelConfig, ...] = field(default_factory=tuple)
    protect_data: bool = False

    def bucket_name(self, model: ModelConfig) -> str:
        """Globally unique (project ids are) and within Cloud Storage's 63 characters."""
        name = f"{self.project}-{self.stack}-{model.name}"
        if len(name) <= 63:
            return name
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        return f"{name[:54].rstrip('-')}-{digest}"


PROJECT_KEYS = ("cluster", "bucket", "models", "protectData", "hfToken", "apiKey")


def read_pulumi_config() -> dict[str, Any]:
    """The stack's raw config as plain values; secrets are read separately, as Outputs."""
    app, cloud = pulumi.Config(), pulumi.Config("gcp")
    # A misspelt key (protectdata: true) would otherwise be ignored and leave its default in force.
    for full in sorted({*pulumi.runtime.config.CONFIG.get(), *pulumi.runtime.config.get_config_env()}):
        namespace, _, key = full.partition(":")
        if namespace == app.name and key not in PROJECT_KEYS:
            shown = "[secret]" if pulumi.runtime.is_config_secret(full) else pulumi.runtime.get_config(full)
            raise ConfigError(full, shown, f"unknown key; allowed: {', '.join(f'{app.name}:{k}' for k in PROJECT_KEYS)}")
    raw: dict[str, Any] = {"project": cloud.get("project"), "region": cloud.get("region")}
    for key in ("cluster", "bucket", "models"):
        try:
            value = app.get_object(key)
        except pulumi.ConfigTypeError:
            raise ConfigError(key, app.get(key), "must be a YAML mapping or list (as in Pulumi.<stack>.yaml)") from None
        if value is not None:
            raw[key] = value
    if app.get("protectData") is not None:
        raw["protectData"] = app.get("protectData")
    return raw


@dataclass(frozen=True)
class Secrets:
    hf_token: pulumi.Output[str]
    api_key: pulumi.Output[str] | None


def read_secrets(config: StackConfig) -> Secrets:
    app = pulumi.Config()
    hf_token = app.get_secret("hfToken")
    if hf_token is None:
        raise ConfigError("hfToken", None, "is required: pulumi config set --secret hfToken <Hugging Face read token>")
    api_key = app.get_secret("apiKey")
    external = [m.name for m in config.models if m.exposure == "external"]
    if external and api_key is None:
        raise ConfigError(
            "apiKey", None, f"is required for exposure: external ({', '.join(external)}): pulumi config set --secret apiKey ..."
        )
    return Secrets(hf_token, api_key)


class _Reader:
    """Typed access to one mapping of raw config, naming every key by its full path."""

    def __init__(self, raw: Any, path: str, allowed: Sequence[str]) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(path, raw, "must be a mapping")
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise ConfigError(f"{path}.{unknown[0]}", raw[unknown[0]], f"unknown key; allowed: {', '.join(allowed)}")
        self.raw, self.path = raw, path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def text(self, name: str, default: str | None = None, choices: Sequence[str] = ()) -> str:
        value = self.raw.get(name, default)
        if value is None:
            raise ConfigError(self.key(name), None, "is required" + (f"; one of {', '.join(choices)}" if choices else ""))
        if not isinstance(value, str) or not value:
            raise ConfigError(self.key(name), value, "must be a non-empty string")
        if choices and value not in choices:
            raise ConfigError(self.key(name), value, f"allowed: {', '.join(choices)}")
        return value

    def opt_text(self, name: str) -> str | None:
        return self.text(name) if self.raw.get(name) is not None else None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(name, default)
        number = whole_number(value)
        if number is None or not low <= number <= high:
            raise ConfigError(self.key(name), value, f"must be a whole number from {low} to {high}")
        return number

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.raw.get(name, default)
        number = real_number(value)
        if number is None or not low <= number <= high:
            raise ConfigError(self.key(name), value, f"must be a number from {low} to {high}")
        return number

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw.get(name, default)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), value, "must be true or false")
        return value

    def items(self, name: str) -> list[Any]:
        value = self.raw.get(name, [])
        if not isinstance(value, list):
            raise ConfigError(self.key(name), value, "must be a list")
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        values = self.items(name)
        for index, item in enumerate(values):
            if not isinstance(item, str) or not item:
                raise ConfigError(f"{self.key(name)}[{index}]", item, "must be a non-empty string")
        return tuple(values)


def _cidr(key: str, value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise ConfigError(key, value, "must be a CIDR block such as 203.0.113.0/24") from None


CLUSTER_KEYS = (
    "name",
    "mode",
    "zones",
    "releaseChannel",
    "version",
    "deletionProtection",
    "privateEndpoint",
    "authorizedNetworks",
    "systemMachineType",
    "systemNodes",
    "extraTpuZones",
)


def _cluster(raw: Any, region: str) -> ClusterConfig:
    r = _Reader(
        raw,
        "cluster",
        CLUSTER_KEYS,
    )
    name = r.text("name", "llm-serving")
    if not re.fullmatch(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?", name):
        raise ConfigError(r.key("name"), name, "lowercase letters, digits and '-', 1-40 characters")
    zones = r.texts("zones")
    if not zones:
        raise ConfigError(r.key("zones"), [], f"list at least one zone of {region}")
    for index, zone in enumerate(zones):
        if not re.fullmatch(re.escape(region) + r"-[a-z]", zone):
            raise ConfigError(f"{r.key('zones')}[{index}]", zone, f"must be a zone of region {region} ({region}-a ...)")
    version = r.opt_text("version")
    if version is not None and facts.parse_gke_version(version) is None:
        raise ConfigError(r.key("version"), version, "a GKE version such as 1.33 or 1.33.5-gke.1080000")
    networks = []
    for index, item in enumerate(r.items("authorizedNetworks")):
        n = _Reader(item, f"{r.key('authorizedNetworks')}[{index}]", ("name", "cidr"))
        networks.append(AuthorizedNetwork(n.text("name"), _cidr(n.key("cidr"), n.text("cidr"))))
    extra = _Reader(r.raw.get("extraTpuZones"), r.key("extraTpuZones"), tuple(facts.GENERATIONS))
    return ClusterConfig(
        name=name,
        mode=r.text("mode", "standard", MODES),
        zones=zones,
        release_channel=r.text("releaseChannel", "REGULAR", facts.RELEASE_CHANNELS),
        version=version,
        deletion_protection=r.flag("deletionProtection", True),
        private_endpoint=r.flag("privateEndpoint", False),
        authorized_networks=tuple(networks),
        system_machine_type=r.text("systemMachineType", "e2-standard-4"),
        system_nodes=r.integer("systemNodes", 1, 1, 10),
        extra_tpu_zones={g: extra.texts(g) for g in facts.GENERATIONS},
    )


MODEL_KEYS = (
    "name",
    "hfId",
    "generation",
    "topology",
    "machineType",
    "zones",
    "imageTag",
    "maxModelLen",
    "maxNumBatchedTokens",
    "maxNumSeqs",
    "gpuMemoryUtilization",
    "minReplicas",
    "maxReplicas",
    "autoscalingMetric",
    "autoscalingTarget",
    "capacity",
    "reservation",
    "exposure",
    "sourceRanges",
    "startupMinutes",
    "shutdownTimeoutSeconds",
    "tensorParallelSize",
    "concurrency",
    "allowMultiHost",
    "architecture",
    "configJson",
)


def _model(raw: Any, index: int, cluster: ClusterConfig) -> ModelConfig:
    r = _Reader(raw, f"models[{index}]", MODEL_KEYS)
    name = r.text("name")
    if not NAME_RE.fullmatch(name):
        raise ConfigError(r.key("name"), name, "lowercase letters, digits and '-', 1-20 characters, starting with a letter")
    hf_id = r.text("hfId")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", hf_id):
        raise ConfigError(r.key("hfId"), hf_id, "a Hugging Face model id such as meta-llama/Llama-3.1-8B")
    generation = facts.GENERATIONS[r.text("generation", "v6e", tuple(facts.GENERATIONS))]

    zones = r.texts("zones") or cluster.zones
    offered = generation.zones + cluster.extra_tpu_zones.get(generation.name, ())
    for zone_index, zone in enumerate(zones):
        if zone not in cluster.zones:
            raise ConfigError(f"{r.key('zones')}[{zone_index}]", zone, f"must be one of cluster.zones: {', '.join(cluster.zones)}")
        if zone not in offered:
            key = r.key("zones") if r.raw.get("zones") else "cluster.zones"
            raise ConfigError(
                key,
                zone,
                f"{generation.name} is offered in {', '.join(offered)}"
                f" (add a zone under cluster.extraTpuZones.{generation.name} if Google lists it)",
            )
    image_tag = r.text("imageTag", facts.VLLM_DEFAULT_TAG)
    if image_tag == "latest":
        raise ConfigError(r.key("imageTag"), image_tag, "pin a release tag such as " + facts.VLLM_DEFAULT_TAG)
    max_model_len = r.integer("maxModelLen", sizing.DEFAULT_MAX_MODEL_LEN, *sizing.MAX_MODEL_LEN_RANGE)
    utilization = r.number("gpuMemoryUtilization", sizing.DEFAULT_MEMORY_UTILIZATION, *sizing.MEMORY_UTILIZATION_RANGE)
    arch = _architecture(r, hf_id)
    chosen = sizing.resolve(
        key=r.key("topology"),
        arch=arch,
        generation=generation,
        topology=r.text("topology", "auto"),
        machine_type=r.opt_text("machineType"),
        max_model_len=max_model_len,
        concurrency=r.integer("concurrency", sizing.DEFAULT_CONCURRENCY, *sizing.CONCURRENCY_RANGE),
        memory_utilization=utilization,
        allow_multi_host=r.flag("allowMultiHost", False),
    )
    if chosen.slice.multi_host:
        raise ConfigError(
            r.key("topology"),
            chosen.slice.topology,
            "multi-host slices need a multi-host (LeaderWorkerSet) deployment, which this stack does not build; "
            f"single-host: {', '.join(t for t in generation.topologies if generation.single_host_slice(t))}",
        )

    tensor_parallel = r.integer("tensorParallelSize", chosen.slice.chips, 1, 256)
    if tensor_parallel != chosen.slice.chips:
        # A pod owns every chip of its node; vLLM must shard over all of them or they sit idle.
        raise ConfigError(
            r.key("tensorParallelSize"), tensor_parallel, f"must equal the chips of {chosen.slice.topology} ({chosen.slice.chips})"
        )
    max_num_seqs = r.integer("maxNumSeqs", chosen.max_num_seqs, 1, 4096)
    batched = r.integer("maxNumBatchedTokens", max(chosen.max_num_batched_tokens, max_num_seqs), 64, 1_048_576)
    if batched < max_num_seqs:
        # vLLM refuses to start when a step cannot hold one token of every running sequence.
        raise ConfigError(r.key("maxNumBatchedTokens"), batched, f"must be at least maxNumSeqs ({max_num_seqs})")
    min_replicas = r.integer("minReplicas", 1, 1, 100)
    max_replicas = r.integer("maxReplicas", min_replicas, 1, 100)
    if max_replicas < min_replicas:
        raise ConfigError(r.key("maxReplicas"), max_replicas, f"must be at least minReplicas ({min_replicas})")
    capacity = r.text("capacity", "on-demand", CAPACITY)
    reservation = r.opt_text("reservation")
    if (capacity == "reservation") != (reservation is not None):
        raise ConfigError(r.key("reservation"), reservation, "set it exactly when capacity is 'reservation'")
    exposure = r.text("exposure", "internal", EXPOSURE)
    source_ranges = tuple(_cidr(f"{r.key('sourceRanges')}[{i}]", cidr) for i, cidr in enumerate(r.texts("sourceRanges")))
    if exposure == "external" and not source_ranges:
        raise ConfigError(r.key("sourceRanges"), [], "exposure: external needs the CIDR blocks allowed to reach it")
    if exposure == "external" and any(ipaddress.ip_network(c).prefixlen == 0 for c in source_ranges):
        raise ConfigError(r.key("sourceRanges"), list(source_ranges), "0.0.0.0/0 opens the model to the internet; list client ranges")
    version = facts.parse_vllm_version(image_tag)
    shutdown = r.integer("shutdownTimeoutSeconds", 60, 0, 600)
    if shutdown and version is not None and version < facts.VLLM_SHUTDOWN_TIMEOUT_SINCE:
        raise ConfigError(r.key("shutdownTimeoutSeconds"), shutdown, f"needs vLLM 0.18 or later (imageTag is {image_tag}); set 0")
    metric = r.text("autoscalingMetric", "num_requests_waiting", tuple(facts.AUTOSCALING_METRICS))
    target_default = 10.0 if metric == "num_requests_waiting" else 0.8
    target_high = 10_000.0 if metric == "num_requests_waiting" else 1.0
    return ModelConfig(
        name=name,
        hf_id=hf_id,
        generation=generation,
        slice=chosen.slice,
        zones=zones,
        image_tag=image_tag,
        max_model_len=max_model_len,
        max_num_batched_tokens=batched,
        max_num_seqs=max_num_seqs,
        gpu_memory_utilization=utilization,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        metric=metric,
        target=r.number("autoscalingTarget", target_default, 0.01, target_high),
        capacity=capacity,
        reservation=reservation,
        exposure=exposure,
        source_ranges=source_ranges,
        startup_minutes=r.integer("startupMinutes", 45, MIN_STARTUP_MINUTES, 120),
        shutdown_timeout_seconds=shutdown,
        sizing=chosen.sizing,
    )


def _architecture(r: _Reader, hf_id: str) -> ModelArch | None:
    """The model's facts for sizing: stated in config, read from a config.json, or the catalog."""
    from components import models

    if r.raw.get("architecture") is not None:
        return models.from_mapping(r.key("architecture"), hf_id, r.raw["architecture"])
    if r.raw.get("configJson") is not None:
        return models.from_config_json_path(r.key("configJson"), hf_id, r.text("configJson"))
    return models.lookup(hf_id)


def load_stack_config(raw: Mapping[str, Any], stack: str) -> StackConfig:
    top = _Reader(raw, "", ("project", "region", "cluster", "bucket", "models", "protectData"))
    project = top.raw.get("project")
    if not isinstance(project, str) or not PROJECT_RE.fullmatch(project):
        raise ConfigError("gcp:project", project, "a project id, 6-30 of a-z 0-9 '-' (pulumi config set gcp:project ID)")
    region = top.raw.get("region")
    if not isinstance(region, str) or not REGION_RE.fullmatch(region):
        raise ConfigError("gcp:region", region, "a Compute Engine region such as us-east5 (pulumi config set gcp:region REGION)")
    cluster = _cluster(top.raw.get("cluster"), region)
    raw_models = top.items("models")
    if not raw_models:
        raise ConfigError("models", raw_models, "list at least one model to serve")
    models = tuple(_model(item, index, cluster) for index, item in enumerate(raw_models))
    seen: dict[str, int] = {}
    for index, model in enumerate(models):
        if model.name in seen:
            raise ConfigError(f"models[{index}].name", model.name, f"already used by models[{seen[model.name]}]; names must be unique")
        seen[model.name] = index
    if cluster.version is not None:
        for index, model in enumerate(models):
            minimum = model.generation.min_gke_autopilot if cluster.autopilot else model.generation.min_gke_standard
            if not facts.gke_version_at_least(cluster.version, minimum):
                raise ConfigError(
                    "cluster.version",
                    cluster.version,
                    f"models[{index}] uses {model.generation.name}, which needs GKE {minimum} or later on {cluster.mode}",
                )
    protect = top.flag("protectData", False)
    bucket = _Reader(top.raw.get("bucket"), "bucket", ("location",))
    return StackConfig(
        project=project,
        region=region,
        stack=stack,
        cluster=cluster,
        bucket=BucketConfig(location=bucket.text("location", region.upper())),
        models=models,
        protect_data=protect,
    )
