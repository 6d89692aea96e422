"""The stack config, declared once: its schema, its validation and its typed, frozen values.

Each config key is one field below: its camelCase alias (the key), its rule (bounds, choices,
grammar), its default and its description. From those come the unknown-key checks, the README's
config table (`python -m components.config --readme`) and the values the program reads. Rules that
span keys (replicas, ranges, zones of the region) and those that need sizing or facts (topology,
fit, HBM, GKE minimums) are the `_resolve` validators of each class.

`load_stack_config` turns the raw values of a stack file into these values, or raises ConfigError
with one line that names the key, the bad value and what is allowed. It runs before any resource
is registered, so a bad stack never leaves a half-built graph behind.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import ipaddress
import json
import re
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass as std_dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

import pulumi
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import ArgsKwargs, PydanticUndefined, core_schema

from components import facts, sizing
from components import sizing as fit  # in ModelConfig's annotations, where the field `sizing` hides the module
from components.coerce import real_number, whole_number
from components.errors import HIDDEN, ConfigError, secret_shape
from components.models import ModelArch

MODES = ("autopilot", "standard")
# Queued provisioning is left out: its nodes only come for a ProvisioningRequest (Kueue), which a
# long-running Deployment never makes, so the server would wait forever.
CAPACITY = ("on-demand", "spot", "flex-start", "reservation")
EXPOSURE = ("internal", "external")
# autoscalingMetric's values and the vLLM gauge each scales on.
AUTOSCALING_METRICS: Mapping[str, str] = MappingProxyType(
    {"num_requests_waiting": facts.METRIC_REQUESTS_WAITING, "kv_cache_usage": facts.METRIC_KV_CACHE}
)
NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
# Free-text fields, each against the grammar of the system that reads it.
# Docker's tag grammar; the tag must also be a release version (below), so no moving tag.
DOCKER_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
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
# A cold 70B start downloads the weights and compiles for 10-30 minutes; less would kill it mid-compile.
MIN_STARTUP_MINUTES = 40
# What the secrets are for (they are read as Outputs, never as values: see read_secrets).
SECRET_DESCRIPTIONS = {
    "hfToken": "the Hugging Face read token (`pulumi config set --secret hfToken`)",
    "apiKey": "the key clients send; required when a model has `exposure: external`",
}
SECRET_KEYS = tuple(SECRET_DESCRIPTIONS)


# --- rules: what one key accepts, each with the one-line text a refusal shows -----------------------
class _Refused(ValueError):
    """A value a rule or validator refuses. The key is the field's own unless `suffix` names a part
    of it (`[2]`) or `key` names another; the value shown is the field's input unless `value` is given."""

    def __init__(self, allowed: str, *, suffix: str = "", key: str | None = None, value: Any = PydanticUndefined) -> None:
        super().__init__(allowed)
        self.allowed, self.suffix, self.key, self.value = allowed, suffix, key, value

    @classmethod
    def of(cls, error: ConfigError) -> _Refused:
        return cls(error.allowed, key=error.key, value=error.value)


class Rule:
    """A field's rule: turns the raw value into the typed one or raises _Refused. `shown` is what
    the README's table says is allowed."""

    shown = ""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self.check)

    def check(self, value: Any) -> Any:
        raise NotImplementedError


class Whole(Rule):
    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.shown = f"whole number, {low}-{high}"

    def check(self, value: Any) -> int:
        number = whole_number(value)
        if number is None or not self.low <= number <= self.high:
            raise _Refused(f"must be a whole number from {self.low} to {self.high}")
        return number


class Real(Rule):
    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        self.shown = f"number, {low:g}-{high:g}"

    def check(self, value: Any) -> float:
        number = real_number(value)
        if number is None or not self.low <= number <= self.high:
            raise _Refused(f"must be a number from {self.low} to {self.high}")
        return number


class Flag(Rule):
    shown = "true, false"

    def check(self, value: Any) -> bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise _Refused("must be true or false")
        return value


class Text(Rule):
    """A non-empty string that passes `test` (a regex to match whole, or a function), else `allowed`.
    `optional`: null is no value. `plain`: every refusal says `allowed`."""

    def __init__(
        self,
        test: str | re.Pattern[str] | Callable[[str], bool] | None = None,
        allowed: str = "",
        *,
        optional: bool = False,
        plain: bool = False,
        shown: str = "",
    ) -> None:
        pattern = re.compile(test) if isinstance(test, str) else test
        self.test: Callable[[str], bool] | None = (
            (lambda v: pattern.fullmatch(v) is not None) if isinstance(pattern, re.Pattern) else pattern
        )
        self.allowed, self.optional, self.plain = allowed, optional, plain
        self.shown = shown or allowed or "text"

    def check(self, value: Any) -> str | None:
        if value is None and self.optional:
            return None
        if value is None:
            raise _Refused(self.allowed if self.plain else "is required")
        if not isinstance(value, str) or not value:
            raise _Refused(self.allowed if self.plain else "must be a non-empty string")
        if self.test is not None and not self.test(value):
            raise _Refused(self.allowed)
        return value


class Choice(Rule):
    def __init__(self, choices: Iterable[str]) -> None:
        self.choices = tuple(choices)
        self.shown = ", ".join(self.choices)

    def check(self, value: Any) -> str:
        if value is None:
            raise _Refused(f"is required; one of {', '.join(self.choices)}")
        if not isinstance(value, str) or not value:
            raise _Refused("must be a non-empty string")
        if value not in self.choices:
            raise _Refused(f"allowed: {', '.join(self.choices)}")
        return value


class Texts(Rule):
    """A list of non-empty strings; with `cidr`, each a CIDR block (normalized)."""

    def __init__(self, *, cidr: bool = False) -> None:
        self.cidr = cidr
        self.shown = "list of CIDR blocks" if cidr else "list of strings"

    def check(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple):
            raise _Refused("must be a list")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise _Refused("must be a non-empty string", suffix=f"[{index}]", value=item)
        if not self.cidr:
            return tuple(value)
        cidrs = []
        for index, item in enumerate(value):
            try:
                cidrs.append(str(ipaddress.ip_network(item, strict=True)))
            except ValueError:
                raise _Refused("must be a CIDR block such as 203.0.113.0/24", suffix=f"[{index}]", value=item) from None
        return tuple(cidrs)


class Cidr(Rule):
    shown = "a CIDR block"

    def check(self, value: Any) -> str:
        text = str(Text().check(value))
        try:
            return str(ipaddress.ip_network(text, strict=True))
        except ValueError:
            raise _Refused("must be a CIDR block such as 203.0.113.0/24") from None


class ImageTag(Rule):
    """A release tag (v0.22.0, 0.22.0, v0.22.0rc1), optionally pinned to a digest: v0.22.0@sha256:<64 hex>."""

    shown = "a release tag, optionally `@sha256:<64 hex>`; no moving tag"

    def check(self, value: Any) -> str:
        text = Text().check(value)
        assert text is not None
        tag, at, digest = text.partition("@")
        pin = f"a release tag such as {facts.VLLM_DEFAULT_TAG}, optionally with its digest ({facts.VLLM_DEFAULT_TAG}@sha256:<64 hex>)"
        if not DOCKER_TAG_RE.fullmatch(tag) or (at and not DIGEST_RE.fullmatch(digest)):
            raise _Refused(f"not a Docker tag; {pin}")
        if tag.lower() in facts.MOVING_IMAGE_TAGS or facts.parse_vllm_version(tag) is None:
            raise _Refused(f"not a release version (a moving tag changes under a running stack); pin {pin}")
        return text


class _Given(Rule):
    """Taken as given: a value the program derives (a slice, a Generation object)."""

    def check(self, value: Any) -> Any:
        return value


GIVEN = _Given()
# Marks a field the program fills in (never a key of the stack file).
DERIVED = "derived"


def key(description: str, default: Any = PydanticUndefined, *, shown: str | None = None, name: str | None = None, **kwargs: Any) -> Any:
    """A config key's field: its description (the README's "meaning") and default; `shown` is the
    default as the README prints it, when it is not the value itself (derived from other keys);
    `name` is the key as the user writes it, when it is not the alias (gcp:project)."""
    extra: dict[str, Any] = {k: v for k, v in (("shown_default", shown), ("key", name)) if v is not None}
    return Field(default, description=description, json_schema_extra=extra or None, **kwargs)


def derived(description: str) -> Any:
    """A value the program computes (not a key): refused in the stack file like any unknown key."""
    return Field(None, description=description, json_schema_extra={DERIVED: True})


# The values are frozen, keyword-only pydantic dataclasses (so dataclasses.replace still works);
# the stack file is read by alias only, so `hf_id:` is an unknown key, not another spelling of hfId.
SCHEMA = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_alias=True, validate_by_name=True, arbitrary_types_allowed=True)


@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class _Schema:
    @model_validator(mode="before")
    @classmethod
    def _a_mapping_of_known_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is None or isinstance(data, ArgsKwargs):
            return data  # built by the program, not read from a stack file
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise _Refused("must be a mapping")
        allowed = input_keys(cls)
        unknown = sorted(set(data) - set(allowed), key=str)
        if unknown:
            name = unknown[0]
            hint = _did_you_mean(name, allowed) if isinstance(name, str) else ""
            path = info.context["path"]
            raise _Refused(f"unknown key{hint}; allowed: {', '.join(allowed)}", key=f"{path}.{name}" if path else str(name), value=HIDDEN)
        return data


def _fields(cls: type) -> dict[str, FieldInfo]:
    return dict(cls.__pydantic_fields__)  # type: ignore[attr-defined]


def _extra(info: FieldInfo) -> dict[str, Any]:
    return info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}


def input_keys(cls: type) -> tuple[str, ...]:
    """The keys a stack file may set in one mapping, in declaration order."""
    return tuple(str(f.alias) for f in _fields(cls).values() if not _extra(f).get(DERIVED))


def _path(info: ValidationInfo) -> str:
    return str((info.context or {}).get("path", ""))


def _sub(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


S = TypeVar("S")


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def _adapter(cls: type[S]) -> TypeAdapter[S]:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def _validate(cls: type[S], raw: Any, path: str, **context: Any) -> S:
    """One mapping of the stack file as `cls`, or the ConfigError of its first refusal."""
    try:
        return _adapter(cls).validate_python(raw, by_alias=True, by_name=False, context={"path": path, **context})
    except ValidationError as error:
        raise _config_error(cls, path, error.errors()[0]) from None


def _nested(cls: type[S], raw: Any, path: str, **context: Any) -> S:
    """`_validate` inside a field's validator: the refusal is the field's (first by declaration order)."""
    try:
        return _validate(cls, raw, path, **context)
    except ConfigError as error:
        raise _Refused.of(error) from None


def _config_error(cls: type, path: str, error: Any) -> ConfigError:
    """The first refusal pydantic collected, as the one-line ConfigError naming the full key."""
    names = {str(f.alias): _extra(f)["key"] for f in _fields(cls).values() if "key" in _extra(f)}
    loc = error["loc"]
    key = path
    if loc and loc[0] in names:
        key, loc = names[loc[0]], loc[1:]
    for part in loc:
        key = f"{key}[{part}]" if isinstance(part, int) else _sub(key, str(part))
    refused = error.get("ctx", {}).get("error")
    if isinstance(refused, _Refused):
        shown = error.get("input") if refused.value is PydanticUndefined else refused.value
        return ConfigError(refused.key or key + refused.suffix, shown, refused.allowed)
    if error["type"] == "missing":
        return ConfigError(key, None, "is required")
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return ConfigError(key, HIDDEN, "unknown key")
    if error["type"].startswith(("dataclass", "model", "dict")):
        return ConfigError(key, error.get("input"), "must be a mapping")
    return ConfigError(key, error.get("input"), str(error.get("msg", "invalid")))


# --- the config: one field per key -----------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class AuthorizedNetwork(_Schema):
    name: Annotated[
        str,
        Text(DISPLAY_NAME_RE, "a display name: 1-63 of letters, digits, space and . _ - ( ), no leading space"),
    ] = key("the range's display name")
    cidr: Annotated[str, Cidr()] = key("the range (CIDR block)")


@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class ClusterConfig(_Schema):
    name: Annotated[str, Text(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?", "lowercase letters, digits and '-', 1-40 characters")] = key(
        "the GKE cluster's name", "llm-serving"
    )
    mode: Annotated[str, Choice(MODES)] = key("GKE mode", "standard")
    zones: Annotated[tuple[str, ...], Texts()] = key("zones of gcp:region for the nodes (at least one)", (), shown="required")
    release_channel: Annotated[str, Choice(facts.RELEASE_CHANNELS)] = key("GKE release channel", "REGULAR")
    version: Annotated[
        str | None,
        Text(lambda v: facts.parse_gke_version(v) is not None, "a GKE version such as 1.33 or 1.33.5-gke.1080000", optional=True),
    ] = key(
        "a floor sent as `min_master_version`, checked against each generation's minimum; unset: the channel's"
        " current version (a minor that leaves the channel fails creation, so the shipped stacks set none)",
        None,
    )
    deletion_protection: Annotated[bool, Flag()] = key("refuse `pulumi destroy` of the cluster", True)
    private_endpoint: Annotated[bool, Flag()] = key("the control plane only on its private address", False)
    authorized_networks: tuple[AuthorizedNetwork, ...] = key(
        "who reaches the control plane: `[{name, cidr}]`; unset: the private ranges only",
        tuple(AuthorizedNetwork(name=n, cidr=c) for n, c in DEFAULT_AUTHORIZED_NETWORKS),
        shown="10/8, 172.16/12, 192.168/16",
    )
    system_machine_type: Annotated[
        str,
        Text(lambda v: len(v) <= 63 and MACHINE_TYPE_RE.fullmatch(v) is not None, "a Compute Engine machine type such as e2-standard-4"),
    ] = key("machine type of the system (non-TPU) nodes", "e2-standard-4")
    system_nodes: Annotated[int, Whole(1, 10)] = key("system nodes per zone", 1)
    extra_tpu_zones: Mapping[str, tuple[str, ...]] = key(
        "zones to add to a generation's known ones: `{v6e: [us-east5-b]}`", default_factory=dict, shown="{}"
    )
    allow_broad_ranges: Annotated[bool, Flag()] = key("allow `authorizedNetworks` wider than a /16 (IPv4) or /48 (IPv6)", False)

    @property
    def autopilot(self) -> bool:
        return self.mode == "autopilot"

    @field_validator("authorized_networks", mode="plain")
    @classmethod
    def _networks(cls, value: Any, info: ValidationInfo) -> tuple[AuthorizedNetwork, ...]:
        if not isinstance(value, list):
            raise _Refused("must be a list")
        if not value:
            raise _Refused("list at least one range, or leave the key out for the private ranges only")
        path = _sub(_path(info), "authorizedNetworks")
        return tuple(_nested(AuthorizedNetwork, item, f"{path}[{index}]") for index, item in enumerate(value))

    @field_validator("extra_tpu_zones", mode="plain")
    @classmethod
    def _extra_zones(cls, value: Any, info: ValidationInfo) -> Mapping[str, tuple[str, ...]]:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise _Refused("must be a mapping")
        path = _sub(_path(info), "extraTpuZones")
        unknown = sorted(set(value) - set(facts.GENERATIONS), key=str)
        if unknown:
            name = unknown[0]
            hint = _did_you_mean(name, facts.GENERATIONS) if isinstance(name, str) else ""
            raise _Refused(f"unknown key{hint}; allowed: {', '.join(facts.GENERATIONS)}", key=f"{path}.{name}", value=HIDDEN)
        zones: dict[str, tuple[str, ...]] = {}
        for generation in facts.GENERATIONS:
            try:
                zones[generation] = Texts().check(value.get(generation, []))
            except _Refused as refused:
                shown = value.get(generation) if refused.value is PydanticUndefined else refused.value
                raise _Refused(refused.allowed, key=f"{path}.{generation}{refused.suffix}", value=shown) from None
        return zones

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> ClusterConfig:
        if info.context is None:
            return self
        path, region = _path(info), info.context["region"]
        if not self.zones:
            raise ConfigError(_sub(path, "zones"), [], f"list at least one zone of {region}")
        for index, zone in enumerate(self.zones):
            if not re.fullmatch(re.escape(region) + r"-[a-z]", zone):
                raise ConfigError(f"{_sub(path, 'zones')}[{index}]", zone, f"must be a zone of region {region} ({region}-a ...)")
        _no_duplicates(_sub(path, "zones"), self.zones)
        _ranges(
            _sub(path, "authorizedNetworks"),
            [n.cidr for n in self.authorized_networks],
            self.allow_broad_ranges,
            _sub(path, "allowBroadRanges"),
        )
        object.__setattr__(self, "extra_tpu_zones", {g: tuple(self.extra_tpu_zones.get(g, ())) for g in facts.GENERATIONS})
        return self


@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class BucketConfig(_Schema):
    location: Annotated[str, Text(shown="a region, or a multi- or dual-region")] = key(
        "location of the model cache buckets (one per model, `<project>-<stack>-<model>`): a region such as us-east5,"
        f" or {', '.join(GCS_MULTI_REGIONS)}",
        None,
        shown="gcp:region",
    )

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> BucketConfig:
        if info.context is None:
            return self
        region = info.context["region"]
        location = self.location or region.upper()
        if location.upper() not in GCS_MULTI_REGIONS and not REGION_RE.fullmatch(location.lower()):
            raise ConfigError(
                _sub(_path(info), "location"),
                location,
                f"a Cloud Storage location: a region such as {region}, or {', '.join(GCS_MULTI_REGIONS)}",
            )
        object.__setattr__(self, "location", location.upper())
        return self


@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class ModelConfig(_Schema):
    name: Annotated[str, Text(NAME_RE, "lowercase letters, digits and '-', 1-20 characters, starting with a letter")] = key(
        "the model's short name: its namespace `vllm-<name>`, bucket and pool"
    )
    hf_id: Annotated[
        str,
        Text(
            lambda v: HF_ID_RE.fullmatch(v) is not None and "--" not in v and ".." not in v,
            "a Hugging Face model id such as meta-llama/Llama-3.1-8B: org/name of ASCII letters, digits, '-', '_', '.', no '--' or '..'",
            shown="`org/name`, ASCII letters, digits, `-_.`, no `--` or `..`",
        ),
    ] = key("the Hugging Face model id")
    generation: Annotated[facts.Generation, GIVEN] = key("TPU generation", "v6e", validate_default=True)
    zones: Annotated[tuple[str, ...], Texts()] = key("zones for its node pool, of cluster.zones", (), shown="cluster.zones")
    image_tag: Annotated[str, ImageTag()] = key("the vLLM TPU image's release tag", facts.VLLM_DEFAULT_TAG)
    max_model_len: Annotated[int, Whole(*fit.MAX_MODEL_LEN_RANGE)] = key(
        "context length served (vLLM --max-model-len)", fit.DEFAULT_MAX_MODEL_LEN
    )
    gpu_memory_utilization: Annotated[float, Real(*fit.MEMORY_UTILIZATION_RANGE)] = key(
        "share of HBM vLLM may use", fit.DEFAULT_MEMORY_UTILIZATION
    )
    architecture: Annotated[ModelArch | None, GIVEN] = key(
        "for a model the catalog lacks: `{paramsBillions, layers, attentionHeads, kvHeads, headDim, dtype, maxContext}`", None
    )
    config_json: Annotated[str | None, Text(optional=True, shown="a file path")] = key(
        "for a model the catalog lacks: path to its config.json", None
    )
    kv_cache_dtype: Annotated[str, Choice(fit.KV_CACHE_DTYPES)] = key(
        "vLLM --kv-cache-dtype; auto is bfloat16 on TPU", fit.DEFAULT_KV_CACHE_DTYPE
    )
    topology: Annotated[str, Text(shown="auto, or a slice of the generation such as 2x4")] = key(
        "TPU slice topology, or auto: the smallest slice that fits (single-host unless allowMultiHost)", "auto"
    )
    machine_type: Annotated[str | None, Text(optional=True, shown="a machine type of the generation such as ct6e-standard-8t")] = key(
        "TPU machine type; unset: the slice's", None
    )
    concurrency: Annotated[int, Whole(*fit.CONCURRENCY_RANGE)] = key("sequences to size the KV cache for", fit.DEFAULT_CONCURRENCY)
    allow_multi_host: Annotated[bool, Flag()] = key(
        "allow a multi-host slice (auto may choose one): a LeaderWorkerSet on GKE Standard, in one zone", False
    )
    tensor_parallel: Annotated[int, Whole(1, 512)] = key(
        "vLLM --tensor-parallel-size; must equal the slice's devices", 0, shown="the slice's devices", alias="tensorParallelSize"
    )
    max_num_seqs: Annotated[int, Whole(1, 4096)] = key("vLLM --max-num-seqs", 0, shown="from sizing")
    max_num_batched_tokens: Annotated[int, Whole(64, 1_048_576)] = key(
        "vLLM --max-num-batched-tokens, at least maxNumSeqs", 0, shown="from sizing"
    )
    min_replicas: Annotated[int, Whole(1, 100)] = key("replicas at least", 1)
    max_replicas: Annotated[int, Whole(1, 100)] = key("replicas at most; above 1 an HPA scales", 0, shown="minReplicas")
    capacity: Annotated[str, Choice(CAPACITY)] = key("how the TPU nodes are provisioned", "on-demand")
    reservation: Annotated[
        str | None,
        Text(GCE_NAME_RE, "a reservation name: 1-63 of a-z 0-9 '-', starting with a letter", optional=True),
    ] = key("the reservation's name, exactly when capacity is reservation", None)
    exposure: Annotated[str, Choice(EXPOSURE)] = key("internal: in the cluster only; external: a load balancer and apiKey", "internal")
    source_ranges: Annotated[tuple[str, ...], Texts(cidr=True)] = key("who reaches an external model (required then)", ())
    allow_broad_ranges: Annotated[bool, Flag()] = key("allow `sourceRanges` wider than a /16 (IPv4) or /48 (IPv6)", False)
    shutdown_timeout_seconds: Annotated[int, Whole(0, 600)] = key("vLLM --shutdown-timeout (vLLM 0.18 or later; 0 for older)", 60)
    metric: Annotated[str, Choice(AUTOSCALING_METRICS)] = key("what the HPA scales on", "num_requests_waiting", alias="autoscalingMetric")
    target: Annotated[float, Real(0.01, 10_000)] = key(
        "the HPA's target per pod (a share, 0.01-1, for kv_cache_usage)", 0.0, shown="10 (waiting), 0.8 (kv)", alias="autoscalingTarget"
    )
    startup_minutes: Annotated[int, Whole(MIN_STARTUP_MINUTES, 120)] = key("how long a cold start (download and compile) may take", 45)
    slice: Annotated[facts.Slice, GIVEN] = derived("the TPU slice sizing chose or checked")
    sizing: Annotated[fit.Sizing | None, GIVEN] = derived("the fit that chose the slice (None when not known)")

    @field_validator("generation", mode="plain")
    @classmethod
    def _generation(cls, value: Any) -> facts.Generation:
        if isinstance(value, facts.Generation):
            return value
        return facts.GENERATIONS[Choice(facts.GENERATIONS).check(value)]

    @field_validator("architecture", mode="plain")
    @classmethod
    def _architecture(cls, value: Any, info: ValidationInfo) -> ModelArch | None:
        if value is None or isinstance(value, ModelArch):
            return value
        from components import models

        try:
            return models.from_mapping(_sub(_path(info), "architecture"), str(info.data.get("hf_id", "")), value)
        except ConfigError as error:
            raise _Refused.of(error) from None

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> ModelConfig:
        if info.context is None:
            return self  # built by the program (dataclasses.replace), already whole
        path, cluster = _path(info), info.context["cluster"]

        def at(name: str) -> str:
            return _sub(path, name)

        generation = self.generation
        zones = self.zones or cluster.zones
        _no_duplicates(at("zones"), zones)
        offered = generation.zones + cluster.extra_tpu_zones.get(generation.name, ())
        for index, zone in enumerate(zones):
            if zone not in cluster.zones:
                raise ConfigError(f"{at('zones')}[{index}]", zone, f"must be one of cluster.zones: {', '.join(cluster.zones)}")
            if zone not in offered:
                raise ConfigError(
                    at("zones") if self.zones else "cluster.zones",
                    zone,
                    f"{generation.name} is offered in {', '.join(offered)}"
                    f" (add a zone under cluster.extraTpuZones.{generation.name} if Google lists it)",
                )
        chosen = sizing.resolve(
            key=at("topology"),
            arch=self._arch(at("configJson")),
            generation=generation,
            topology=self.topology,
            machine_type=self.machine_type,
            max_model_len=self.max_model_len,
            concurrency=self.concurrency,
            memory_utilization=self.gpu_memory_utilization,
            allow_multi_host=self.allow_multi_host,
            kv_cache_dtype=self.kv_cache_dtype,
        )
        if chosen.slice.multi_host:
            # Served by a LeaderWorkerSet on pools of whole slices (VllmMultiHostServer, TpuNodePool): an
            # explicit opt-in, GKE Standard (the stack builds the slice pools), and one zone (a slice's
            # hosts share one zone, and GKE sizes the pool per zone: facts.MULTI_HOST_ZERO_MAX_REFUSED).
            where = f"{chosen.slice.topology} on {chosen.slice.vms} x {chosen.slice.machine_type}"
            if not self.allow_multi_host:
                single = ", ".join(t for t in generation.topologies if generation.single_host_slice(t))
                raise ConfigError(
                    at("topology"), chosen.slice.topology, f"{where} is a multi-host slice: set allowMultiHost: true; single-host: {single}"
                )
            if cluster.autopilot:
                raise ConfigError(at("topology"), chosen.slice.topology, f"{where} is a multi-host slice: it needs cluster.mode: standard")
            if len(zones) != 1:
                raise ConfigError(
                    at("zones") if self.zones else "cluster.zones",
                    list(zones),
                    f"a multi-host model runs in one zone (its slice's hosts share one): set {at('zones')} to one of them",
                )
        devices = chosen.slice.chips * generation.devices_per_chip
        if self.tensor_parallel and self.tensor_parallel != devices:
            # A pod owns every chip of its node; vLLM must shard over all of them or they sit idle.
            raise ConfigError(
                at("tensorParallelSize"),
                self.tensor_parallel,
                f"must equal the chips of {chosen.slice.topology} ({devices}"
                + (f" devices: {chosen.slice.chips} chips x {generation.devices_per_chip}" if devices != chosen.slice.chips else "")
                + ")",
            )
        max_num_seqs = self.max_num_seqs or chosen.max_num_seqs
        batched = self.max_num_batched_tokens or max(chosen.max_num_batched_tokens, max_num_seqs)
        if batched < max_num_seqs:
            # vLLM refuses to start when a step cannot hold one token of every running sequence.
            raise ConfigError(at("maxNumBatchedTokens"), batched, f"must be at least maxNumSeqs ({max_num_seqs})")
        max_replicas = self.max_replicas or self.min_replicas
        if max_replicas < self.min_replicas:
            raise ConfigError(at("maxReplicas"), max_replicas, f"must be at least minReplicas ({self.min_replicas})")
        if (self.capacity == "reservation") != (self.reservation is not None):
            raise ConfigError(at("reservation"), self.reservation, "set it exactly when capacity is 'reservation'")
        if self.exposure == "external" and not self.source_ranges:
            raise ConfigError(at("sourceRanges"), [], "exposure: external needs the CIDR blocks allowed to reach it")
        _no_duplicates(at("sourceRanges"), self.source_ranges)
        _ranges(at("sourceRanges"), self.source_ranges, self.allow_broad_ranges, at("allowBroadRanges"))
        version = facts.parse_vllm_version(self.image_tag)
        if self.shutdown_timeout_seconds and version is not None and version < facts.VLLM_SHUTDOWN_TIMEOUT_SINCE:
            raise ConfigError(
                at("shutdownTimeoutSeconds"),
                self.shutdown_timeout_seconds,
                f"needs vLLM 0.18 or later (imageTag is {self.image_tag}); set 0",
            )
        waiting = self.metric == "num_requests_waiting"
        if not waiting and self.target > 1.0:
            raise ConfigError(at("autoscalingTarget"), self.target, "must be a number from 0.01 to 1.0")
        resolved = {
            "zones": zones,
            "slice": chosen.slice,
            "sizing": chosen.sizing,
            "tensor_parallel": devices,
            "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": batched,
            "max_replicas": max_replicas,
            "target": self.target or (10.0 if waiting else 0.8),
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)
        return self

    def _arch(self, config_json_key: str) -> ModelArch | None:
        """The model's facts for sizing: stated in config, read from a config.json, or the catalog."""
        from components import models

        if self.architecture is not None:
            return self.architecture
        if self.config_json is not None:
            return models.from_config_json_path(config_json_key, self.hf_id, self.config_json)
        return models.lookup(self.hf_id)

    @property
    def machine(self) -> facts.MachineType:
        return self.generation.machine(self.slice.machine_type)

    @property
    def multi_host(self) -> bool:
        """Its slice spans several TPU VMs: served by a LeaderWorkerSet, one group per slice."""
        return self.slice.multi_host

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
        return AUTOSCALING_METRICS[self.metric]


@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class StackConfig(_Schema):
    project: Annotated[str, Text(PROJECT_RE, "a project id, 6-30 of a-z 0-9 '-' (pulumi config set gcp:project ID)", plain=True)] = key(
        "the GCP project id", None, shown="required", validate_default=True, name="gcp:project"
    )
    region: Annotated[
        str, Text(REGION_RE, "a Compute Engine region such as us-east5 (pulumi config set gcp:region REGION)", plain=True)
    ] = key("the GCP region", None, shown="required", validate_default=True, name="gcp:region")
    cluster: ClusterConfig = key("the GKE cluster (below)", None, shown="{}", validate_default=True)
    models: tuple[ModelConfig, ...] = key("the models to serve, at least one (below)", (), shown="required", validate_default=True)
    protect_data: Annotated[bool, Flag()] = key("protect and retain the model cache buckets (prod: true)", False)
    bucket: BucketConfig = key("the model cache buckets (below)", None, shown="{}", validate_default=True)
    stack: str = derived("the stack's name")

    @field_validator("cluster", mode="plain")
    @classmethod
    def _cluster(cls, value: Any, info: ValidationInfo) -> ClusterConfig:
        if info.context is None:
            return value
        if "region" not in info.data:
            raise _Refused("needs a valid gcp:region")
        return _nested(ClusterConfig, value, "cluster", region=info.data["region"])

    @field_validator("models", mode="plain")
    @classmethod
    def _models(cls, value: Any, info: ValidationInfo) -> tuple[ModelConfig, ...]:
        if info.context is None:
            return value
        value = [] if value == () else value  # the key left out
        if not isinstance(value, list):
            raise _Refused("must be a list")
        if not value:
            raise _Refused("list at least one model to serve", value=[])
        if "cluster" not in info.data:
            raise _Refused("needs a valid cluster")
        return tuple(_nested(ModelConfig, item, f"models[{index}]", cluster=info.data["cluster"]) for index, item in enumerate(value))

    @field_validator("bucket", mode="plain")
    @classmethod
    def _bucket(cls, value: Any, info: ValidationInfo) -> BucketConfig:
        if info.context is None:
            return value
        if "region" not in info.data:
            raise _Refused("needs a valid gcp:region")
        return _nested(BucketConfig, value, "bucket", region=info.data["region"])

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> StackConfig:
        if info.context is None:
            return self
        seen: dict[str, int] = {}
        for index, model in enumerate(self.models):
            if model.name in seen:
                raise ConfigError(f"models[{index}].name", model.name, f"already used by models[{seen[model.name]}]; names must be unique")
            seen[model.name] = index
        if self.cluster.version is not None:
            for index, model in enumerate(self.models):
                generation = model.generation
                minimum = generation.min_gke_autopilot if self.cluster.autopilot else generation.min_gke_standard
                if not facts.gke_version_at_least(self.cluster.version, minimum):
                    raise ConfigError(
                        "cluster.version",
                        self.cluster.version,
                        f"models[{index}] uses {generation.name}, which needs GKE {minimum} or later on {self.cluster.mode}",
                    )
        object.__setattr__(self, "stack", info.context["stack"])
        return self

    def bucket_name(self, model: ModelConfig) -> str:
        """Globally unique (project ids are) and within Cloud Storage's 63 characters."""
        name = f"{self.project}-{self.stack}-{model.name}"
        if len(name) <= 63:
            return name
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        return f"{name[:54].rstrip('-')}-{digest}"


def load_stack_config(raw: Mapping[str, Any], stack: str) -> StackConfig:
    _refuse_secret_shapes("", raw)
    return _validate(StackConfig, raw, "", stack=stack)


# The keys each mapping of a stack file may hold (the schema's aliases).
CLUSTER_KEYS = input_keys(ClusterConfig)
MODEL_KEYS = input_keys(ModelConfig)
STACK_KEYS = input_keys(StackConfig)
# The keys of the project's namespace (tpu-serving:...): gcp:project and gcp:region are the provider's.
PROJECT_KEYS = (*(k for k in STACK_KEYS if k not in ("project", "region")), *SECRET_KEYS)


def read_pulumi_config() -> dict[str, Any]:
    """The stack's raw config as plain values; secrets are read separately, as Outputs."""
    names = {*pulumi.runtime.config.CONFIG.get(), *pulumi.runtime.config.get_config_env()}
    flat = {full: pulumi.runtime.get_config(full) for full in names}
    secret = {full for full in names if pulumi.runtime.is_config_secret(full)}
    return raw_stack_config(pulumi.Config().name, flat, secret)


def raw_stack_config(project: str, flat: Mapping[str, str | None], secret: Collection[str]) -> dict[str, Any]:
    """What load_stack_config reads, from the flat `namespace:key` -> text map the CLI hands a
    program (objects as JSON); `secret` names the encrypted keys. e2e reads a stack file this way too."""
    # A misspelt key (protectdata: true) would otherwise be ignored and leave its default in force.
    # An unknown key's value is never shown: `hftoken: hf_...` is a secret under a wrong name.
    for full in sorted(flat):
        namespace, _, name = full.partition(":")
        if namespace == project and name in SECRET_KEYS and full not in secret:
            raise ConfigError(
                name, HIDDEN, f"is in plain text in the stack file: pulumi config set --secret {name} <value> (and rotate the value)"
            )
        if namespace == project and name not in PROJECT_KEYS:
            allowed = ", ".join(f"{project}:{k}" for k in PROJECT_KEYS)
            raise ConfigError(full, HIDDEN, f"unknown key{_did_you_mean(name, PROJECT_KEYS)}; allowed: {allowed}")
        if namespace == "gcp" and name not in gcp_provider_keys():
            raise ConfigError(
                full, HIDDEN, f"not a gcp provider key{_did_you_mean(name, gcp_provider_keys())}; this stack reads gcp:project, gcp:region"
            )
        if full not in secret:
            _refuse_secret_shapes(name if namespace == project else full, _parsed(flat[full]))
    raw: dict[str, Any] = {"project": flat.get("gcp:project"), "region": flat.get("gcp:region")}
    for info in _fields(StackConfig).values():
        alias = str(info.alias)
        text = flat.get(f"{project}:{alias}")
        if alias not in PROJECT_KEYS or text is None:
            continue
        if any(isinstance(rule, Rule) for rule in info.metadata):
            raw[alias] = text  # a scalar (protectData: true) is read as its text, which its rule parses
            continue
        try:
            raw[alias] = json.loads(text)
        except (ValueError, RecursionError):
            raise ConfigError(alias, text, "must be a YAML mapping or list (as in Pulumi.<stack>.yaml)") from None
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


@std_dataclass(frozen=True)
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


def _no_duplicates(key: str, values: Sequence[str]) -> None:
    for index, value in enumerate(values):
        if value in values[:index]:
            raise ConfigError(f"{key}[{index}]", value, f"listed twice (first at {key}[{values.index(value)}])")


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


# --- the README's config table, generated from the fields above ------------------------------------
README = Path(__file__).resolve().parent.parent / "README.md"
TABLE_BEGIN = "<!-- config-table: generated from components/config.py by `python -m components.config --readme`; do not edit -->"
TABLE_END = "<!-- /config-table -->"
# Each mapping of the stack file and the prefix its keys carry in the table.
SECTIONS: tuple[tuple[type, str], ...] = (
    (StackConfig, ""),
    (ClusterConfig, "cluster."),
    (AuthorizedNetwork, "cluster.authorizedNetworks[]."),
    (ModelConfig, "models[]."),
    (BucketConfig, "bucket."),
)


def _shown_default(info: FieldInfo) -> str:
    extra = _extra(info)
    if "shown_default" in extra:
        return str(extra["shown_default"])
    default = info.get_default(call_default_factory=True)
    if default is PydanticUndefined:
        return "required"
    if default is None:
        return "unset"
    if default == ():
        return "[]"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, facts.Generation):
        return default.name
    return str(default)


def table_rows() -> list[tuple[str, str, str, str]]:
    """(key, default, allowed, meaning) for every key of the stack file, in the schema's order."""
    rows = []
    for cls, prefix in SECTIONS:
        for info in _fields(cls).values():
            extra = _extra(info)
            if extra.get(DERIVED):
                continue
            rules = [m for m in info.metadata if isinstance(m, Rule) and m is not GIVEN]
            allowed = rules[0].shown if rules else ("list" if "tuple" in str(info.annotation) else "mapping")
            if info.alias == "generation":
                allowed = ", ".join(facts.GENERATIONS)
            name = extra.get("key") or f"{prefix or 'tpu-serving:'}{info.alias}"
            rows.append((str(name), _shown_default(info), allowed, str(info.description)))
    rows += [
        (f"tpu-serving:{name}", "required" if name == "hfToken" else "unset", "secret", text) for name, text in SECRET_DESCRIPTIONS.items()
    ]
    return rows


def markdown_table() -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {cell(d)} | {cell(a)} | {cell(m)} |" for k, d, a, m in table_rows()]
    return "\n".join(lines) + "\n"


def readme_with_table(readme: str) -> str:
    """The README with the text between the markers replaced by the generated table."""
    begin, end = readme.index(TABLE_BEGIN) + len(TABLE_BEGIN), readme.index(TABLE_END)
    return readme[:begin] + "\n" + markdown_table() + readme[end:]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--markdown"]:
        print(markdown_table(), end="")
        return 0
    if args == ["--readme"]:
        README.write_text(readme_with_table(README.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"wrote the config table into {README}")
        return 0
    print("usage: python -m components.config --markdown | --readme", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
