"""`make plan`: the real program under mocks, the plan files, and the policy pack over gRPC."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import tokens

# Every test runs `python -m offline_plan` in a subprocess: the slow tier (make test-full); the plan's
# pieces are in the fast tier (test_plan_schemas, test_plan_graph, test_specs, test_e2e's plan checks).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def plan(stack: str, out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offline_plan", "--stack", stack, "--out", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def prod_plan(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("plan")
    result = plan("prod", out, env={"PLAN_SECRET_HFTOKEN": "hf_localValueNeverWritten42"})
    return result, out / "prod"


def test_prod_plan_passes_and_prints_the_tree(prod_plan: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, _ = prod_plan
    assert result.returncode == 0, result.stderr + result.stdout
    assert tokens.NODE_POOL in result.stdout
    assert "machineType=ct6e-standard-8t" in result.stdout
    assert "to create" in result.stdout
    assert "Policies:" in result.stdout


def test_plan_json_is_shaped_like_preview_json(prod_plan: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    document = json.loads((prod_plan[1] / "plan.json").read_text())
    steps = document["steps"]
    assert steps[0]["newState"]["type"] == tokens.STACK
    assert {s["op"] for s in steps} == {"create"}
    assert document["changeSummary"] == {"create": len(steps)}
    by_type: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        assert set(step["newState"]) >= {"type", "urn", "inputs"}
        by_type.setdefault(step["newState"]["type"], []).append(step)
    deployment = next(s for s in by_type[tokens.DEPLOYMENT] if "VllmServer" in s["urn"] and "llama-70b" in s["urn"])
    hpa = next(s for s in by_type[tokens.HPA] if s["urn"].endswith("llama-70b"))
    assert deployment["urn"] in hpa["newState"]["dependencies"]
    assert all(s["provider"].startswith("urn:pulumi:prod::tpu-serving::") for s in by_type[tokens.DEPLOYMENT])
    assert by_type[tokens.BUCKET][0]["newState"]["protect"] is True
    assert document["policyResults"]["violations"] == []


def test_plan_is_deterministic(prod_plan: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path) -> None:
    again = plan("prod", tmp_path, env={"PLAN_SECRET_HFTOKEN": "hf_localValueNeverWritten42"})
    assert again.returncode == 0, again.stderr
    first, second = prod_plan[1], tmp_path / "prod"
    assert (first / "plan.json").read_bytes() == (second / "plan.json").read_bytes()
    names = sorted(p.relative_to(first) for p in (first / "manifests").rglob("*.yaml"))
    assert names == sorted(p.relative_to(second) for p in (second / "manifests").rglob("*.yaml"))
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)


def test_manifests_are_applyable_and_hold_no_secret(prod_plan: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    manifests = sorted((prod_plan[1] / "manifests").rglob("*.yaml"))
    assert len(manifests) > 20
    kinds = set()
    for path in manifests:
        obj = yaml.safe_load(path.read_text())
        assert {"apiVersion", "kind", "metadata"} <= set(obj)
        kinds.add(obj["kind"])
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodMonitoring", "NetworkPolicy", "Secret"} <= kinds
    for path in prod_plan[1].rglob("*"):
        if path.is_file():
            assert "hf_localValueNeverWritten42" not in path.read_text(errors="replace"), path
    secret = yaml.safe_load((prod_plan[1] / "manifests" / "vllm-llama-70b" / "secret-hf-token.yaml").read_text())
    assert "not decrypted offline" in json.dumps(secret)


def test_placeholders_are_marked(prod_plan: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    text = (prod_plan[1] / "plan.json").read_text()
    assert "projects/PLACEHOLDER-project-number/locations/global" in text
    assert "PLACEHOLDER-load-balancer-ip" not in text, "outputs are not inputs: plan.json holds what is sent"


def _project_with(tmp_path: Path, stack: str, config: dict[str, Any]) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("__main__.py", "Pulumi.yaml"):
        shutil.copy(ROOT / name, project / name)
    (project / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))
    return project


def test_a_policy_violation_fails_the_plan_through_grpc(tmp_path: Path) -> None:
    prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    models = prod["tpu-serving:models"]
    models[0]["imageTag"] = "v0.21.0"  # valid config, but older than the advisory's fixed release
    project = _project_with(tmp_path, "old", {**prod, "tpu-serving:models": models})
    result = plan("old", tmp_path / "out", "--project-dir", str(project), "--policy-config", str(ROOT / "policies/config/prod.json"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[mandatory]  vllm-minimum-version" in result.stdout
    violations = json.loads((tmp_path / "out" / "old" / "plan.json").read_text())["policyResults"]["violations"]
    assert {v["policy"] for v in violations} == {"vllm-minimum-version"}


def test_bad_config_is_one_line_and_no_plan(tmp_path: Path) -> None:
    project = _project_with(tmp_path, "bad", {"gcp:project": "acme-llm-test", "gcp:region": "us-east5", "tpu-serving:models": []})
    result = plan("bad", tmp_path / "out", "--project-dir", str(project))
    assert result.returncode == 2, "bad input exits 2; 1 is a policy violation"
    assert result.stderr.strip().splitlines() == ["config error: cluster.zones = []: list at least one zone of us-east5"]
    assert not (tmp_path / "out" / "bad").exists()


def test_unknown_stack_is_a_clear_error(tmp_path: Path) -> None:
    result = plan("nosuch", tmp_path)
    assert result.returncode == 2
    assert "Pulumi.nosuch.yaml" in result.stderr and "dev" in result.stderr


def test_secure_values_become_a_marker_with_a_note(tmp_path: Path) -> None:
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    ciphertext = "v1:Zm9yLXRlc3Rz:c2VjcmV0LWJ5dGVzLW5vdC1yZWFs"
    project = _project_with(tmp_path, "enc", {**dev, "tpu-serving:hfToken": {"secure": ciphertext}})
    result = plan("enc", tmp_path / "out", "--project-dir", str(project), "--policy-config", str(ROOT / "policies/config/dev.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tpu-serving:hfToken: encrypted in Pulumi.enc.yaml; cannot decrypt offline" in result.stdout
    written = "".join(p.read_text() for p in (tmp_path / "out" / "enc").rglob("*") if p.is_file() and p.suffix in (".json", ".yaml"))
    assert ciphertext not in written
    assert "[secret: not decrypted offline]" in written
