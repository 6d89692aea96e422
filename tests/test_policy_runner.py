"""The pack through the real analyzer protocol: a subprocess started the way the engine starts
it, GetAnalyzerInfo / Configure / Analyze / AnalyzeStack over gRPC with policy config; the
shipped stacks; `python -m policy_runner check`; and the process handling around it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import tool_cli
from components import tokens
from helpers import CLI_TIMEOUT, run_policy_check
from policies import pack
from policy_runner import (
    PackInfo,
    PolicyConfigError,
    PolicyPackError,
    PolicyPackSession,
    Report,
    StackResource,
    Violation,
    load_manifests,
    render,
    start_policy_pack,
)
from policy_runner.manifests import ManifestError, type_token

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "policies" / "config"
SEED = sorted((ROOT / "tests" / "fixtures" / "seed").glob("*.yaml"))
STACK = ROOT / "tests" / "fixtures" / "policy" / "standard-stack.yaml"


@pytest.fixture(scope="module")
def session() -> Iterator[PolicyPackSession]:
    with start_policy_pack(project="tpu-serving", stack="test") as running:
        yield running


def levels(report: Report) -> dict[str, str]:
    return {v.policy_name: v.enforcement_level for v in report.violations}


@pytest.mark.slow
def test_the_pack_describes_itself_over_grpc(session: PolicyPackSession) -> None:
    assert session.pack == PackInfo(pack.NAME, yaml.safe_load((ROOT / "policies" / "PulumiPolicy.yaml").read_text())["version"])
    assert [p.name for p in session.policies] == [p.name for p in pack.POLICIES]
    assert all(p.description for p in session.policies)


@pytest.mark.slow
def test_analyze_and_analyze_stack_follow_the_policy_config(session: PolicyPackSession) -> None:
    seed = load_manifests(SEED)
    session.configure(CONFIGS / "prod.json")
    prod = session.analyze(seed)
    # Resource policies answer Analyze, stack policies AnalyzeStack; both report against the object.
    assert levels(prod) == {
        **dict.fromkeys(("image-tag-pinned", "compile-cache-scale-out", "public-endpoint-auth"), "mandatory"),
        "hf-token-as-file": "advisory",
    }
    assert {v.urn for v in prod.violations} == {
        "urn:pulumi:check::manifests::kubernetes:apps/v1:Deployment::vllm-tpu",
        "urn:pulumi:check::manifests::kubernetes:core/v1:Service::vllm-service",
    }
    assert prod.exit_code == 1
    session.configure(CONFIGS / "dev.json")
    assert levels(session.analyze(seed))["image-tag-pinned"] == "advisory"
    session.configure({"all": "advisory"})
    advisory = session.analyze(seed)
    assert set(levels(advisory).values()) == {"advisory"} and advisory.exit_code == 0
    session.configure({"all": "disabled"})
    assert session.analyze(seed).violations == ()


@pytest.mark.slow
def test_policy_properties_reach_the_pack(session: PolicyPackSession) -> None:
    stack = [StackResource.from_mapping(raw) for raw in yaml.safe_load(STACK.read_text())]
    session.configure({"all": "mandatory", "vllm-minimum-version": {"minimumVersion": "0.30.0"}})
    [violation] = session.analyze(stack).violations
    assert violation.policy_name == "vllm-minimum-version" and "older than the minimum 0.30.0" in violation.detail


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"image-tag-pined": "advisory"}, "image-tag-pined: no such policy"),
        ({"image-tag-pinned": "warn"}, "'warn' is not one of advisory"),
        ({"vllm-minimum-version": {"minimumVersion": "latest"}}, "vllm-minimum-version: 'latest' does not match"),
        ({"all": {"minimumVersion": "0.30.0"}}, "takes an enforcement level only"),
    ],
)
def test_a_config_the_cli_would_refuse_is_refused(session: PolicyPackSession, config: dict[str, object], problem: str) -> None:
    with pytest.raises(PolicyConfigError, match=problem):
        session.configure(config)


SHIPPED = tool_cli.stack_names(ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("stack", SHIPPED)
def test_the_shipped_stacks_pass_cleanly(session: PolicyPackSession, stack: str) -> None:
    from offline_plan.harness import run_program

    resources = run_program(stack).policy_resources()
    session.configure(CONFIGS / f"{stack}.json")  # an environment is its stack file plus this config
    assert session.analyze(resources).violations == ()
    # Not vacuous: the stack's vLLM pods were read, and the stack-level link that makes scale-out safe is what passes it.
    assert any("google.com/tpu" in str(r.properties) for r in resources if r.type == tokens.DEPLOYMENT)
    autoscaled = any("HorizontalPodAutoscaler" in r.type for r in resources)
    unlinked = [
        StackResource(r.urn, r.type, r.name, r.properties, r.parent) if "HorizontalPodAutoscaler" in r.type else r for r in resources
    ]
    assert {v.policy_name for v in session.analyze(unlinked).violations} == ({"compile-cache-scale-out"} if autoscaled else set())


@pytest.mark.slow
def test_make_check_on_the_seed_fails_and_names_object_policy_and_fix() -> None:
    result = run_policy_check(*SEED, "--config", CONFIGS / "prod.json")
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "Policies:\n    ❌ gke-tpu-vllm@v0.1.0 (local: policies)" in out
    assert "- [mandatory]  image-tag-pinned  (kubernetes:apps/v1:Deployment: vllm-tpu)" in out
    assert "- [mandatory]  public-endpoint-auth  (kubernetes:core/v1:Service: vllm-service)" in out
    assert "Pin vllm/vllm-tpu:v" in out and "cannot create directories" in out
    assert "~ 1 object not checked (kinds PodMonitoring)" in out
    assert out.rstrip().endswith("3 of 4 objects checked, from 3 files: 3 mandatory, 1 advisory violations")


@pytest.mark.slow
def test_make_check_passes_clean_manifests(tmp_path: Path) -> None:
    objects = [
        r["properties"] for r in yaml.safe_load(STACK.read_text()) if r["type"].startswith("kubernetes:") and "Autoscaler" not in r["type"]
    ]
    manifest = tmp_path / "server.yaml"
    manifest.write_text("---\n" + yaml.safe_dump_all(objects) + "---\n")
    result = run_policy_check(manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✅ gke-tpu-vllm@v0.1.0" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("kind: Service\nmetadata: {name: a\n", "invalid YAML at line 3"),
        ("- just\n- a list\n", "document 1 is not a Kubernetes object"),
    ],
)
def test_make_check_rejects_what_is_not_kubernetes_yaml(tmp_path: Path, content: str, problem: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    result = run_policy_check(bad)
    assert result.returncode == 2
    assert result.stdout == "" and result.stderr.count("\n") == 1 and problem in result.stderr


@pytest.mark.slow
def test_make_check_rejects_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"all": "strict"}')
    result = run_policy_check(*SEED, "--config", config)
    assert result.returncode == 2 and "'strict' is not one of" in result.stderr


@pytest.mark.slow
def test_importing_the_policy_modules_starts_no_server() -> None:
    modules = "policies, policies.pack, policies.k8s, policies.tpu, policies.workload, policies.identity, policy_runner"
    result = subprocess.run(
        [sys.executable, "-c", f"import {modules}; print('imported')"], cwd=ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT
    )
    assert (result.returncode, result.stdout) == (0, "imported\n"), result.stderr


def fake_pack(directory: Path, body: str) -> Path:
    directory.mkdir()
    (directory / "PulumiPolicy.yaml").write_text("runtime: python\nversion: 9.9.9\n")
    (directory / "__main__.py").write_text(f"import os, pathlib\npathlib.Path('pid').write_text(str(os.getpid()))\n{textwrap.dedent(body)}")
    return directory


def gone(pid_file: Path) -> bool:
    if not pid_file.exists():
        return True  # stopped before it got as far as writing its pid
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # An orphan killed in a container whose init never reaps stays a zombie: dead all the same.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.slow
def test_the_pack_process_is_stopped_after_a_session(tmp_path: Path) -> None:
    directory = fake_pack(
        tmp_path / "pack",
        """
        from pulumi_policy import PolicyPack, ResourceValidationPolicy
        PolicyPack("fake", [ResourceValidationPolicy("never", "Never reports.", lambda args, report: None)])
    """,
    )
    with start_policy_pack(directory, project="p", stack="s") as running:
        assert running.pack == PackInfo("fake", "9.9.9")
        assert not gone(directory / "pid")
    assert gone(directory / "pid")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_the_pack_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    directory = fake_pack(
        tmp_path / "pack",
        """
        from pulumi_policy import PolicyPack, ResourceValidationPolicy
        PolicyPack("fake", [ResourceValidationPolicy("never", "Never reports.", lambda args, report: None)])
    """,
    )
    starter = f"""
import os, pathlib, signal
from policy_runner.session import start_policy_pack
with start_policy_pack(pathlib.Path({str(directory)!r}), project="p", stack="s"):
    os.kill(os.getpid(), signal.SIGKILL)
"""
    started = subprocess.run([sys.executable, "-c", starter], cwd=ROOT, timeout=120, check=False)
    assert started.returncode == -signal.SIGKILL and (directory / "pid").exists()
    deadline = time.monotonic() + 10
    while not gone(directory / "pid") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(directory / "pid")


@pytest.mark.slow
def test_a_pack_that_dies_at_start_is_reported_with_its_error(tmp_path: Path) -> None:
    directory = fake_pack(tmp_path / "pack", "raise RuntimeError('no pack here')\n")
    with (
        # 1, or -6 when grpc's threads abort the interpreter on its way out: what matters is the error.
        pytest.raises(PolicyPackError, match=r"exited with -?[0-9]+ before serving[\s\S]*no pack here"),
        start_policy_pack(directory, project="p", stack="s"),
    ):
        pass


@pytest.mark.slow
def test_a_pack_that_never_serves_is_killed_after_the_timeout(tmp_path: Path) -> None:
    directory = fake_pack(tmp_path / "pack", "import time\ntime.sleep(600)\n")
    with (
        pytest.raises(PolicyPackError, match="printed no port within 1 s"),
        start_policy_pack(directory, project="p", stack="s", start_timeout=1),
    ):
        pass
    assert gone(directory / "pid")


def violation(level: str, policy: str, urn: str) -> Violation:
    return Violation("gke-tpu-vllm", "0.1.0", policy, "Says what.", level, "high", "Says what.\nWhat is wrong; the fix.", urn)


def test_the_report_reads_like_pulumi_preview() -> None:
    deployment = "urn:pulumi:s::p::tpu-serving:index:VllmServer$kubernetes:apps/v1:Deployment::llama"
    report = Report(PackInfo("gke-tpu-vllm", "0.1.0"), "p", "s", (violation("mandatory", "b", deployment), violation("advisory", "z", "")))
    assert render(report) == textwrap.dedent("""\
        Policies:
            ❌ gke-tpu-vllm@v0.1.0 (local: policies)
                - [advisory]  z  (pulumi:pulumi:Stack: p-s)
                  Says what.
                  What is wrong; the fix.
                - [mandatory]  b  (kubernetes:apps/v1:Deployment: llama)
                  Says what.
                  What is wrong; the fix.
        """)
    assert report.exit_code == 1 and report.violations[0].detail == "What is wrong; the fix."
    advisory_only = Report(report.pack, "p", "s", report.violations[1:])
    assert advisory_only.exit_code == 0 and "⚠️ gke-tpu-vllm@v0.1.0" in render(advisory_only)


def test_manifests_become_resources_like_a_programs(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        textwrap.dedent("""\
        ---
        apiVersion: v1
        kind: List
        items:
          - {apiVersion: v1, kind: Service, metadata: {name: web, namespace: prod}}
          - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: deny}}
        ---
    """)
    )
    resources = load_manifests([manifest])
    assert [r.urn for r in resources] == [
        "urn:pulumi:check::manifests::kubernetes:core/v1:Service::prod/web",
        "urn:pulumi:check::manifests::kubernetes:networking.k8s.io/v1:NetworkPolicy::deny",
    ]
    assert type_token("monitoring.googleapis.com/v1", "PodMonitoring") == "kubernetes:monitoring.googleapis.com/v1:PodMonitoring"
    with pytest.raises(ManifestError, match="Service prod/web appears twice"):
        load_manifests([manifest, manifest])
