"""Malformed stack config, generated: whatever is thrown at the config loader, and at the whole
program, ends in the one-line ConfigError before any resource is registered. No other exception
(KeyError, TypeError, ValueError, a traceback) may escape.

The malformed configs start from a valid stack and edit it: junk of every type in every field
(None, bools, ints, huge numbers, floats with nan and inf, unicode text, lists, nested dicts),
wrong shapes (models as a mapping, cluster as a list), unknown keys. An edit drawn from
`invalid_edit` is one the loader must refuse whatever else is wrong; `any_edit` may happen to be
valid, so the loader may also accept it, but then it must not crash either.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from components import config as stack_config
from components import facts, models
from components.errors import ConfigError
from conftest import HF_TOKEN
from offline_plan.harness import PlanMocks, RecordingMonitor, run_program

# Two models: a catalog one on a fixed slice, and one described under `architecture:` on "auto".
BASE_RAW: dict[str, Any] = {
    "project": "acme-llm-test",
    "region": "us-east5",
    "cluster": {
        "name": "llm-test",
        "mode": "standard",
        "zones": ["us-east5-b"],
        "authorizedNetworks": [{"name": "corp-vpn", "cidr": "198.51.100.0/24"}],
        "extraTpuZones": {"v6e": []},
    },
    "bucket": {"location": "US-EAST5"},
    "protectData": False,
    "models": [
        {"name": "llama-70b", "hfId": "meta-llama/Llama-3.1-70B", "generation": "v6e", "topology": "2x4", "maxReplicas": 2},
        {
            "name": "custom-1b",
            "hfId": "acme/custom-1b",
            "topology": "auto",
            "architecture": {
                "paramsBillions": 1.2,
                "layers": 16,
                "attentionHeads": 32,
                "kvHeads": 8,
                "headDim": 64,
                "dtype": "bfloat16",
                "maxContext": 131072,
            },
        },
    ],
}
# How the CLI hands the top-level keys to the program (read_pulumi_config).
PULUMI_KEYS = {
    "project": "gcp:project",
    "region": "gcp:region",
    "cluster": "tpu-serving:cluster",
    "bucket": "tpu-serving:bucket",
    "models": "tpu-serving:models",
    "protectData": "tpu-serving:protectData",
}
# Mappings of the base and the keys each allows: an unknown key in any of them is an error.
Path = tuple[str | int, ...]
MAPPINGS: dict[Path, tuple[str, ...]] = {
    (): tuple(PULUMI_KEYS),
    ("cluster",): stack_config.CLUSTER_KEYS,
    ("cluster", "authorizedNetworks", 0): ("name", "cidr"),
    ("cluster", "extraTpuZones"): tuple(facts.GENERATIONS),
    ("bucket",): ("location",),
    ("models", 0): stack_config.MODEL_KEYS,
    ("models", 1): stack_config.MODEL_KEYS,
    ("models", 1, "architecture"): models.ARCHITECTURE_FIELDS,
}

HUGE = (10**19, -(10**19), 2**64, 10**308, 10**400, -(10**400))
SPECIAL_TEXT = (
    "",
    " ",
    "true",
    "FALSE",
    "yes",
    "null",
    "auto",
    "latest",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "0x10",
    "--5",
    "5 ",
    "²",
    "١٢٣",
    "٣",
    "1_000",
    "\x00",
    "a\nb",
    "\u2028",
    "v6e",
    "2x4",
    "ct6e-standard-8t",
    "us-east5-b",
    "0.0.0.0/0",
    "::/0",
    "10.0.0.1/8",
    "meta-llama/Llama-3.1-70B",
    "Pulumi.yaml",
    ".",
    "/",
    "🦙" * 3,
    # Free text that must not reach a plan (issue 13): shell, paths, invisible and homoglyph letters.
    "v0.22.0 ",
    "v0.22.0;id",
    "../etc",
    "v0.22.0\u200b",
    "m\u0435ta-llama/Llama-3.1-8B",
    "a..b/c",
    "nightly",
    "v0.22.0@sha256:" + "a" * 64,
    "$(id)",
)
KEYS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(sorted({k for keys in MAPPINGS.values() for k in keys} | {"match_labels", "__proto__", "$ref"})),
)
# Hand-picked edge cases are drawn as often as free-form values: 200 examples must reach them.
SPECIAL = st.sampled_from((None, True, False, 0, -1, 1.5, float("nan"), float("inf"), *HUGE, *SPECIAL_TEXT))
SCALARS = st.one_of(SPECIAL, SPECIAL, st.none() | st.booleans(), st.integers(), st.floats(), st.text())
JUNK = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=6)
# Numbers as a stack file or `pulumi config set` may spell them, for the numeric keys.
NUMERIC_KEYS = frozenset(
    (
        "maxModelLen",
        "maxNumBatchedTokens",
        "maxNumSeqs",
        "gpuMemoryUtilization",
        "minReplicas",
        "maxReplicas",
        "autoscalingTarget",
        "startupMinutes",
        "shutdownTimeoutSeconds",
        "tensorParallelSize",
        "concurrency",
        "systemNodes",
        "paramsBillions",
        "layers",
        "attentionHeads",
        "kvHeads",
        "headDim",
        "maxContext",
    )
)
NUMERIC_EDGE = st.sampled_from(
    (
        "²",
        "³",
        "½",
        "Ⅻ",
        "٣",
        "١٢٣",
        "--5",
        "+5",
        "-0",
        " 7 ",
        "1e309",
        "1e-400",
        "0x10",
        "1_000",
        "9" * 4400,
        float("nan"),
        float("inf"),
        *HUGE,
    )
)
# Paths a configJson could name that exist or trip the file reader (never a device that blocks).
PATH_EDGE = st.sampled_from(("\x00", "a\x00b", ".", "/", "Pulumi.yaml", "requirements.txt", "/nonexistent/config.json", "/dev/null"))


def junk_for(path: Path) -> st.SearchStrategy[Any]:
    if path[-1] in NUMERIC_KEYS:
        return st.one_of(JUNK, NUMERIC_EDGE)
    if path[-1] == "configJson":
        return st.one_of(JUNK, PATH_EDGE)
    return JUNK


# --- what the loader could accept at a path (a superset: anything outside it is surely refused) ---
def _text(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _optional_text(v: Any) -> bool:
    return v is None or _text(v)


def _choice(*choices: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in choices


def _matches(pattern: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and re.fullmatch(pattern, v) is not None


def _whole(low: int, high: int) -> Callable[[Any], bool]:
    def accepted(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | str):
            return False
        try:
            return low <= int(v) <= high
        except ValueError:
            return False

    return accepted


def _number(low: float, high: float) -> Callable[[Any], bool]:
    def accepted(v: Any) -> bool:
        try:
            return not isinstance(v, bool) and low <= float(v) <= high
        except Exception:
            return False

    return accepted


def _flag(v: Any) -> bool:
    return isinstance(v, bool) or (isinstance(v, str) and v.lower() in ("true", "false"))


def _list(v: Any) -> bool:
    return isinstance(v, list)


def _mapping_or_none(v: Any) -> bool:
    return v is None or isinstance(v, Mapping)


def _mapping(v: Any) -> bool:
    return isinstance(v, Mapping)


def _cidr(v: Any) -> bool:
    try:
        ipaddress.ip_network(v, strict=True)
    except (TypeError, ValueError):
        return False
    return True


def _optional(accepted: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or accepted(v)


# The grammars of issue 13, restated here so a loosened loader fails the fuzz.
RELEASE_TAG = r"v?[0-9]+\.[0-9]+\.[0-9]+(?:[.-]?post[0-9]+|rc[0-9]+)?(?:@sha256:[0-9a-f]{64})?"
HF_ID = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?/[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"


def _hf_id(v: Any) -> bool:
    return _matches(HF_ID)(v) and "--" not in v and ".." not in v


def _location(v: Any) -> bool:
    return isinstance(v, str) and (
        v.upper() in stack_config.GCS_MULTI_REGIONS or re.fullmatch(r"[a-z]+-[a-z]+[0-9]+", v.lower()) is not None
    )


def _models_list(v: Any) -> bool:
    return isinstance(v, list) and any(isinstance(m, Mapping) and "hfId" in m for m in v)


TOPOLOGIES = ("auto", *sorted({s.topology for g in facts.GENERATIONS.values() for s in g.slices}))
MACHINES = tuple(m.name for g in facts.GENERATIONS.values() for m in g.machine_types)
MODEL_FIELDS: dict[str, Callable[[Any], bool]] = {
    "name": _matches(stack_config.NAME_RE.pattern),
    "hfId": _hf_id,
    "generation": _choice(*facts.GENERATIONS),
    "topology": _choice(*TOPOLOGIES),
    "machineType": lambda v: v is None or v in MACHINES,
    "zones": _list,
    "imageTag": _matches(RELEASE_TAG),
    "maxModelLen": _whole(128, 1_048_576),
    "maxNumBatchedTokens": _whole(64, 1_048_576),
    "maxNumSeqs": _whole(1, 4096),
    "gpuMemoryUtilization": _number(0.5, 0.99),
    "minReplicas": _whole(1, 100),
    "maxReplicas": _whole(1, 100),
    "autoscalingMetric": _choice(*stack_config.AUTOSCALING_METRICS),
    "autoscalingTarget": _number(0.01, 10_000),
    "capacity": _choice(*stack_config.CAPACITY),
    "reservation": _optional(_matches(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")),
    "exposure": _choice(*stack_config.EXPOSURE),
    "sourceRanges": _list,
    "startupMinutes": _whole(stack_config.MIN_STARTUP_MINUTES, 120),
    "shutdownTimeoutSeconds": _whole(0, 600),
    "tensorParallelSize": _whole(1, 256),
    "concurrency": _whole(1, 4096),
    "allowMultiHost": _flag,
    "architecture": _mapping_or_none,
    "allowBroadRanges": _flag,
}
FIELDS: dict[Path, Callable[[Any], bool]] = {
    ("project",): _matches(stack_config.PROJECT_RE.pattern),
    ("region",): _matches(stack_config.REGION_RE.pattern),
    ("cluster",): _mapping_or_none,
    ("bucket",): _mapping_or_none,
    ("models",): _models_list,
    ("protectData",): _flag,
    ("cluster", "name"): _text,
    ("cluster", "mode"): _choice(*stack_config.MODES),
    ("cluster", "zones"): _list,
    ("cluster", "releaseChannel"): _choice(*facts.RELEASE_CHANNELS),
    ("cluster", "version"): _optional_text,
    ("cluster", "deletionProtection"): _flag,
    ("cluster", "privateEndpoint"): _flag,
    ("cluster", "authorizedNetworks"): _list,
    ("cluster", "systemMachineType"): _matches(r"[a-z][a-z0-9]*(-[a-z0-9]+){1,4}"),
    ("cluster", "allowBroadRanges"): _flag,
    ("cluster", "systemNodes"): _whole(1, 10),
    ("cluster", "extraTpuZones"): _mapping_or_none,
    ("cluster", "extraTpuZones", "v6e"): _list,
    ("cluster", "authorizedNetworks", 0): _mapping,
    ("cluster", "authorizedNetworks", 0, "name"): _matches(r"[A-Za-z0-9]([A-Za-z0-9 ._()-]{0,61}[A-Za-z0-9._()-])?"),
    ("cluster", "authorizedNetworks", 0, "cidr"): _cidr,
    ("bucket", "location"): _location,
    ("models", 0): _mapping,
    ("models", 1): _mapping,
    # configJson is read only when architecture is not set: models[0] has none.
    ("models", 0, "configJson"): _optional_text,
    **{("models", index, key): accepted for index in (0, 1) for key, accepted in MODEL_FIELDS.items()},
    ("models", 1, "architecture", "paramsBillions"): _number(0.01, 100_000),
    ("models", 1, "architecture", "layers"): _whole(1, 1000),
    ("models", 1, "architecture", "attentionHeads"): _whole(1, 1024),
    ("models", 1, "architecture", "kvHeads"): _whole(1, 1024),
    ("models", 1, "architecture", "headDim"): _whole(1, 1024),
    ("models", 1, "architecture", "dtype"): lambda v: models._dtype(v) is not None,
    ("models", 1, "architecture", "maxContext"): lambda v: v is None or _whole(128, 100_000_000)(v),
}
# A string path is only a good guess at junk; these are the ones a config file could name.
ANY_PATHS: list[Path] = [*FIELDS, ("models", 0, "configJson"), ("models", 1, "configJson")]


def _container_at(doc: Any, path: Path) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _fits(child: Any, step: str | int) -> bool:
    """Whether `child` is a container that `step` can index into (or add a key to)."""
    return isinstance(child, dict) if isinstance(step, str) else isinstance(child, list) and step < len(child)


def _set(doc: dict[str, Any], path: Path, value: Any, *, force: bool) -> None:
    """Sets doc[path] = value. With force, containers along the way that earlier edits replaced
    are restored from the base first, so the edit lands where it was aimed; without, an edit
    whose way is gone is dropped."""
    target: Any = doc
    for depth, step in enumerate(path[:-1]):
        child = target.get(step) if isinstance(target, dict) else target[step]
        if not _fits(child, path[depth + 1]):
            if not force:
                return
            child = copy.deepcopy(_container_at(BASE_RAW, path[: depth + 1]))
            target[step] = child
        target = child
    target[path[-1]] = value


Edit = tuple[str, Path, Any]


@st.composite
def any_edit(draw: st.DrawFn) -> Edit:
    """Junk at a field, an unknown key in a mapping, or junk in place of a whole mapping or list."""
    kind = draw(st.sampled_from(("field", "field", "unknown-key", "shape")))
    if kind == "unknown-key":
        where = draw(st.sampled_from(sorted(MAPPINGS, key=str)))
        return ("set", (*where, draw(KEYS)), draw(JUNK))
    if kind == "shape":
        where = draw(
            st.sampled_from([("cluster",), ("models",), ("bucket",), ("models", 0), ("models", 1), ("cluster", "authorizedNetworks")])
        )
        shape = st.one_of(JUNK, st.dictionaries(KEYS, JUNK, max_size=3), st.lists(JUNK, max_size=3))
        return ("set", where, draw(shape))
    path = draw(st.sampled_from(ANY_PATHS))
    if draw(st.booleans()):
        return ("delete", path, None)
    return ("set", path, draw(junk_for(path)))


@st.composite
def invalid_edit(draw: st.DrawFn, top_level_keys: bool = True) -> Edit:
    """An edit the loader must refuse, whatever else is wrong with the config: an unknown key, a
    numeric field (a third of the draws: where spelling numbers as text goes wrong) or any other."""
    kind = draw(st.sampled_from(("unknown-key", "numeric", "field")))
    if kind == "unknown-key":
        mappings = sorted((p for p in MAPPINGS if top_level_keys or p), key=str)
        where = draw(st.sampled_from(mappings))
        allowed = MAPPINGS[where]
        key = draw(KEYS.filter(lambda k: k not in allowed))
        return ("set", (*where, key), draw(JUNK))
    numeric = kind == "numeric"
    path = draw(st.sampled_from(sorted((p for p in FIELDS if (p[-1] in NUMERIC_KEYS) == numeric), key=str)))
    accepted = FIELDS[path]
    return ("set", path, draw(junk_for(path).filter(lambda v: not accepted(v))))


def apply(edits: list[Edit], last: Edit | None = None) -> dict[str, Any]:
    raw = copy.deepcopy(BASE_RAW)
    for op, path, value in edits:
        if op == "delete":
            parent = _container_at_or_none(raw, path[:-1])
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
        else:
            _set(raw, path, value, force=False)
    if last is not None:
        _set(raw, last[1], last[2], force=True)
    return raw


def _container_at_or_none(doc: Any, path: Path) -> Any:
    try:
        return _container_at(doc, path)
    except (KeyError, IndexError, TypeError):
        return None


# Unicode's mandatory line breaks (UAX #14: BK, CR, LF, NL): what a terminal or a log shows as a new line.
LINE_BREAKS = ("\n", "\r", "\x0b", "\x0c", "\x85", "\u2028", "\u2029")


def assert_one_line(error: ConfigError) -> None:
    message = str(error)
    assert message.startswith("config error: "), message
    assert not any(br in message for br in LINE_BREAKS), f"not one line: {message!r}"


def as_pulumi_config(raw: Mapping[str, Any]) -> dict[str, str]:
    """The flat string map the CLI gives the program: strings as set, anything else as JSON (the
    CLI has no null: `pulumi config set k null` stores the text). A key the program does not know
    is passed under the project's namespace, where the program ignores it."""
    config = {PULUMI_KEYS.get(k, f"tpu-serving:{k}"): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
    config["tpu-serving:hfToken"] = HF_TOKEN
    return config


FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck), print_blob=False)


def test_the_base_config_is_valid() -> None:
    loaded = stack_config.load_stack_config(BASE_RAW, "fuzz")
    assert [m.name for m in loaded.models] == ["llama-70b", "custom-1b"]
    run = run_program("fuzz", as_pulumi_config(BASE_RAW), ["tpu-serving:hfToken"], project="tpu-serving", plan_mocks=PlanMocks())
    assert len(run.registrations) > 20


@settings(FUZZ, max_examples=200)
@given(st.lists(any_edit(), max_size=2), invalid_edit())
# Crashes the fuzzer found (see the report of issue 6); kept so they stay fixed.
@pytest.mark.slow
@example([], ("set", ("models", 0, "maxModelLen"), "²"))
@example([], ("set", ("models", 1, "architecture", "layers"), "²"))
@example([], ("set", ("models", 0, "gpuMemoryUtilization"), 10**400))
@example([], ("set", ("models", 1, "architecture", "paramsBillions"), 10**400))
@example([], ("set", ("models", 0, "configJson"), "\x00"))
@example([], ("set", ("cluster", "a\nb"), 0))
@example([], ("set", ("models", 0, "maxModelLen"), "7" * 4301))
def test_loader_refuses_malformed_config_with_one_line(edits: list[Edit], invalid: Edit) -> None:
    raw = apply(edits, invalid)
    with pytest.raises(ConfigError) as raised:
        stack_config.load_stack_config(raw, "fuzz")
    assert_one_line(raised.value)


@pytest.mark.slow
@settings(FUZZ, max_examples=200)
@given(st.lists(any_edit(), min_size=1, max_size=4))
def test_loader_never_crashes_on_junk(edits: list[Edit]) -> None:
    raw = apply(edits)
    try:
        stack_config.load_stack_config(raw, "fuzz")
    except ConfigError as error:
        assert_one_line(error)


@pytest.mark.slow
@settings(FUZZ, max_examples=25)
@given(st.lists(any_edit(), max_size=1), invalid_edit(top_level_keys=False))
@example([], ("set", ("models",), "not json"))
@example([], ("set", ("cluster",), "{"))
def test_program_stops_on_malformed_config_before_any_resource(edits: list[Edit], invalid: Edit) -> None:
    raw = apply(edits, invalid)
    monitor = RecordingMonitor(PlanMocks())
    with pytest.raises(ConfigError) as raised:
        run_program("fuzz", as_pulumi_config(raw), ["tpu-serving:hfToken"], project="tpu-serving", monitor=monitor)
    assert_one_line(raised.value)
    assert monitor.registrations == [], [r.name for r in monitor.registrations]


def test_a_number_too_long_to_print_still_ends_in_the_error() -> None:
    """Python refuses to turn an int of more than 4300 digits into text (sys.get_int_max_str_digits),
    so the error must not print such a value with repr(). Hypothesis cannot print one either, hence
    a plain test."""
    raw = apply([], ("set", ("models", 0, "maxModelLen"), 10**4400))
    with pytest.raises(ConfigError) as raised:
        stack_config.load_stack_config(raw, "fuzz")
    assert_one_line(raised.value)
