"""Every invalid value stops the program with one line naming the key, the value and what is
allowed, before any resource is registered."""

from __future__ import annotations

from typing import Any

import pytest

from components.errors import ConfigError
from conftest import HF_TOKEN, build_config
from offline_plan.harness import PlanMocks, RecordingMonitor, run_program

MODEL = {"name": "llama-70b", "hfId": "meta-llama/Llama-3.1-70B", "generation": "v6e", "topology": "2x4", "maxReplicas": 2}
CLUSTER = {"name": "llm-test", "mode": "standard", "zones": ["us-east5-b"]}


def model(**changes: Any) -> dict[str, Any]:
    return {"tpu-serving:models": [{**MODEL, **changes}]}


CASES: list[tuple[str, dict[str, Any], dict[str, str] | None, str, str]] = [
    ("unknown generation", model(generation="v4"), None, "models[0].generation", "allowed: v5e, v5p, v6e, tpu7x"),
    ("unknown topology", model(topology="3x3"), None, "models[0].topology", "2x4"),
    ("machine cannot form topology", model(machineType="ct6e-standard-1t"), None, "models[0].machineType", "ct6e-standard-1t"),
    ("2x4 on 4-chip VMs is two nodes", model(machineType="ct6e-standard-4t"), None, "models[0].topology", "multi-host"),
    ("multi-host topology", model(topology="4x4"), None, "models[0].topology", "multi-host"),
    ("chips vs tensor parallelism", model(tensorParallelSize=4), None, "models[0].tensorParallelSize", "must equal the chips of 2x4 (8)"),
    (
        "zone without the generation",
        {"tpu-serving:cluster": {**CLUSTER, "zones": ["us-east5-c"]}},
        None,
        "cluster.zones",
        "v6e is offered in",
    ),
    ("zone of another region", {"tpu-serving:cluster": {**CLUSTER, "zones": ["us-central1-b"]}}, None, "cluster.zones[0]", "us-east5"),
    ("max below min replicas", model(minReplicas=3, maxReplicas=2), None, "models[0].maxReplicas", "at least minReplicas (3)"),
    ("zero replicas", model(minReplicas=0), None, "models[0].minReplicas", "from 1 to 100"),
    ("missing project", {"gcp:project": None}, None, "gcp:project", "pulumi config set gcp:project"),
    ("missing region", {"gcp:region": None}, None, "gcp:region", "region"),
    ("no models", {"tpu-serving:models": []}, None, "models", "at least one model"),
    ("typo in a key", model(topolgy="2x4"), None, "models[0].topolgy", "unknown key"),
    ("latest image", model(imageTag="latest"), None, "models[0].imageTag", "pin a release tag"),
    ("duplicate model names", {"tpu-serving:models": [MODEL, MODEL]}, None, "models[1].name", "unique"),
    ("bad model name", model(name="Llama_70B"), None, "models[0].name", "lowercase"),
    ("external without ranges", model(exposure="external"), None, "models[0].sourceRanges", "CIDR"),
    ("external open to the world", model(exposure="external", sourceRanges=["0.0.0.0/0"]), None, "models[0].sourceRanges", "internet"),
    ("external without api key", model(exposure="external", sourceRanges=["203.0.113.0/24"]), None, "apiKey", "--secret apiKey"),
    ("no hf token", {}, {}, "hfToken", "--secret hfToken"),
    ("cluster too old for v6e", {"tpu-serving:cluster": {**CLUSTER, "version": "1.30.5-gke.100"}}, None, "cluster.version", "1.31.2"),
    ("model does not fit the slice", model(topology="2x2"), None, "models[0].topology", "GiB"),
    ("bad capacity", model(capacity="cheap"), None, "models[0].capacity", "spot"),
    ("queued provisioning needs a ProvisioningRequest", model(capacity="queued"), None, "models[0].capacity", "flex-start"),
    ("reservation without name", model(capacity="reservation"), None, "models[0].reservation", "reservation"),
    ("utilization out of range", model(gpuMemoryUtilization=1.5), None, "models[0].gpuMemoryUtilization", "from 0.5 to 0.99"),
    ("startup too short for a compile", model(startupMinutes=10), None, "models[0].startupMinutes", "from 40"),
    ("misspelt stack key", {"tpu-serving:protectdata": True}, None, "tpu-serving:protectdata", "unknown key"),
    ("bad mode", {"tpu-serving:cluster": {**CLUSTER, "mode": "serverless"}}, None, "cluster.mode", "autopilot, standard"),
]


@pytest.mark.parametrize(("case", "overrides", "secrets", "key", "allowed"), CASES, ids=[c[0] for c in CASES])
def test_rejected_with_one_line_and_nothing_registered(
    case: str, overrides: dict[str, Any], secrets: dict[str, str] | None, key: str, allowed: str
) -> None:
    config, secret_keys = build_config(overrides, secrets)
    monitor = RecordingMonitor(PlanMocks())
    with pytest.raises(ConfigError) as raised:
        run_program("test", config, secret_keys, project="tpu-serving", monitor=monitor)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"config error: {key} = ")
    assert allowed in message
    assert monitor.registrations == [], f"{case}: registered {[r.name for r in monitor.registrations]}"


def test_the_good_config_passes() -> None:
    config, secret_keys = build_config({}, {"tpu-serving:hfToken": HF_TOKEN})
    assert len(run_program("test", config, secret_keys, project="tpu-serving").registrations) > 20
