"""The typed stack config and the one place it is validated.

`load_stack_config` turns the raw values of a stack file into frozen dataclasses, or raises
ConfigError with one line that names the key, the bad value and what is allowed. It runs before
any resource is registered, so a bad stack never leaves a half-built graph behind.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from components import facts, sizing
from components.coerce import real_number, whole_number
from components.errors import HIDDEN, ConfigError, secret_shape
from components.models import ModelArch

MODES = ("autopilot", "standard")
# Queued provisioning is left out: its nodes only come for a ProvisioningRequest (Kueue), which a
# long-running Deployment never makes, so the server would wait forever.
CAPACITY = ("on-demand", "spot", "flex-start", "reservation")
EXPOSURE = ("internal", "external")
NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
# Free-text fields, each against the grammar of the system that reads it.
# Docker's tag grammar; the tag must also be a release version (below), so no moving tag.
DOCKER_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
MOVING_TAGS = ("latest", "nightly", "main", "dev", "stable", "edge")
# A Compute Engine resource name (RFC 1035 label): also a valid label value, as GKE uses it.
GCE_NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# e2-standard-4, n2-highmem-8, c3-standard-4-lssd, n2-custom-4-16384, e2-micro ...
MACHINE_TYPE_RE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+){1,4}")
# Cloud Storage locations: a region, a multi-region or a predefined dual-region (case-insensitive).
GCS_MULTI_REGIONS = ("ASIA", "EU", "US", "ASIA1", "EUR4", "EUR5", "EUR7", "EUR8", "NAM4")
# A display name: letters, digits, space and . _ - ( ), 1-63 characters, no leading or trailing space.
DISPLAY_NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9 ._()-]{0,61}[A-Za-z0-9._()-])?")
# Hugging Face repo ids (huggingface_hub.utils.validate_repo_id) limited to ASCII, so a homoglyph
# (a Cyrillic letter for a Latin one) cannot name another repo: org/name, each part 1-96 of A-Z a-z 0-9
# . _ -, starting and ending with a letter, digit or '_', and no '--' or '..'.
HF_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
HF_ID_RE = re.compile(rf"{HF_PART}/{HF_PART}")
# Public addresses one list of ranges may open without `allowBroadRanges: true`: a /16 (IPv4),
# a /48 (IPv6). A list whose union covers the internet is refused even then.
BROAD_PUBLIC_PREFIX = {4: 16, 6: 48}
# Not reachable from the internet (IANA special-purpose): private, shared, loopback, link-local,
# documentation, benchmarking, multicast and reserved. Disjoint, so overlaps add up.
NON_PUBLIC_V4 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/3",
    )
)
NON_PUBLIC_V6 = (
    *ipaddress.ip_network("::/0").address_exclude(ipaddress.ip_network("2000::/3")),  # type: ignore[arg-type]
    ipaddress.ip_network("2001::/23"),
    ipaddress.ip_network("2001:db8::/32"),
)
# Without `authorizedNetworks`, the control plane answers only the private ranges (the VPC and
# networks peered or connected to it), never the internet.
DEFAULT_AUTHORIZED_NETWORKS = (("private-10", "10.0.0.0/8"), ("private-172", "172.16.0.0/12"), ("private-192", "192.168.0.0/16"))
SECRET_KEYS = ("hfToken", "apiKey")
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
    kv_cache_dtype: str = "auto"  # vLLM --kv-cache-dtype; "auto" is bfloat16 on TPU

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
        """JAX devices, not chips: a tpu7x chip holds two (facts.Generation.devices_per_chip)."""
        return self.slice.chips * self.generation.devices_per_chip

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
    # An unknown key's value is never shown: `hftoken: hf_...` is a secret under a wrong name.
    for full in sorted({*pulumi.runtime.config.CONFIG.get(), *pulumi.runtime.config.get_config_env()}):
        namespace, _, key = full.partition(":")
        secret = pulumi.runtime.is_config_secret(full)
        if namespace == app.name and key in SECRET_KEYS and not secret:
            raise ConfigError(
                key, HIDDEN, f"is in plain text in the stack file: pulumi config set --secret {key} <value> (and rotate the value)"
            )
        if namespace == app.name and key not in PROJECT_KEYS:
            allowed = ", ".join(f"{app.name}:{k}" for k in PROJECT_KEYS)
            raise ConfigError(full, HIDDEN, f"unknown key{_did_you_mean(key, PROJECT_KEYS)}; allowed: {allowed}")
        if namespace == "gcp" and key not in gcp_provider_keys():
            raise ConfigError(
                full, HIDDEN, f"not a gcp provider key{_did_you_mean(key, gcp_provider_keys())}; this stack reads gcp:project, gcp:region"
            )
        if not secret:
            _refuse_secret_shapes(key if namespace == app.name else full, _parsed(pulumi.runtime.get_config(full)))
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


@functools.cache
def gcp_provider_keys() -> frozenset[str]:
    """The keys the gcp provider reads (project, region, zone, credentials, ...*CustomEndpoint),
    from its generated config module, so `gcp:regoin` is refused like any unknown key."""
    spec = importlib.util.find_spec("pulumi_gcp")
    keys = {"project", "region", "zone"}
    if spec is not None and spec.origin is not None:
        source = Path(spec.origin).parent / "config" / "vars.py"
        if source.exists():
            keys |= set(re.findall(r"__config__\.get\w*\('(\w+)'\)", source.read_text(encoding="utf-8")))
    return frozenset(keys)


def _parsed(value: Any) -> Any:
    """A config string as the JSON it may hold (objects reach the program as JSON), else as is."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except (ValueError, RecursionError):
        return value


def _did_you_mean(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _refuse_secret_shapes(key: str, value: Any) -> None:
    """A token pasted into any non-secret value (or key) is refused, and shown only masked."""
    pending: list[tuple[str, Any]] = [(key, value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str) and (what := secret_shape(item)):
            raise ConfigError(
                path, item, f"looks like {what}; secrets go only in hfToken or apiKey (pulumi config set --secret); rotate this one"
            )
        if isinstance(item, Mapping):
            for name, child in item.items():
                child_path = f"{path}.{name}" if path else str(name)
                if isinstance(name, str) and (what := secret_shape(name)):
                    raise ConfigError(child_path, HIDDEN, f"a key that looks like {what}; secrets go only in hfToken or apiKey")
                pending.append((child_path, child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{index}]", child) for index, child in enumerate(item))


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
        unknown = sorted((set(raw) - set(allowed)), key=str)
        if unknown:
            name = unknown[0]
            hint = _did_you_mean(name, allowed) if isinstance(name, str) else ""
            raise ConfigError(f"{path}.{name}", HIDDEN, f"unknown key{hint}; allowed: {', '.join(allowed)}")
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


def _ranges(key: str, cidrs: Sequence[str], allow_broad: bool, allow_key: str) -> None:
    """Refuses a list of ranges whose union, with the non-public ranges, is every address (it
    opens to the internet: 0.0.0.0/0, or 0.0.0.0/1 + 128.0.0.0/1), and, unless `allow_key` is
    true, one whose public addresses add up to more than a /16 (IPv4) or a /48 (IPv6)."""
    for version, everything, non_public in ((4, "0.0.0.0/0", NON_PUBLIC_V4), (6, "::/0", NON_PUBLIC_V6)):
        networks: list[Any] = [n for n in (ipaddress.ip_network(c) for c in cidrs) if n.version == version]
        if not networks:
            continue
        union: list[Any] = list(ipaddress.collapse_addresses(networks))
        if [str(n) for n in ipaddress.collapse_addresses([*union, *non_public])] == [everything]:
            raise ConfigError(key, list(cidrs), f"together these ranges cover the whole internet ({everything}); list the client ranges")
        overlap = sum(min(a.num_addresses, b.num_addresses) for a in union for b in non_public if a.subnet_of(b) or b.subnet_of(a))
        public = sum(n.num_addresses for n in union) - overlap
        bound = BROAD_PUBLIC_PREFIX[version]
        if public > 2 ** ((32 if version == 4 else 128) - bound) and not allow_broad:
            raise ConfigError(
                key,
                list(cidrs),
                f"opens {public} public IPv{version} addresses, more than a /{bound}; narrow the ranges or set {allow_key}: true",
            )


def _no_duplicates(key: str, values: Sequence[str]) -> None:
    for index, value in enumerate(values):
        if value in values[:index]:
            raise ConfigError(f"{key}[{index}]", value, f"listed twice (first at {key}[{values.index(value)}])")


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
    "allowBroadRanges",
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
    _no_duplicates(r.key("zones"), zones)
    version = r.opt_text("version")
    if version is not None and facts.parse_gke_version(version) is None:
        raise ConfigError(r.key("version"), version, "a GKE version such as 1.33 or 1.33.5-gke.1080000")
    networks = []
    raw_networks = r.items("authorizedNetworks")
    if "authorizedNetworks" in r.raw and not raw_networks:
        raise ConfigError(r.key("authorizedNetworks"), [], "list at least one range, or leave the key out for the private ranges only")
    for index, item in enumerate(raw_networks or [{"name": n, "cidr": c} for n, c in DEFAULT_AUTHORIZED_NETWORKS]):
        n = _Reader(item, f"{r.key('authorizedNetworks')}[{index}]", ("name", "cidr"))
        display_name = n.text("name")
        if not DISPLAY_NAME_RE.fullmatch(display_name):
            raise ConfigError(n.key("name"), display_name, "a display name: 1-63 of letters, digits, space and . _ - ( ), no leading space")
        networks.append(AuthorizedNetwork(display_name, _cidr(n.key("cidr"), n.text("cidr"))))
    _ranges(r.key("authorizedNetworks"), [n.cidr for n in networks], r.flag("allowBroadRanges", False), r.key("allowBroadRanges"))
    system_machine_type = r.text("systemMachineType", "e2-standard-4")
    if len(system_machine_type) > 63 or not MACHINE_TYPE_RE.fullmatch(system_machine_type):
        raise ConfigError(r.key("systemMachineType"), system_machine_type, "a Compute Engine machine type such as e2-standard-4")
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
        system_machine_type=system_machine_type,
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
    "allowBroadRanges",
    "kvCacheDtype",
)


def _model(raw: Any, index: int, cluster: ClusterConfig) -> ModelConfig:
    r = _Reader(raw, f"models[{index}]", MODEL_KEYS)
    name = r.text("name")
    if not NAME_RE.fullmatch(name):
        raise ConfigError(r.key("name"), name, "lowercase letters, digits and '-', 1-20 characters, starting with a letter")
    hf_id = r.text("hfId")
    if not HF_ID_RE.fullmatch(hf_id) or "--" in hf_id or ".." in hf_id:
        raise ConfigError(
            r.key("hfId"),
            hf_id,
            "a Hugging Face model id such as meta-llama/Llama-3.1-8B: org/name of ASCII letters, digits, '-', '_', '.', no '--' or '..'",
        )
    generation = facts.GENERATIONS[r.text("generation", "v6e", tuple(facts.GENERATIONS))]

    zones = r.texts("zones") or cluster.zones
    _no_duplicates(r.key("zones"), zones)
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
    image_tag = _image_tag(r.key("imageTag"), r.text("imageTag", facts.VLLM_DEFAULT_TAG))
    max_model_len = r.integer("maxModelLen", sizing.DEFAULT_MAX_MODEL_LEN, *sizing.MAX_MODEL_LEN_RANGE)
    utilization = r.number("gpuMemoryUtilization", sizing.DEFAULT_MEMORY_UTILIZATION, *sizing.MEMORY_UTILIZATION_RANGE)
    arch = _architecture(r, hf_id)
    kv_cache_dtype = r.text("kvCacheDtype", sizing.DEFAULT_KV_CACHE_DTYPE, sizing.KV_CACHE_DTYPES)
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
        kv_cache_dtype=kv_cache_dtype,
    )
    if chosen.slice.multi_host:
        raise ConfigError(
            r.key("topology"),
            chosen.slice.topology,
            "multi-host slices need a multi-host (LeaderWorkerSet) deployment, which this stack does not build; "
            f"single-host: {', '.join(t for t in generation.topologies if generation.single_host_slice(t))}",
        )

    devices = chosen.slice.chips * generation.devices_per_chip
    tensor_parallel = r.integer("tensorParallelSize", devices, 1, 512)
    if tensor_parallel != devices:
        # A pod owns every chip of its node; vLLM must shard over all of them or they sit idle.
        raise ConfigError(
            r.key("tensorParallelSize"),
            tensor_parallel,
            f"must equal the chips of {chosen.slice.topology} ({devices}"
            + (f" devices: {chosen.slice.chips} chips x {generation.devices_per_chip}" if devices != chosen.slice.chips else "")
            + ")",
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
    if reservation is not None and not GCE_NAME_RE.fullmatch(reservation):
        raise ConfigError(r.key("reservation"), reservation, "a reservation name: 1-63 of a-z 0-9 '-', starting with a letter")
    if (capacity == "reservation") != (reservation is not None):
        raise ConfigError(r.key("reservation"), reservation, "set it exactly when capacity is 'reservation'")
    exposure = r.text("exposure", "internal", EXPOSURE)
    source_ranges = tuple(_cidr(f"{r.key('sourceRanges')}[{i}]", cidr) for i, cidr in enumerate(r.texts("sourceRanges")))
    if exposure == "external" and not source_ranges:
        raise ConfigError(r.key("sourceRanges"), [], "exposure: external needs the CIDR blocks allowed to reach it")
    _no_duplicates(r.key("sourceRanges"), source_ranges)
    _ranges(r.key("sourceRanges"), source_ranges, r.flag("allowBroadRanges", False), r.key("allowBroadRanges"))
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
        kv_cache_dtype=kv_cache_dtype,
    )


def _image_tag(key: str, value: str) -> str:
    """A release tag (v0.22.0, 0.22.0, v0.22.0rc1), optionally pinned to a digest: v0.22.0@sha256:<64 hex>."""
    tag, at, digest = value.partition("@")
    pin = f"a release tag such as {facts.VLLM_DEFAULT_TAG}, optionally with its digest ({facts.VLLM_DEFAULT_TAG}@sha256:<64 hex>)"
    if not DOCKER_TAG_RE.fullmatch(tag) or (at and not DIGEST_RE.fullmatch(digest)):
        raise ConfigError(key, value, f"not a Docker tag; {pin}")
    if tag.lower() in MOVING_TAGS or facts.parse_vllm_version(tag) is None:
        raise ConfigError(key, value, f"not a release version (a moving tag changes under a running stack); pin {pin}")
    return value


def _architecture(r: _Reader, hf_id: str) -> ModelArch | None:
    """The model's facts for sizing: stated in config, read from a config.json, or the catalog."""
    from components import models

    if r.raw.get("architecture") is not None:
        return models.from_mapping(r.key("architecture"), hf_id, r.raw["architecture"])
    if r.raw.get("configJson") is not None:
        return models.from_config_json_path(r.key("configJson"), hf_id, r.text("configJson"))
    return models.lookup(hf_id)


def load_stack_config(raw: Mapping[str, Any], stack: str) -> StackConfig:
    _refuse_secret_shapes("", raw)
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
    location = bucket.text("location", region.upper())
    if location.upper() not in GCS_MULTI_REGIONS and not REGION_RE.fullmatch(location.lower()):
        raise ConfigError(
            bucket.key("location"), location, f"a Cloud Storage location: a region such as {region}, or {', '.join(GCS_MULTI_REGIONS)}"
        )
    return StackConfig(
        project=project,
        region=region,
        stack=stack,
        cluster=cluster,
        bucket=BucketConfig(location=location.upper()),
        models=models,
        protect_data=protect,
    )
