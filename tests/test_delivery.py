"""Delivery: the GitHub workflows, the stack files and their policy configs, and the operating doc
agree with each other and with the Makefile. GitHub only reports a broken workflow after a push,
so everything that can be checked offline is checked here."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline_plan.harness import run_program

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
POLICY_CONFIGS = ROOT / "policies" / "config"
OPERATING = ROOT / "README.md"
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
# A tag such as v5 or v5.0.1, or a full commit SHA: never a branch that moves under the workflow.
PINNED_REF = re.compile(r"^(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path.name}: not a mapping"
    # YAML 1.1 reads the key `on` as True; GitHub reads YAML 1.2.
    if True in document:
        document["on"] = document.pop(True)
    return document


def steps(workflow: dict[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for job_name, job in workflow["jobs"].items():
        for index, step in enumerate(job.get("steps", [])):
            yield job_name, index, step


def make_targets_in(script: str) -> list[str]:
    """The targets of every `make` command in a shell script; `${{ }}` expressions and variable
    assignments (STACK=...) are not targets."""
    targets = []
    for line in EXPRESSION.sub("EXPR", script).splitlines():
        for command in re.split(r"&&|\|\||;|\|", line):
            if re.match(r"\s*make\s", command + " "):
                words = shlex.split(command, comments=True)
                targets += [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    return targets


def workflow_env(value: str, env: dict[str, Any]) -> str:
    """`${{ env.NAME }}` replaced by the workflow-level value, as the runner would."""
    return EXPRESSION.sub(lambda m: str(env[m.group(1).strip().removeprefix("env.")]), value)


def makefile_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([^\s#=:][^=:]*?)\s*:(?!=)", line)
        if match:
            targets |= {t for t in match.group(1).split() if not t.startswith(".") and "$" not in t}
    return targets


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict[str, Any]]:
    return {path.name: load(path) for path in WORKFLOWS}


def test_the_workflows_exist_and_trigger_as_intended(workflows: dict[str, dict[str, Any]]) -> None:
    assert set(workflows) == {"preview.yml", "deploy.yml", "e2e.yml", "plan-drift.yml"}
    assert "pull_request" in workflows["preview.yml"]["on"]
    assert workflows["deploy.yml"]["on"]["push"]["branches"] == ["main"]
    e2e = workflows["e2e.yml"]["on"]
    assert set(e2e["workflow_dispatch"]["inputs"]) == {"stack", "keep"}
    assert e2e["workflow_dispatch"]["inputs"]["keep"]["default"] is False
    assert e2e["schedule"] and workflows["plan-drift.yml"]["on"]["schedule"]


def test_workflows_match_the_github_workflow_schema() -> None:
    # check-jsonschema ships the schema (vendor.github-workflows): no network involved.
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_yaml_merge_keys() -> None:
    """GitHub accepts anchors and aliases but rejects the merge key `<<`, which PyYAML and the
    schema check would both let through."""

    def merge_keys(node: yaml.Node | None) -> Iterator[yaml.Node]:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge":
                    yield key
                yield from merge_keys(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                yield from merge_keys(item)

    for path in WORKFLOWS:
        found = list(merge_keys(yaml.compose(path.read_text())))
        assert not found, f"{path.name}: merge key at line {found[0].start_mark.line + 1}"


def test_every_action_is_pinned(workflows: dict[str, dict[str, Any]]) -> None:
    for name, workflow in workflows.items():
        for job, index, step in steps(workflow):
            # A local action (./path) is pinned by the commit it is checked out with.
            if "uses" in step and not step["uses"].startswith("./"):
                ref = step["uses"].rpartition("@")[2]
                assert PINNED_REF.match(ref), f"{name} {job} step {index}: {step['uses']} is not pinned to a version tag or commit"


def test_every_make_target_called_exists(workflows: dict[str, dict[str, Any]]) -> None:
    known = makefile_targets()
    called = {
        (name, target)
        for name, workflow in workflows.items()
        for _, _, step in steps(workflow)
        for target in make_targets_in(step.get("run", ""))
    }
    assert {target for _, target in called} >= {"test", "plans", "install", "e2e", "plan"}
    missing = sorted(f"{name}: make {target}" for name, target in called if target not in known)
    assert not missing, f"not targets of the Makefile ({', '.join(sorted(known))}): {missing}"


def test_make_target_parser() -> None:
    assert make_targets_in('make plan STACK="$STACK" && make -j2 test lint  # make nothing') == ["plan", "test", "lint"]
    assert make_targets_in("make plan STACK=${{ matrix.stack }}") == ["plan"]
    assert {"plan", "plans", "test", "install", "destroy"} <= makefile_targets()
    assert not {"PHONY", ".PHONY", "VENV", "PY"} & makefile_targets()


def test_pulumi_steps_run_the_policy_pack_with_a_pinned_cli_after_install(workflows: dict[str, dict[str, Any]]) -> None:
    """A preview or up without the pack would skip the policies; the venv must exist before the
    action runs the program and the pack from it."""
    seen = 0
    for name, workflow in workflows.items():
        for job, index, step in steps(workflow):
            if not step.get("uses", "").startswith("pulumi/actions@"):
                continue
            seen += 1
            inputs = step["with"]
            where = f"{name} {job} step {index}"
            version = workflow_env(inputs["pulumi-version"], workflow["env"])
            assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{where}: pulumi-version {version!r} is not an exact release"
            if "command" not in inputs:
                # Installs the CLI only; the `make e2e` or `pulumi preview --json` after it runs it.
                continue
            assert inputs["command"] in ("preview", "up"), where
            assert inputs["policyPacks"] == "policies", where
            assert re.fullmatch(r"policies/config/\$\{\{ (matrix\.stack|env\.STACK) \}\}\.json", inputs["policyPackConfigs"]), where
            assert inputs["stack-name"] == inputs["policyPackConfigs"][len("policies/config/") : -len(".json")], where
            earlier = [s.get("run", "") for s in workflow["jobs"][job]["steps"][:index]]
            assert any("install" in make_targets_in(run) for run in earlier), f"{where}: no `make install` before it"
    assert seen >= 2


def test_preview_lists_exactly_the_stack_files(workflows: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """The preview matrix comes from this script: run it as the runner would."""
    script = next(step["run"] for _, _, step in steps(workflows["preview.yml"]) if step.get("id") == "list")
    output = tmp_path / "github_output"
    subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, env={**os.environ, "GITHUB_OUTPUT": str(output)}, check=True, timeout=30)
    key, _, value = output.read_text().strip().partition("=")
    assert key == "names"
    assert json.loads(value) == STACKS


def test_deploy_promotes_every_stack_in_one_chain_ending_in_prod(workflows: dict[str, dict[str, Any]]) -> None:
    jobs = workflows["deploy.yml"]["jobs"]
    stack_of = {name: job["env"]["STACK"] for name, job in jobs.items()}
    assert sorted(stack_of.values()) == STACKS, "every stack file needs a deploy job (copy one; `steps: *pulumi-up`)"
    for name, job in jobs.items():
        # Each job's environment holds that stack's deployer and its reviewers.
        assert job["environment"] == stack_of[name], name
    chain = ["prod"]
    while "needs" in jobs[chain[-1]]:
        needs = jobs[chain[-1]]["needs"]
        needs = [needs] if isinstance(needs, str) else needs
        assert len(needs) == 1, f"{chain[-1]} needs {needs}: a promotion waits on exactly one stage"
        chain.append(needs[0])
    assert chain[-1] == "dev", f"promotion starts at {chain[-1]}"
    assert sorted(chain) == sorted(jobs), f"jobs outside the promotion chain {list(reversed(chain))}"


def test_every_stack_has_a_policy_config() -> None:
    assert {"dev", "staging", "prod"} <= set(STACKS)
    for stack in STACKS:
        path = POLICY_CONFIGS / f"{stack}.json"
        assert path.is_file(), f"Pulumi.{stack}.yaml has no {path.relative_to(ROOT)} (make plan and the workflows pass it)"
        assert isinstance(json.loads(path.read_text()), dict), path


def test_settings_the_workflows_read_are_documented() -> None:
    doc = OPERATING.read_text()
    used = {m.group(1) for path in WORKFLOWS for m in re.finditer(r"\b(?:vars|secrets)\.([A-Z][A-Z0-9_]*)", path.read_text())}
    assert used
    assert not sorted(name for name in used if name not in doc), "document these in the README's Operating it"


def code_blocks(markdown: str) -> list[str]:
    blocks: list[str] = []
    current: list[str] | None = None
    for line in markdown.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    assert current is None, "unclosed code block"
    return blocks


def test_make_targets_in_the_operating_doc_exist() -> None:
    called = {target for block in code_blocks(OPERATING.read_text()) for target in make_targets_in(block)}
    assert called
    assert not called - makefile_targets()


def test_staging_stack_builds() -> None:
    run = run_program("staging")
    clusters = [r for r in run.registrations if r.type == "gcp:container/cluster:Cluster"]
    pools = [r for r in run.registrations if r.type == "gcp:container/nodePool:NodePool" and r.name != "llm-staging-system"]
    assert [c.inputs["location"] for c in clusters] == ["europe-west4"]
    assert {p.inputs["nodeLocations"][0] for p in pools} == {"europe-west4-a"}
    assert {p.inputs["nodeConfig"]["machineType"] for p in pools} == {"ct6e-standard-8t", "ct6e-standard-1t"}


def pulumi_action(step: dict[str, Any], command: str) -> bool:
    return step.get("uses", "").startswith("pulumi/actions@") and step.get("with", {}).get("command") == command


def test_deploy_previews_for_drift_right_after_every_up(workflows: dict[str, dict[str, Any]]) -> None:
    """A second run must change nothing: the step after each up previews the same stack with the
    same pack and fails on any change."""
    for job, job_steps in ((name, job["steps"]) for name, job in workflows["deploy.yml"]["jobs"].items()):
        ups = [index for index, step in enumerate(job_steps) if pulumi_action(step, "up")]
        assert ups, f"deploy.yml {job}: no pulumi up"
        for index in ups:
            assert index + 1 < len(job_steps) and pulumi_action(job_steps[index + 1], "preview"), f"deploy.yml {job}: no preview after up"
            up, check = job_steps[index]["with"], job_steps[index + 1]["with"]
            assert check["expect-no-changes"] is True, f"deploy.yml {job}: the preview after up must fail on changes"
            for key in ("stack-name", "cloud-url", "pulumi-version", "policyPacks", "policyPackConfigs"):
                assert check[key] == up[key], f"deploy.yml {job}: {key} differs between up and the drift preview"


def test_e2e_shares_the_deploy_lock_of_its_stack(workflows: dict[str, dict[str, Any]]) -> None:
    """Two runs never work on one stack: e2e queues in the group deploy.yml uses for that stack."""
    [job] = workflows["e2e.yml"]["jobs"].values()
    stack = "${{ inputs.stack || vars.E2E_STACK || 'dev' }}"
    assert job["env"]["STACK"] == stack
    assert job["concurrency"] == {"group": f"pulumi-{stack}", "cancel-in-progress": False}
    assert {j["concurrency"]["group"] for j in workflows["deploy.yml"]["jobs"].values()} == {f"pulumi-{s}" for s in STACKS}
    assert job["environment"] == "e2e"
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs[-1] == 'make e2e STACK="$STACK" KEEP="$KEEP"', "the free-text input reaches the script through env only"
    auth = next(step for step in job["steps"] if step.get("uses", "").startswith("google-github-actions/auth@"))
    assert auth["with"]["service_account"] == "${{ vars.GCP_SERVICE_ACCOUNT }}"


def test_plan_drift_compares_the_offline_plan_with_a_real_preview(workflows: dict[str, dict[str, Any]]) -> None:
    [job] = [j for j in workflows["plan-drift.yml"]["jobs"].values() if "matrix" in j.get("strategy", {})]
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs == [
        'make plan STACK="$STACK"',
        'pulumi preview --json --show-sames --stack "$STACK" > preview.json',
        '.venv/bin/python -m e2e.compare_preview "build/$STACK/plan.json" preview.json',
    ]
    # Read-only: it previews, and nothing in the job can apply.
    assert not [s for s in job["steps"] if pulumi_action(s, "up")]
