"""`make e2e` against fake `pulumi`, `kubectl`, `gcloud` and `gke-gcloud-auth-plugin` first on PATH
(no CLI, no cloud here), and `python -m e2e.compare_preview` against the real offline plan.

The fakes record their argv and answer canned JSON; the fake `kubectl port-forward` runs the fake
vLLM test double on the forwarded port, so the wait and the load test are real HTTP."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tool_cli
from components import tokens
from e2e import cli
from e2e import compare_preview as cp
from helpers import shipped_run
from offline_plan import render
from offline_plan.harness import PLACEHOLDER, SECRET_MARKER

ROOT = Path(__file__).resolve().parent.parent
FAKE_VLLM = ROOT / "tests" / "fake_vllm.py"
KUBE_TOKEN = "kube-token-NEVER-PRINT-1234"
ADC_TOKEN = "ya29.adc-token-NEVER-PRINT"
API_KEY = "sk-api-key-NEVER-PRINT"
SECRETS = (KUBE_TOKEN, ADC_TOKEN, API_KEY)

FAKE = """\
#!{python}
# Fake {tool}: records its argv, answers from the files and env the test prepared.
import json, os, sys
tool, args = {tool!r}, sys.argv[1:]
here = os.environ["E2E_FAKE_DIR"]
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps([tool, *args]) + "\\n")
failing = os.environ.get("E2E_FAKE_FAIL", "").split(",")
def answer(name):
    with open(os.path.join(here, name)) as f:
        sys.stdout.write(f.read())
if tool == "pulumi":
    if args[0] in failing:
        sys.exit(255)
    if args[:2] == ["stack", "output"]:
        answer("kubeconfig.json" if "kubeconfig" in args else "outputs.json")
    elif args[:2] == ["config", "get"]:
        print({api_key!r})
elif tool == "kubectl":
    args = args[2:]  # --kubeconfig PATH
    assert open(sys.argv[2]).read() == {kubeconfig!r}, "not the stack's kubeconfig"
    if "port-forward" in args:
        if "port-forward" in failing:
            sys.exit("error: unable to forward port because pod is not running")
        port = args[-1].split(":")[0]
        os.execv(sys.executable, [sys.executable, {fake_vllm!r}, "--port", port])
    answer("hpa-" + os.environ["E2E_FAKE_HPA"] + ".json" if "hpa" in args else "deployment.json")
elif tool == "gcloud":
    if "print-access-token" in args:
        if "adc" in failing:
            sys.exit(1)
        print({adc_token!r})
    if args[:2] == ["storage", "ls"]:
        print(args[2] + "/models/")
"""

KUBECONFIG = f"apiVersion: v1\nkind: Config\nusers:\n- name: gke\n  user:\n    token: {KUBE_TOKEN}\n"
OUTPUTS: dict[str, Any] = {
    "llama-8b": {
        "namespace": "vllm-llama-8b",
        "bucket": "my-llm-dev-dev-llama-8b",
        "slice": "v6e 1x1 on ct6e-standard-1t",
        "serviceAddress": "10.0.0.7",
        "curl": "curl http://10.0.0.7:8000/v1/completions -H 'Content-Type: application/json' -d '{}'",
    },
    "clusterName": "llm-dev",
    "clusterEndpoint": "203.0.113.9",
    "kubeconfig": "[secret]",
}
DEPLOYMENT = {
    "spec": {"template": {"spec": {"containers": [{"name": "vllm", "startupProbe": {"periodSeconds": 1, "failureThreshold": 30}}]}}}
}
PODS_METRIC = {"type": "Pods", "pods": {"metric": {"name": "vllm:num_requests_waiting"}, "current": {"averageValue": "3"}}}
HPAS: dict[str, Any] = {
    "ok": {"items": [{"metadata": {"name": "vllm"}, "status": {"currentMetrics": [PODS_METRIC]}}]},
    "failing": {
        "items": [
            {
                "metadata": {"name": "vllm"},
                "status": {
                    "conditions": [
                        {"type": "ScalingActive", "status": "False", "reason": "FailedGetPodsMetric", "message": "no metrics returned"}
                    ]
                },
            }
        ]
    },
    "none": {"items": []},
}


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin folder as the whole PATH, holding the four fake tools; returns the fakes' folder."""
    bin_dir, state = tmp_path / "bin", tmp_path / "fake"
    bin_dir.mkdir()
    state.mkdir()
    for tool in ("pulumi", "kubectl", "gcloud", "gke-gcloud-auth-plugin"):
        script = FAKE.format(
            python=sys.executable,
            tool=tool,
            api_key=API_KEY,
            kubeconfig=KUBECONFIG,
            fake_vllm=str(FAKE_VLLM),
            adc_token=ADC_TOKEN,
        )
        (bin_dir / tool).write_text(script)
        (bin_dir / tool).chmod(0o755)
    write_outputs(state, OUTPUTS)
    (state / "kubeconfig.json").write_text(json.dumps(KUBECONFIG))
    (state / "deployment.json").write_text(json.dumps(DEPLOYMENT))
    for name, document in HPAS.items():
        (state / f"hpa-{name}.json").write_text(json.dumps(document))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("E2E_FAKE_DIR", str(state))
    monkeypatch.setenv("E2E_FAKE_HPA", "ok")
    monkeypatch.delenv("E2E_FAKE_FAIL", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    monkeypatch.setattr(cli, "POLL_SECONDS", 0.1)
    return state


def write_outputs(state: Path, outputs: dict[str, Any]) -> None:
    (state / "outputs.json").write_text(json.dumps(outputs))


def calls(state: Path) -> list[list[str]]:
    log = state / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def labelled(state: Path) -> list[str]:
    """Each recorded call as the step it belongs to, repeats collapsed."""
    labels: list[str] = []
    for call in calls(state):
        tool, args = call[0], [a for a in call[1:] if not a.startswith("--") and a != "-o"]
        label = {
            ("pulumi", "up"): "up",
            ("pulumi", "stack"): "outputs",
            ("pulumi", "preview"): "preview",
            ("pulumi", "destroy"): "destroy",
            ("gcloud", "storage"): "empty-bucket",
        }.get((tool, args[0] if args else ""))
        if tool == "kubectl":
            label = "hpa" if "hpa" in call else "wait"
        if label and (not labels or labels[-1] != label):
            labels.append(label)
    return labels


def e2e(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, dict[str, str]]:
    """Runs `python -m e2e` in-process; returns the exit code, all output and the summary rows."""
    code = cli.main(["--stack", "dev", "--loadtest-duration", "0.5", "--hpa-timeout", "1", *argv])
    out, err = capfd.readouterr()
    summary = out[out.rindex("e2e summary") :].splitlines()[2:]
    rows = {}
    for row in summary:
        step, _, rest = row.strip().partition("  ")
        rows[step] = rest.split()[0]
    return code, out + err, rows


def assert_no_secret(output: str) -> None:
    for secret in SECRETS:
        assert secret not in output


@pytest.mark.slow
def test_every_step_in_order_and_all_pass(fakes: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, output, rows = e2e(capfd)
    assert code == 0, output
    assert list(rows) == ["up", "outputs", "wait llama-8b", "loadtest llama-8b", "hpa llama-8b", "preview --expect-no-changes", "destroy"]
    assert set(rows.values()) == {"PASS"}, output
    assert labelled(fakes) == ["up", "outputs", "wait", "hpa", "preview", "outputs", "empty-bucket", "destroy"]
    recorded = calls(fakes)
    assert [
        "pulumi",
        "up",
        "--yes",
        "--stack",
        "dev",
        "--policy-pack",
        "policies",
        "--policy-pack-config",
        "policies/config/dev.json",
    ] in recorded
    assert ["pulumi", "destroy", "--yes", "--stack", "dev"] in recorded
    assert ["gcloud", "storage", "rm", "gs://my-llm-dev-dev-llama-8b/**"] in recorded
    preview = next(c for c in recorded if c[:2] == ["pulumi", "preview"])
    assert {"--expect-no-changes", "--stack", "dev"} <= set(preview)
    # The load test really ran against the forwarded port (the fake vLLM behind the fake kubectl).
    assert "requests" in output.lower()
    assert_no_secret(output)


@pytest.mark.slow
def test_refuses_without_pulumi_on_path(tmp_path: Path) -> None:
    """As a user sees it: one line naming the tool and how to get it, exit 2."""
    result = subprocess.run(
        [sys.executable, "-m", "e2e", "--stack", "dev"],
        cwd=ROOT,
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("e2e: error: pulumi is not on PATH: install the Pulumi CLI")


@pytest.mark.parametrize(
    ("remove", "fail", "expected"),
    [
        (None, "whoami", "`pulumi whoami` failed: run `pulumi login`"),
        ("gcloud", None, "gcloud is not on PATH"),
        (None, "adc", "no GCP credentials: run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS"),
        ("kubectl", None, "kubectl is not on PATH: run `gcloud components install kubectl`"),
        ("gke-gcloud-auth-plugin", None, "gke-gcloud-auth-plugin is not on PATH"),
    ],
)
def test_refuses_without_each_tool_or_credential_before_creating_anything(
    fakes: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, remove: str | None, fail: str | None, expected: str
) -> None:
    if remove:
        (Path(os.environ["PATH"]) / remove).unlink()
    if fail:
        monkeypatch.setenv("E2E_FAKE_FAIL", fail)
    assert cli.main(["--stack", "dev"]) == 2
    out, err = capfd.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and expected in err
    assert not [c for c in calls(fakes) if c[:2] == ["pulumi", "up"]]
    assert_no_secret(err)


@pytest.mark.slow
def test_credentials_file_instead_of_gcloud_login(fakes: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_FAKE_FAIL", "adc")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(fakes / "missing.json"))
    assert cli.main(["--stack", "dev"]) == 2
    assert "GOOGLE_APPLICATION_CREDENTIALS names no file" in capfd.readouterr().err
    (fakes / "missing.json").write_text("{}")
    code, output, _ = e2e(capfd)
    assert code == 0, output


def test_refuses_to_destroy_a_protected_stack(fakes: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--stack", "prod"]) == 2
    err = capfd.readouterr().err
    assert "stack prod protects what e2e would destroy (tpu-serving:protectData: true, cluster.deletionProtection" in err
    assert calls(fakes) == []


def test_a_stack_file_the_program_would_refuse_stops_e2e_first(
    fakes: Path, capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A misspelt protectData would leave its default (false) in force: refused before `pulumi up`.
    root = tmp_path / "repo"
    (root / "policies" / "config").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root)
    shutil.copy(ROOT / "policies" / "config" / "dev.json", root / "policies" / "config")
    stack = (ROOT / "Pulumi.dev.yaml").read_text(encoding="utf-8")
    (root / "Pulumi.dev.yaml").write_text(stack.replace("config:\n", "config:\n  tpu-serving:protectdata: true\n", 1), encoding="utf-8")
    monkeypatch.setattr(cli, "ROOT", root)
    assert cli.main(["--stack", "dev"]) == 2
    err = capfd.readouterr().err
    assert "config error: tpu-serving:protectdata = <value not shown>: unknown key (did you mean protectData?)" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert calls(fakes) == []


def test_unknown_stack_is_bad_input(fakes: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--stack", "nope"]) == 2
    stacks = ", ".join(tool_cli.stack_names(ROOT))
    assert f"no stack file Pulumi.nope.yaml (stacks: {stacks})" in capfd.readouterr().err
    assert calls(fakes) == []


def test_destroy_runs_when_up_fails(fakes: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_FAKE_FAIL", "up")
    code, _, rows = e2e(capfd)
    assert code == 1
    assert rows == {"up": "FAIL", "outputs": "SKIP", "preview --expect-no-changes": "SKIP", "destroy": "PASS"}
    assert labelled(fakes) == ["up", "outputs", "empty-bucket", "destroy"]


@pytest.mark.slow
def test_destroy_runs_when_the_hpa_never_reads_its_metric(
    fakes: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_FAKE_HPA", "failing")
    code, output, rows = e2e(capfd)
    assert code == 1
    assert rows["hpa llama-8b"] == "FAIL" and rows["destroy"] == "PASS"
    assert "hpa/vllm: ScalingActive=False FailedGetPodsMetric: no metrics returned" in output
    assert labelled(fakes)[-1] == "destroy"


@pytest.mark.slow
def test_a_model_without_an_hpa_is_skipped_not_failed(
    fakes: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_FAKE_HPA", "none")
    code, _, rows = e2e(capfd)
    assert code == 0
    assert rows["hpa llama-8b"] == "SKIP"


@pytest.mark.slow
def test_drift_on_the_second_preview_fails_the_run(fakes: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_FAKE_FAIL", "preview")
    code, output, rows = e2e(capfd)
    assert code == 1
    assert rows["preview --expect-no-changes"] == "FAIL" and rows["destroy"] == "PASS"
    assert "a second run would change the stack" in output


@pytest.mark.slow
def test_keep_skips_destroy(fakes: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, _, rows = e2e(capfd, "--keep")
    assert code == 0
    assert rows["destroy"] == "SKIP"
    assert not [c for c in calls(fakes) if c[:2] == ["pulumi", "destroy"] or (c[0] == "gcloud" and "rm" in c)]


@pytest.mark.slow
def test_a_server_that_never_answers_fails_its_wait(
    fakes: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = {"periodSeconds": 1, "failureThreshold": 2}
    (fakes / "deployment.json").write_text(json.dumps({"spec": {"template": {"spec": {"containers": [{"startupProbe": probe}]}}}}))
    # No ready pod: the forward exits at once, every time it is restarted.
    monkeypatch.setenv("E2E_FAKE_FAIL", "port-forward")
    code, output, rows = e2e(capfd)
    assert code == 1
    assert rows["wait llama-8b"] == "FAIL" and rows["loadtest llama-8b"] == "SKIP" and rows["destroy"] == "PASS"
    assert "no answer on /health within 2s (the startup probe's allowance); port-forward: error: unable to forward port" in output
    assert sum("port-forward" in c for c in calls(fakes)) > 2, "the forward is restarted while waiting"


@pytest.mark.slow
def test_an_external_model_gets_the_api_key_without_printing_it(fakes: Path, capfd: pytest.CaptureFixture[str]) -> None:
    outputs = copy.deepcopy(OUTPUTS)
    outputs["llama-8b"]["curl"] += ' -H "Authorization: Bearer $VLLM_API_KEY"'
    write_outputs(fakes, outputs)
    code, output, _ = e2e(capfd)
    assert code == 0, output
    assert ["pulumi", "config", "get", "tpu-serving:apiKey", "--stack", "dev"] in calls(fakes)
    assert_no_secret(output)


def test_hpa_problems() -> None:
    assert cli.hpa_problem(HPAS["ok"]["items"][0]) is None
    assert (
        cli.hpa_problem({"metadata": {"name": "h"}, "status": {"currentMetrics": [{"type": "Pods", "pods": {}}]}})
        == "hpa/h: no current metric value"
    )
    assert cli.current_value({"type": "Object", "object": {"current": {"value": "0.8"}}}) == "0.8"


# --- compare_preview ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plan() -> dict[str, Any]:
    return render.plan_document(shipped_run("dev"), None, [])


def as_preview(plan: dict[str, Any]) -> dict[str, Any]:
    """What `pulumi preview --json --show-sames` should print for the same program (see the module
    docstring of e2e.compare_preview): secrets masked, cloud-computed values unknown, provider
    defaults listed, and the engine's default provider."""

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        if value == SECRET_MARKER:
            return "[secret]"
        if isinstance(value, str) and PLACEHOLDER in value:
            return cp.UNKNOWN
        return value

    preview = {"steps": [{**step, "op": "same", "newState": convert(step["newState"])} for step in plan["steps"]]}
    bucket = next(s for s in preview["steps"] if s["newState"]["type"] == tokens.BUCKET)
    bucket["newState"]["inputs"] |= {"__defaults": ["softDeletePolicy"], "softDeletePolicy": {"retentionDurationSeconds": 604800}}
    provider = "urn:pulumi:dev::tpu-serving::pulumi:providers:gcp::default_10_2_0"
    preview["steps"].append({"op": "same", "urn": provider, "newState": {"type": tokens.GCP_PROVIDER, "inputs": {"version": "10.2.0"}}})
    return preview


def compare(capsys: pytest.CaptureFixture[str], tmp_path: Path, plan: dict[str, Any], preview: dict[str, Any]) -> tuple[int, str]:
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "preview.json").write_text(json.dumps(preview))
    code = cp.main([str(tmp_path / "plan.json"), str(tmp_path / "preview.json")])
    return code, capsys.readouterr().out


def test_the_plan_matches_a_preview_of_the_same_program(plan: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preview = as_preview(plan)
    # The conversion must have had something to ignore, or this test would prove nothing.
    text = json.dumps(preview)
    assert cp.UNKNOWN in text and '"[secret]"' in text
    assert compare(capsys, tmp_path, plan, preview) == (0, f"compare_preview: {tmp_path}/plan.json matches {tmp_path}/preview.json\n")


def test_an_extra_resource_is_named(plan: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preview = as_preview(plan)
    urn = "urn:pulumi:dev::tpu-serving::kubernetes:core/v1:ConfigMap::stray"
    preview["steps"].append({"op": "create", "urn": urn, "newState": {"type": tokens.CONFIG_MAP, "inputs": {}}})
    assert compare(capsys, tmp_path, plan, preview) == (1, f"only in the preview: {urn}\n")


def test_a_missing_resource_is_named_and_deletes_do_not_count(
    plan: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preview = as_preview(plan)
    gone = preview["steps"][-2]
    gone["op"] = "delete"
    code, out = compare(capsys, tmp_path, plan, preview)
    assert (code, out) == (1, f"only in the plan: {gone['urn']}\n")


def test_a_changed_input_is_named_with_its_path(plan: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preview = as_preview(plan)
    step = next(s for s in preview["steps"] if s["newState"]["type"] == tokens.DEPLOYMENT)
    container = step["newState"]["inputs"]["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "vllm/vllm-tpu:latest"
    code, out = compare(capsys, tmp_path, plan, preview)
    assert code == 1
    assert out.startswith(f'changed input: {step["urn"]}: spec.template.spec.containers[0].image: plan "vllm/vllm-tpu:')
    assert out.endswith(', preview "vllm/vllm-tpu:latest"\n') and out.count("\n") == 1


def test_an_input_only_the_preview_has_is_a_difference_unless_a_provider_default(
    plan: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preview = as_preview(plan)
    step = next(s for s in preview["steps"] if s["newState"]["type"] == tokens.BUCKET)
    step["newState"]["inputs"]["__defaults"] = []
    code, out = compare(capsys, tmp_path, plan, preview)
    assert code == 1
    assert (
        out == f'changed input: {step["urn"]}: softDeletePolicy: in the preview ({{"retentionDurationSeconds": 604800}}), not in the plan\n'
    )


def test_placeholders_and_secrets_are_ignored_but_not_known_values(plan: dict[str, Any]) -> None:
    assert not list(
        cp.value_differences("", {"a": f"{PLACEHOLDER}-endpoint", "s": SECRET_MARKER}, {"a": "203.0.113.9", "s": "[secret]"}, False)
    )
    # Unknown in the preview: computed on apply, even where the plan has no such input.
    assert not list(cp.value_differences("", {"a": "x"}, {"a": "[secret]", "b": cp.UNKNOWN}, False))
    assert list(cp.value_differences("", {"a": ["x", "y"]}, {"a": ["x", "z"]}, False)) == ['a[1]: plan "y", preview "z"']
    assert list(cp.value_differences("", {"a": "x"}, {"a": "x", "version": "1"}, True)) == []
    assert list(cp.value_differences("", {"a": "x"}, {"a": "x", "version": "1"}, False)) == [
        'version: in the preview ("1"), not in the plan'
    ]


def test_unreadable_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "preview.json").write_text("{not json")
    assert cp.main([str(tmp_path / "preview.json"), str(tmp_path / "preview.json")]) == 2
    assert (
        capsys.readouterr().err
        == f"compare_preview: error: {tmp_path}/preview.json is not JSON (line 1: Expecting property name enclosed in double quotes)\n"
    )
    (tmp_path / "preview.json").write_text("{}")
    assert cp.main([str(tmp_path / "preview.json"), str(tmp_path / "preview.json")]) == 2
    assert "plan: no steps[]" in capsys.readouterr().err
