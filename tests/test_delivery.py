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
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import tool_cli
from components import tokens
from helpers import shipped_run

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
STACKS = tool_cli.stack_names(ROOT)
POLICY_CONFIGS = ROOT / "policies" / "config"
# The README and the pages it links (docs/operating.md, docs/delivery.md, ...): the operating doc.
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
# A full commit SHA: a tag (v5, v5.0.1) can be moved to other code by whoever controls the action.
PINNED_SHA = re.compile(r"[0-9a-f]{40}")
USES_LINE = re.compile(r"(-\s+)?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+")


def operating_doc() -> str:
    """The README and every page under docs/, each one whole (so code blocks never span two files)."""
    assert (ROOT / "docs" / "delivery.md").is_file() and (ROOT / "docs" / "operating.md").is_file()
    return "\n".join(path.read_text() for path in DOCS)


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


@pytest.mark.slow
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


def test_every_action_is_pinned_by_commit_sha_with_its_tag(workflows: dict[str, dict[str, Any]]) -> None:
    """A tag can be moved to other code; a commit cannot. The tag stays readable in a comment, which
    is also what Dependabot updates alongside the SHA."""
    seen = 0
    for name, workflow in workflows.items():
        for job, index, step in steps(workflow):
            # A local action (./path) is pinned by the commit it is checked out with.
            if "uses" in step and not step["uses"].startswith("./"):
                seen += 1
                ref = step["uses"].rpartition("@")[2]
                assert PINNED_SHA.fullmatch(ref), f"{name} {job} step {index}: {step['uses']} is not pinned to a full commit SHA"
    assert seen >= 20
    for path in WORKFLOWS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(-\s+)?uses:", line):
                assert USES_LINE.fullmatch(line.strip()), (
                    f"{path.name}:{number}: {line.strip()!r} is not `uses: owner/repo@<40 hex> # vX.Y.Z`"
                )


def test_every_checkout_drops_its_credentials(workflows: dict[str, dict[str, Any]]) -> None:
    """With persisted credentials the job's GITHUB_TOKEN stays in .git/config for every later step
    (and the program, the pack and pip) to read."""
    checkouts = [
        (name, job, step)
        for name, wf in workflows.items()
        for job, _, step in steps(wf)
        if step.get("uses", "").startswith("actions/checkout@")
    ]
    assert checkouts
    for name, job, step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, f"{name} {job}: checkout without persist-credentials: false"


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


def test_plan_drift_lists_exactly_the_stack_files(workflows: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """The plan-drift matrix comes from this script: run it as the runner would."""
    script = next(step["run"] for _, _, step in steps(workflows["plan-drift.yml"]) if step.get("id") == "list")
    output = tmp_path / "github_output"
    subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, env={**os.environ, "GITHUB_OUTPUT": str(output)}, check=True, timeout=30)
    key, _, value = output.read_text().strip().partition("=")
    assert key == "names"
    assert json.loads(value) == STACKS


def test_deploy_promotes_every_stack_in_one_chain_ending_in_prod(workflows: dict[str, dict[str, Any]]) -> None:
    """dev, then for every later stage a read-only preview (environment preview-<stack>) whose diff
    the reviewers see, then that stage's up (environment <stack>, where the approval is)."""
    jobs = workflows["deploy.yml"]["jobs"]
    ups = {name: job for name, job in jobs.items() if job["environment"] == job["env"]["STACK"]}
    previews = {name: job for name, job in jobs.items() if job["environment"] == f"preview-{job['env']['STACK']}"}
    assert set(ups) | set(previews) == set(jobs), "every deploy job is an up in <stack> or a preview in preview-<stack>"
    assert sorted(job["env"]["STACK"] for job in ups.values()) == STACKS, (
        "every stack file needs a deploy job (copy one; `steps: *pulumi-up`)"
    )
    for name, job in ups.items():
        assert name == job["env"]["STACK"], name
    chain = ["prod"]
    while "needs" in jobs[chain[-1]]:
        needs = jobs[chain[-1]]["needs"]
        needs = [needs] if isinstance(needs, str) else needs
        assert len(needs) == 1, f"{chain[-1]} needs {needs}: a promotion waits on exactly one stage"
        chain.append(needs[0])
    assert chain[-1] == "dev", f"promotion starts at {chain[-1]}"
    assert sorted(chain) == sorted(jobs), f"jobs outside the promotion chain {list(reversed(chain))}"
    for name in ups:
        if name != "dev":
            assert jobs[name]["needs"] == f"preview-{name}", f"{name}: its reviewers approve without a preview"
            assert not [s for s in previews[f"preview-{name}"]["steps"] if pulumi_action(s, "up")], f"preview-{name} can apply"


def test_every_stack_has_a_policy_config() -> None:
    assert {"dev", "staging", "prod"} <= set(STACKS)
    for stack in STACKS:
        path = POLICY_CONFIGS / f"{stack}.json"
        assert path.is_file(), f"Pulumi.{stack}.yaml has no {path.relative_to(ROOT)} (make plan and the workflows pass it)"
        assert isinstance(json.loads(path.read_text()), dict), path


def test_settings_the_workflows_read_are_documented() -> None:
    doc = operating_doc()
    used = {m.group(1) for path in WORKFLOWS for m in re.finditer(r"\b(?:vars|secrets)\.([A-Z][A-Z0-9_]*)", path.read_text())}
    assert used
    assert not sorted(name for name in used if name not in doc), "document these in docs/delivery.md (Delivery set-up)"


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
    called = {target for block in code_blocks(operating_doc()) for target in make_targets_in(block)}
    assert called
    assert not called - makefile_targets()


def test_staging_stack_builds() -> None:
    run = shipped_run("staging")
    clusters = [r for r in run.registrations if r.type == tokens.CLUSTER]
    pools = [r for r in run.registrations if r.type == tokens.NODE_POOL and r.name != "llm-staging-system"]
    assert [c.inputs["location"] for c in clusters] == ["europe-west4"]
    assert {p.inputs["nodeLocations"][0] for p in pools} == {"europe-west4-a"}
    assert {p.inputs["nodeConfig"]["machineType"] for p in pools} == {"ct6e-standard-8t", "ct6e-standard-1t"}


def pulumi_action(step: dict[str, Any], command: str) -> bool:
    return step.get("uses", "").startswith("pulumi/actions@") and step.get("with", {}).get("command") == command


def test_deploy_previews_for_drift_right_after_every_up(workflows: dict[str, dict[str, Any]]) -> None:
    """A second run must change nothing: the step after each up previews the same stack with the
    same pack and fails on any change."""
    for job, job_steps in ((name, j["steps"]) for name, j in workflows["deploy.yml"]["jobs"].items() if not name.startswith("preview-")):
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
    stack = "${{ inputs.stack || vars.E2E_STACK }}"
    assert job["env"]["STACK"] == stack
    assert job["concurrency"] == {"group": f"pulumi-{stack}", "cancel-in-progress": False}
    assert {j["concurrency"]["group"] for j in workflows["deploy.yml"]["jobs"].values() if "concurrency" in j} == {
        f"pulumi-{s}" for s in STACKS
    }
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


# --- Nothing a pull request runs reaches staging, prod or an organization-wide token --------------

# Events whose jobs run code a pull request wrote (pull_request_target and workflow_run run it with
# the base repository's secrets, and are not used at all).
PR_EVENTS = {"pull_request", "pull_request_target", "workflow_run", "issue_comment"}
# The only environment a pull-request job may name: dev's read-only credentials.
PR_ENVIRONMENTS = {"preview-dev"}
DEPLOY_GROUP = "tpu-serving-deploy"
SECRETS = re.compile(r"\bsecrets\.([A-Za-z_][A-Za-z0-9_]*)")


def events(workflow: dict[str, Any]) -> set[str]:
    on = workflow["on"]
    return {on} if isinstance(on, str) else set(on)


def pr_jobs(workflows: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(name, job_name, job) for name, wf in workflows.items() if events(wf) & PR_EVENTS for job_name, job in wf["jobs"].items()]


def environment_of(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    return environment["name"] if isinstance(environment, dict) else environment


def runner_labels(job: dict[str, Any]) -> set[str]:
    runs_on = job["runs-on"]
    assert "${{" not in json.dumps(runs_on), f"runs-on {runs_on!r} is an expression: the runner must be known from the file"
    if isinstance(runs_on, str):
        return {runs_on}
    if isinstance(runs_on, list):
        return set(runs_on)
    labels = runs_on.get("labels", [])
    return {f"group:{runs_on['group']}"} | ({labels} if isinstance(labels, str) else set(labels))


def test_no_workflow_runs_pull_request_code_with_the_base_repositorys_secrets(workflows: dict[str, dict[str, Any]]) -> None:
    for name, workflow in workflows.items():
        assert not events(workflow) & (PR_EVENTS - {"pull_request"}), name
    assert [name for name, wf in workflows.items() if "pull_request" in events(wf)] == ["preview.yml"]


def test_pull_request_jobs_reach_no_staging_or_prod_secret_and_no_org_token(workflows: dict[str, dict[str, Any]]) -> None:
    """A job that runs the pull request's code names no environment but preview-dev (the only one
    whose branch policy admits pull requests, holding dev's read-only credentials), reads secrets
    only from there, and no workflow reads a repository-level secret or a stored Pulumi token."""
    jobs = pr_jobs(workflows)
    assert len(jobs) >= 3
    for name, job_name, job in jobs:
        where = f"{name} {job_name}"
        environment = environment_of(job)
        assert environment is None or environment in PR_ENVIRONMENTS, f"{where}: environment {environment!r} in a pull-request job"
        if environment is None:
            assert not SECRETS.search(yaml.safe_dump(job)), f"{where}: reads a secret outside an environment"
            permissions = job.get("permissions", workflows[name].get("permissions", {}))
            assert permissions.get("id-token") != "write", f"{where}: an OIDC token outside an environment"
    assert {environment_of(job) for _, _, job in jobs} >= PR_ENVIRONMENTS
    for path in WORKFLOWS:
        text = path.read_text()
        assert "PULUMI_ACCESS_TOKEN" not in text, f"{path.name}: a stored Pulumi token (use pulumi/auth-actions)"
        assert "PRIVATE_RUNNER" not in text, f"{path.name}: a runner chosen by a variable"
    # Every secret any workflow reads is an environment's: a repository or organization secret would
    # be readable by any same-repository pull request that edits its workflow.
    for name, workflow in workflows.items():
        for job_name, job in workflow["jobs"].items():
            if SECRETS.search(yaml.safe_dump(job)):
                assert environment_of(job), f"{name} {job_name}: reads a secret outside an environment"
    assert set(SECRETS.findall("".join(p.read_text() for p in WORKFLOWS))) == {"PULUMI_CONFIG_PASSPHRASE"}


def test_staging_and_prod_environments_are_used_from_main_only(workflows: dict[str, dict[str, Any]]) -> None:
    """Their environments (deployers and read-only ones) appear only in workflows that run on main."""
    for name, workflow in workflows.items():
        for job_name, job in workflow["jobs"].items():
            environment = environment_of(job) or ""
            if re.search(r"staging|prod|matrix", environment):
                assert not events(workflow) & PR_EVENTS, f"{name} {job_name}"
                assert events(workflow) <= {"push", "workflow_dispatch", "schedule"}, f"{name} {job_name}"


def test_pulumi_cloud_logins_are_per_environment_oidc_team_tokens(workflows: dict[str, dict[str, Any]]) -> None:
    logins = 0
    for name, workflow in workflows.items():
        for job_name, job in workflow["jobs"].items():
            job_steps = job.get("steps", [])
            exchanges = [s for s in job_steps if s.get("uses", "").startswith("pulumi/auth-actions@")]
            pulumi = [s for s in job_steps if s.get("uses", "").startswith("pulumi/actions@")]
            if not pulumi:
                continue
            where = f"{name} {job_name}"
            assert len(exchanges) == 1, f"{where}: no OIDC token exchange before pulumi"
            logins += 1
            exchange = exchanges[0]["with"]
            assert environment_of(job), f"{where}: a Pulumi token outside an environment"
            assert exchange["requested-token-type"] == "urn:pulumi:token-type:access_token:team", f"{where}: not a team token"
            assert exchange["scope"] == "team:${{ vars.PULUMI_TEAM }}", where
            assert job_steps.index(exchanges[0]) < job_steps.index(pulumi[0]), where
    assert logins >= 6


def test_pull_request_and_deploy_jobs_never_share_a_runner_label(workflows: dict[str, dict[str, Any]]) -> None:
    """A persistent runner that ran a pull request's code could leave something behind for a deploy.
    Pull-request jobs run on GitHub-hosted VMs or the pull-request group (dev's preview, inside dev's
    authorized networks), every deploy job on the deploy group, which no other workflow names."""
    pr_labels = set().union(*(runner_labels(job) for _, _, job in pr_jobs(workflows)))
    deploy_labels = set().union(*(runner_labels(job) for job in workflows["deploy.yml"]["jobs"].values()))
    assert pr_labels == {"ubuntu-24.04", "group:tpu-serving-pr", "tpu-serving-pr"}
    pr_group = {"group:tpu-serving-pr", "tpu-serving-pr"}
    for name, workflow in workflows.items():
        if not events(workflow) & PR_EVENTS:
            assert not any(runner_labels(job) & pr_group for job in workflow["jobs"].values()), f"{name} uses the pull-request runners"
    assert deploy_labels == {f"group:{DEPLOY_GROUP}", DEPLOY_GROUP}
    assert not pr_labels & deploy_labels
    for name, workflow in workflows.items():
        if name != "deploy.yml":
            for job_name, job in workflow["jobs"].items():
                assert not runner_labels(job) & deploy_labels, f"{name} {job_name} runs on the deploy runners"


def test_gcloud_is_pinned_to_an_exact_release(workflows: dict[str, dict[str, Any]]) -> None:
    seen = 0
    for name, workflow in workflows.items():
        for job, _, step in steps(workflow):
            if step.get("uses", "").startswith("google-github-actions/setup-gcloud@"):
                seen += 1
                version = workflow_env(step["with"]["version"], workflow["env"])
                assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {job}: gcloud {version!r} is not an exact release"
    assert seen >= 4


# --- Supply chain: hashed locks, pinned pip, the install that uses them ---------------------------

REQUIREMENTS = sorted([*ROOT.glob("requirements*.txt"), *ROOT.glob("policies/requirements*.txt")])
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def lock_of(requirements: Path) -> Path:
    return requirements.with_suffix(".lock")


def pins(lock: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def test_every_requirements_file_has_a_hashed_lock() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in REQUIREMENTS}
    assert names >= {
        "requirements.txt",
        "requirements-dev.txt",
        "requirements-tools.txt",
        "requirements-checkov.txt",
        "requirements-pip.txt",
        "policies/requirements.txt",
    }
    for requirements in REQUIREMENTS:
        lock = lock_of(requirements)
        assert lock.is_file(), f"{requirements.relative_to(ROOT)} has no lock: make lock"
        body = [line for line in lock.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
        entries: list[list[str]] = []
        for line in body:
            if line[0].isspace():
                entries[-1].append(line.strip())
            else:
                entries.append([line])
        assert entries, lock.name
        for first, *rest in entries:
            assert PIN.match(first), f"{lock.name}: {first!r} is not an exact pin"
            assert any(r.startswith("--hash=sha256:") for r in rest), f"{lock.name}: {first} has no hash"
    assert pins(ROOT / "requirements-pip.lock").keys() == {"pip"}


def direct_requirements(requirements: Path) -> Iterator[Requirement]:
    for raw in requirements.read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            yield from direct_requirements((requirements.parent / line[3:].strip()).resolve())
            continue
        yield Requirement(line)


def test_every_lock_satisfies_its_requirements_file() -> None:
    """A range moved in requirements*.txt (by hand or by Dependabot) without `make lock` fails here."""
    for requirements in REQUIREMENTS:
        lock = lock_of(requirements)
        locked = pins(lock)
        for requirement in direct_requirements(requirements):
            version = locked.get(canonicalize_name(requirement.name))
            assert version is not None, f"{lock.name} lacks {requirement.name}: make lock"
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock.name}: {requirement.name}=={version} is outside {requirement}"
            )
    dev, tools, runtime = (pins(ROOT / name) for name in ("requirements-dev.lock", "requirements-tools.lock", "requirements.lock"))
    assert runtime.items() <= tools.items() <= dev.items(), "requirements.lock, -tools.lock and -dev.lock disagree: make lock"
    assert pins(ROOT / "policies" / "requirements.lock") == runtime


# What the program and the pack need to run (`pulumi up` with --policy-pack), and nothing more:
# the tools' packages live in requirements-tools.txt, the checks' in requirements-dev.txt.
PROGRAM_REQUIREMENTS = {"pulumi", "pulumi-gcp", "pulumi-kubernetes", "pulumi-policy", "pyyaml", "pydantic"}
PINNED_SDKS = {"pulumi": "3.272.0", "pulumi-gcp": "10.2.0", "pulumi-kubernetes": "4.34.2", "pulumi-policy": "1.21.0"}


def test_the_program_requirements_are_the_program_and_pack_alone_with_the_sdks_pinned_exactly() -> None:
    program: dict[str, Requirement] = {canonicalize_name(r.name): r for r in direct_requirements(ROOT / "requirements.txt")}
    assert program.keys() == PROGRAM_REQUIREMENTS
    assert {name: str(program[name].specifier) for name in PINNED_SDKS} == {name: f"=={v}" for name, v in PINNED_SDKS.items()}
    assert {canonicalize_name(r.name) for r in direct_requirements(ROOT / "policies" / "requirements.txt")} == PROGRAM_REQUIREMENTS
    tools = {canonicalize_name(r.name) for r in direct_requirements(ROOT / "requirements-tools.txt")} - PROGRAM_REQUIREMENTS
    assert {"grpcio", "rich", "matplotlib", "prometheus-client", "ruamel-yaml", "jsonschema", "kubernetes-validate", "httpx"} <= tools
    runtime = pins(ROOT / "requirements.lock")
    assert not {"rich", "matplotlib", "prometheus-client", "ruamel-yaml", "jsonschema", "kubernetes-validate", "httpx"} & runtime.keys()


def dry_run(*args: str) -> str:
    result = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


def test_make_install_installs_pinned_pip_then_the_hashed_lock(tmp_path: Path) -> None:
    venv, checkov = tmp_path / "venv", tmp_path / "checkov"
    for target, where, lock in (
        ("install", venv, "requirements-dev.lock"),
        (f"{checkov}/.installed", checkov, "requirements-checkov.lock"),
    ):
        script = dry_run(target, f"VENV={venv}", f"CHECKOV_VENV={checkov}")
        pip_step = f"{where}/bin/python -m pip install --quiet --require-hashes -r requirements-pip.lock"
        lock_step = f"{where}/bin/python -m pip install --quiet --require-hashes -r {lock}"
        assert pip_step in script and lock_step in script, script
        assert script.index(pip_step) < script.index(lock_step), "pip itself comes first"
        for command in re.split(r"&&|\|\||;|\n", script):
            if " -m pip install" in command:
                assert "--require-hashes" in command and "--upgrade" not in command, command
    lock = dry_run("lock")
    assert "--generate-hashes" in lock and "-o requirements-dev.lock requirements.txt requirements-tools.txt requirements-dev.txt" in lock
    # Every lock comes from its own requirements file, seeded with the superset's pins, in this order.
    steps = [
        "-o requirements-dev.lock ",
        "cp requirements-dev.lock requirements-tools.lock",
        "-o requirements-tools.lock requirements-tools.txt",
        "cp requirements-tools.lock requirements.lock",
        "-o requirements.lock requirements.txt",
        "-o policies/requirements.lock policies/requirements.txt",
    ]
    assert all(step in lock for step in steps), lock
    assert [lock.index(step) for step in steps] == sorted(lock.index(step) for step in steps)
    # `make install` runs again when any lock of the one virtualenv changes.
    assert re.search(r"^\$\(VENV\)/\.installed:.*requirements-tools\.lock", (ROOT / "Makefile").read_text(), re.M)


def fake_python(tmp_path: Path, version: str, venv_fails: bool = False) -> Path:
    script = tmp_path / "python-fake"
    ok = tuple(int(x) for x in version.split(".")) >= (3, 11)
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "Python {version}"; exit 0; fi\n'
        f'if [ "$1" = -c ]; then exit {0 if ok else 1}; fi\n'
        f'if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin"; exit {1 if venv_fails else 0}; fi\n'
        "exit 3\n"
    )
    script.chmod(0o755)
    return script


def make_install(tmp_path: Path, python: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    venv = tmp_path / "venv"
    command = ["make", "--no-print-directory", "install", f"VENV={venv}", f"PYTHON_SYSTEM={python}"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60), venv


def test_an_old_python_gets_one_line_and_no_virtualenv(tmp_path: Path) -> None:
    result, venv = make_install(tmp_path, fake_python(tmp_path, "3.9.2"))
    assert result.returncode != 0
    message = [line for line in result.stderr.splitlines() if line.startswith("make: this project")]
    assert len(message) == 1, result.stderr
    assert "Python >= 3.11" in message[0] and "Python 3.9.2" in message[0] and "install python3.11" in message[0], message
    assert not venv.exists()


def test_a_virtualenv_that_fails_to_be_made_is_removed(tmp_path: Path) -> None:
    result, venv = make_install(tmp_path, fake_python(tmp_path, "3.12.1", venv_fails=True))
    assert result.returncode != 0
    assert "venv failed" in result.stderr, result.stderr
    assert not venv.exists(), "a half-made virtualenv was left behind"


def test_distclean_removes_both_virtualenvs() -> None:
    assert "rm -rf .venv .venv-checkov" in dry_run("distclean")


# --- Review and updates of what decides a deploy ---------------------------------------------------


def test_dependabot_updates_actions_and_pip() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    ecosystems = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    assert {("github-actions", "/"), ("pip", "/")} <= ecosystems


def test_codeowners_cover_the_workflows_stack_files_and_policy_configs() -> None:
    [path] = [p for p in (ROOT / ".github" / "CODEOWNERS", ROOT / "CODEOWNERS", ROOT / "docs" / "CODEOWNERS") if p.is_file()]
    rules = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    owned = {rule[0]: rule[1:] for rule in rules}
    for pattern in ("/.github/", "/Pulumi.*.yaml", "/policies/config/"):
        assert owned.get(pattern), f"CODEOWNERS does not cover {pattern}"
    assert all(owners and all(o.startswith("@") for o in owners) for owners in owned.values())


def test_readme_trusts_the_repository_by_id_and_narrows_the_deployer() -> None:
    """The WIF condition names ids (a repository name can be registered again); projectIamAdmin can
    grant exactly the roles the program grants; no account gets a basic role."""
    blocks = "\n".join(code_blocks(operating_doc()))
    assert "assertion.repository_id == 'REPO_ID' && assertion.repository_owner_id == 'OWNER_ID'" in blocks
    assert "assertion.repository ==" not in blocks and ":pull_request" not in blocks
    granted = {
        r.inputs["role"] for stack in ("dev", "prod") for r in shipped_run(stack).registrations if r.type == tokens.PROJECT_IAM_MEMBER
    }
    assert granted
    match = re.search(
        r"--role roles/resourcemanager\.projectIamAdmin [^\n]*\\?\n[^\n]*modifiedGrantsByRole', \[\]\)\.hasOnly\(\[([^\]]*)\]\)", blocks
    )
    assert match, "projectIamAdmin without the modifiedGrantsByRole condition"
    assert {r.strip().strip("'") for r in match.group(1).split(",")} == granted
    assert not re.search(r"--role roles/(owner|editor|viewer)\b", blocks)
    assert not re.search(r"for role in [^;]*(?<![\w.])(owner|editor|viewer)\b", blocks)
    assert "serviceusage.serviceUsageAdmin" in blocks
    assert "gcloud iam service-accounts add-iam-policy-binding llm-prod-nodes@" in blocks


def test_e2e_refuses_a_missing_stack_or_one_that_deploy_keeps(workflows: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """The weekly run destroys what it creates: no default stack, never dev, staging or prod."""
    [job] = workflows["e2e.yml"]["jobs"].values()
    guard = next(step["run"] for step in job["steps"] if "run" in step and "E2E_STACK" in step["run"])
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "deploy.yml").write_text((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    for stack, code in (("", 2), ("dev", 2), ("prod", 2), ("e2e", 0)):
        result = subprocess.run(["bash", "-c", guard], cwd=tmp_path, env={"STACK": stack, "PATH": os.environ["PATH"]}, capture_output=True)
        assert result.returncode == code, (stack, result.stderr)
