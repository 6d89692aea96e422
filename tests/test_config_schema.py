"""The config schema declared once (issue 18): the keys, the README's table and the number parser
all come from the fields of components/config.py, and the values stay frozen."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components import config as stack_config
from components.coerce import real_number, whole_number
from components.errors import ConfigError
from policies.k8s import UNKNOWN, whole
from recommend import BadInput, _request

ROOT = Path(__file__).resolve().parent.parent
RAW: dict[str, Any] = {
    "project": "acme-llm-test",
    "region": "us-east5",
    "cluster": {"name": "llm-test", "zones": ["us-east5-b"]},
    "models": [{"name": "llama-8b", "hfId": "meta-llama/Llama-3.1-8B", "topology": "1x1"}],
}


def load(**model: Any) -> stack_config.StackConfig:
    raw = copy.deepcopy(RAW)
    raw["models"][0].update(model)
    return stack_config.load_stack_config(raw, "t")


def refusal(**model: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        load(**model)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("config error: "), message
    return message


# --- one number parser ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "whole", "real"),
    [
        ("²", None, None),
        ("٣", None, None),
        ("١٢٣", None, None),
        (" 3 ", 3, 3.0),
        ("+5", 5, 5.0),
        ("-0", 0, 0.0),
        ("3.0", None, 3.0),
        ("1e3", None, 1000.0),
        ("1_000", None, None),
        ("0x10", None, None),
        ("nan", None, None),
        ("inf", None, None),
        ("1e309", None, None),
        ("", None, None),
        (True, None, None),
        (False, None, None),
        (None, None, None),
        (3.0, None, 3.0),
        (7, 7, 7.0),
        (10**400, 10**400, None),
        ("9" * 4400, None, None),
        ("9" * 30, int("9" * 30), 1e30),
        ([3], None, None),
    ],
)
def test_the_one_number_parser(value: Any, whole: int | None, real: float | None) -> None:
    assert whole_number(value) == whole
    assert real_number(value) == real


def test_the_pack_reads_the_wires_doubles_with_the_same_parser() -> None:
    assert whole_number(3.0, integral_floats=True) == 3
    assert whole_number(3.5, integral_floats=True) is None
    assert [whole(v) for v in ("²", "٣", " 3 ", "3.0", "1e3", True, 8.0, "9" * 4400)] == [None, None, 3, None, None, None, 8, None]
    assert whole(UNKNOWN) is UNKNOWN


@pytest.mark.parametrize("text", ["²", "٣", "3.0", "1e3", "9" * 4400])
def test_recommend_refuses_odd_digits_in_one_line(text: str) -> None:
    with pytest.raises(BadInput) as raised:
        _request(["--model", "meta-llama/Llama-3.1-8B", "--max-model-len", text])
    assert str(raised.value).startswith("--max-model-len = ") and "a whole number from 128 to 1048576" in str(raised.value)
    with pytest.raises(BadInput, match=r"a share from 0\.5 to 0\.99"):
        _request(["--model", "meta-llama/Llama-3.1-8B", "--memory-utilization", "\u0660.\u0669"])


def test_recommend_takes_spaces_and_signs_like_the_config() -> None:
    assert _request(["--model", "meta-llama/Llama-3.1-8B", "--max-model-len", " 8192 "]).max_model_len == 8192
    assert _request(["--model", "meta-llama/Llama-3.1-8B", "--memory-utilization", "9e-1"]).memory_utilization == 0.9


@pytest.mark.parametrize("value", ["²", "٣", "3.0", "1e3", True, 4096.0, 10**40])
def test_config_refuses_what_is_not_a_whole_number(value: Any) -> None:
    message = refusal(maxModelLen=value)
    assert message.startswith("config error: models[0].maxModelLen = ") and "must be a whole number from 128 to 1048576" in message


def test_config_takes_the_text_pulumi_config_set_stores() -> None:
    model = load(maxModelLen=" 8192 ", gpuMemoryUtilization="0.9", maxReplicas="3", allowMultiHost="False").models[0]
    assert (model.max_model_len, model.gpu_memory_utilization, model.max_replicas) == (8192, 0.9, 3)


# --- the schema -----------------------------------------------------------------------------------
def test_the_keys_are_the_schemas_aliases() -> None:
    assert stack_config.MODEL_KEYS[:4] == ("name", "hfId", "generation", "zones")
    assert {"autoscalingMetric", "autoscalingTarget", "tensorParallelSize", "kvCacheDtype"} <= set(stack_config.MODEL_KEYS)
    assert "slice" not in stack_config.MODEL_KEYS and "sizing" not in stack_config.MODEL_KEYS
    assert stack_config.CLUSTER_KEYS[-1] == "allowBroadRanges" and "extraTpuZones" in stack_config.CLUSTER_KEYS
    assert stack_config.PROJECT_KEYS == ("cluster", "models", "protectData", "bucket", "hfToken", "apiKey")


@pytest.mark.parametrize("cls", [c for c, _ in stack_config.SECTIONS])
def test_every_key_has_a_description_and_a_camel_case_alias(cls: type) -> None:
    for name, info in cls.__pydantic_fields__.items():  # type: ignore[attr-defined]
        assert info.description, f"{cls.__name__}.{name} has no description"
        assert info.alias and "_" not in info.alias, f"{cls.__name__}.{name}: alias {info.alias!r}"


@pytest.mark.parametrize(
    ("change", "key", "says"),
    [
        ({"hf_id": "meta-llama/Llama-3.1-8B"}, "models[0].hf_id", "unknown key"),  # the attribute's name is not a key
        ({"slice": "1x1"}, "models[0].slice", "unknown key"),  # nor is a derived value
        ({"maxReplica": 2}, "models[0].maxReplica", "did you mean maxReplicas?"),
        ({"name": None}, "models[0].name", "is required"),
        ({"generation": None}, "models[0].generation", "is required; one of v5e, v5p, v6e, tpu7x"),
        ({"zones": "us-east5-b"}, "models[0].zones", "must be a list"),
        ({"zones": ["us-east5-b", ""]}, "models[0].zones[1]", "must be a non-empty string"),
        ({"sourceRanges": ["10.0.0.1/8"]}, "models[0].sourceRanges[0]", "CIDR block"),
        ({"autoscalingMetric": "kv_cache_usage", "autoscalingTarget": 5}, "models[0].autoscalingTarget", "from 0.01 to 1.0"),
        ({"allowMultiHost": "yes"}, "models[0].allowMultiHost", "must be true or false"),
    ],
)
def test_refusals_name_the_key_in_one_line(change: dict[str, Any], key: str, says: str) -> None:
    message = refusal(**change)
    assert message.startswith(f"config error: {key} = ") and says in message, message


def test_an_unknown_keys_value_is_never_shown() -> None:
    assert refusal(hftoken="not-shown-anywhere") == (
        "config error: models[0].hftoken = <value not shown>: unknown key; allowed: " + ", ".join(stack_config.MODEL_KEYS)
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**RAW, "cluster": ["x"]}, "config error: cluster = ['x']: must be a mapping"),
        ({**RAW, "models": [5]}, "config error: models[0] = 5: must be a mapping"),
        ({**RAW, "models": {}}, "config error: models = {}: must be a list"),
        ({**RAW, "cluster": {**RAW["cluster"], "extraTpuZones": {"v4": []}}}, "config error: cluster.extraTpuZones.v4 = <value not shown>"),
        ({k: v for k, v in RAW.items() if k != "models"}, "config error: models = []: list at least one model to serve"),
    ],
)
def test_wrong_shapes_are_one_line(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        stack_config.load_stack_config(raw, "t")
    assert str(raised.value).startswith(message), str(raised.value)


def test_the_values_are_frozen_and_derived_once() -> None:
    config = load(maxReplicas=2)
    model = config.models[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.max_replicas = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.cluster.zones = ()  # type: ignore[misc]
    assert (model.zones, model.slice.topology, model.tensor_parallel_size, model.target) == (("us-east5-b",), "1x1", 1, 10.0)
    assert config.stack == "t" and config.bucket.location == "US-EAST5"
    assert set(config.cluster.extra_tpu_zones) == {"v5e", "v5p", "v6e", "tpu7x"}
    network = config.cluster.authorized_networks[0]
    assert (network.name, network.cidr) == ("private-10", "10.0.0.0/8")
    # dataclasses.replace still builds a value (the program's own, not read from a stack file).
    assert dataclasses.replace(model, min_replicas=2).min_replicas == 2


# --- the README's table ---------------------------------------------------------------------------
def test_the_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(stack_config.TABLE_BEGIN) == 1 and readme.count(stack_config.TABLE_END) == 1
    assert readme == stack_config.readme_with_table(readme), "the README's config table is stale: python -m components.config --readme"


def test_the_table_has_a_row_per_key() -> None:
    keys = [row[0] for row in stack_config.table_rows()]
    assert [k for k in keys if k.startswith("models[].")] == [f"models[].{k}" for k in stack_config.MODEL_KEYS]
    assert [k for k in keys if k.startswith("cluster.") and "[]" not in k] == [f"cluster.{k}" for k in stack_config.CLUSTER_KEYS]
    assert keys[:2] == ["gcp:project", "gcp:region"] and keys[-2:] == ["tpu-serving:hfToken", "tpu-serving:apiKey"]
    rows = {row[0]: row for row in stack_config.table_rows()}
    assert rows["models[].maxModelLen"][1:3] == ("4096", "whole number, 128-1048576")
    assert "queued" not in rows["models[].capacity"][2]


@pytest.mark.slow
def test_markdown_from_the_command_line() -> None:
    result = subprocess.run([sys.executable, "-m", "components.config", "--markdown"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == stack_config.markdown_table()
