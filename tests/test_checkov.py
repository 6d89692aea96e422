"""Checkov, at the version pinned in requirements-checkov.txt, over the Kubernetes manifests the
offline plan renders for every shipped stack (Pulumi.<stack>.yaml): no failed check, and every
skipped one is skipped on purpose, with its reason, on the object where Checkov reads it.

Checkov runs from its own virtualenv (`.venv-checkov`, its pins conflict with pulumi's), or from
the path in $CHECKOV. Without it the scan is skipped locally and fails under CI=true.

Checkov reads pod templates only at `spec.template` of Deployment, DaemonSet, Job, ReplicaSet,
ReplicationController, StatefulSet and DeploymentConfig (checkov/kubernetes/kubernetes_utils.py
SUPPORTED_POD_CONTAINERS_TYPES); its container checks support those kinds, Pod and CronJob. A
LeaderWorkerSet's templates sit at spec.leaderWorkerTemplate.{leader,worker}Template: Checkov parses
the object, runs no check on it and counts no resource (no failure, no parse error: silence). So the
scan renders each LeaderWorkerSet's leader and worker templates as standalone Deployments
(`<name>-leader`, `<name>-worker`, the LeaderWorkerSet's metadata and skip annotations), which Checkov
checks like the single-host Deployment; their skips are expected under the LeaderWorkerSet's name.
Besides the shipped stacks, the scan covers the program's multi-host example (the config of
tests/test_multihost.py), the only stack that registers a LeaderWorkerSet.

Checkov's CKV2_K8S_6 (a NetworkPolicy per pod) matches policies to pods across namespaces, so a
`podSelector: {}` policy in one namespace hides a namespace without any; test_hardening checks
the policies namespace by namespace.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from test_multihost import OVERRIDES as MULTI_HOST_OVERRIDES

from conftest import NumberedProjectMocks, build_config
from helpers import STACKS, objects, shipped_run
from offline_plan.harness import ProgramRun, run_program
from offline_plan.render import write_manifests
from offline_plan.schemas import kubernetes_manifests

# checkov in its own virtualenv over every stack's manifests: the slow tier (make test-full);
# tests/test_hardening.py checks the same manifests in the fast tier.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements-checkov.txt"
DEFAULT_CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SKIP_ANNOTATION = re.compile(r"^checkov\.io/skip\d+$")
# Every skip the stack ships, by the object that carries it. A new one is a decision: add it here
# and give its reason in the component's annotation.
EXPECTED_SKIPS: dict[tuple[str, str], set[str]] = {
    # vllm/vllm-tpu runs as root; the image is pinned by tag, not digest.
    ("Deployment", "vllm"): {"CKV_K8S_23", "CKV_K8S_40", "CKV_K8S_43"},
    # The same vLLM image on every host of a multi-host group (its templates, rendered as Deployments).
    # Ray workers have no port of their own to probe; the leader's /health speaks for the group.
    ("LeaderWorkerSet", "vllm-group"): {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_23", "CKV_K8S_40", "CKV_K8S_43"},
    # Google's adapter image as published: root on 443 with NET_BIND_SERVICE, calls the API.
    ("Deployment", "custom-metrics-stackdriver-adapter"): {"CKV_K8S_23", "CKV_K8S_25", "CKV_K8S_38", "CKV_K8S_40", "CKV_K8S_43"},
    # Google's external-metrics-reader role: external metrics are resources named after each metric.
    ("ClusterRole", "external-metrics-reader"): {"CKV_K8S_49"},
    # Checkov's secrets check reads its "*" as every resource of every API group.
    ("ClusterRoleBinding", "external-metrics-reader"): {"CKV2_K8S_5"},
}
TIMEOUT_SECONDS = 300
LWS_KIND = "LeaderWorkerSet"
LWS_TEMPLATES = {"leader": "leaderTemplate", "worker": "workerTemplate"}
# The program's multi-host example, scanned next to the shipped stacks.
MULTI_HOST = "multi-host"
SOURCES = (*STACKS, MULTI_HOST)


@functools.cache
def _multi_host_run() -> ProgramRun:
    config, secrets = build_config(MULTI_HOST_OVERRIDES)
    return run_program("test", config, secrets, project="tpu-serving", plan_mocks=NumberedProjectMocks())


def multi_host_manifests() -> list[dict[str, Any]]:
    """The program's multi-host example (tests/test_multihost.py: Llama 3.1 405B on v6e 4x8), as
    the offline plan renders it."""
    return copy.deepcopy(kubernetes_manifests(_multi_host_run().registrations))


def manifests_of(source: str) -> list[dict[str, Any]]:
    return multi_host_manifests() if source == MULTI_HOST else objects(shipped_run(source))


def as_deployments(lws: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A LeaderWorkerSet's pod templates as the Deployments Checkov reads: one per template (the
    worker's stands in for a leader the LeaderWorkerSet leaves out), with the LeaderWorkerSet's
    metadata, so its checkov.io/skip annotations apply as they would to a Deployment."""
    group = lws["spec"]["leaderWorkerTemplate"]
    rendered = []
    for role, field in LWS_TEMPLATES.items():
        template = copy.deepcopy(group.get(field) or group["workerTemplate"])
        labels = (template.get("metadata") or {}).get("labels") or {"app": lws["metadata"]["name"]}
        template.setdefault("metadata", {})["labels"] = labels
        metadata = {**copy.deepcopy(lws["metadata"]), "name": f"{lws['metadata']['name']}-{role}"}
        spec = {"replicas": 1, "selector": {"matchLabels": labels}, "template": template}
        rendered.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec})
    return rendered


def write_for_checkov(
    manifests: list[dict[str, Any]], directory: Path, *, originals: bool = True
) -> dict[tuple[str, str], tuple[str, str]]:
    """Writes the manifests (or, with originals=False, only what is rendered from them), a
    LeaderWorkerSet also as Deployments; returns what each rendered Deployment stands for:
    ("Deployment", "vllm-group-worker") -> ("LeaderWorkerSet", "vllm-group")."""
    stands_for = {}
    for index, manifest in enumerate(manifests):
        extra = as_deployments(manifest) if manifest["kind"] == LWS_KIND else []
        for rendered in extra:
            stands_for[("Deployment", rendered["metadata"]["name"])] = (LWS_KIND, manifest["metadata"]["name"])
        written = [manifest, *extra] if originals else extra
        if written:
            (directory / f"checkov-{index:03d}-{manifest['kind'].lower()}.yaml").write_text(yaml.safe_dump_all(written, sort_keys=True))
    return stands_for


def test_a_leader_worker_set_is_rendered_as_one_deployment_per_template(tmp_path: Path) -> None:
    lws = next(m for m in multi_host_manifests() if m["kind"] == LWS_KIND)
    stands_for = write_for_checkov([lws], tmp_path)
    assert stands_for == {
        ("Deployment", "vllm-group-leader"): (LWS_KIND, "vllm-group"),
        ("Deployment", "vllm-group-worker"): (LWS_KIND, "vllm-group"),
    }
    [leader, worker] = as_deployments(lws)
    assert leader["spec"]["template"] == lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
    assert worker["spec"]["template"] == lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]
    assert leader["metadata"]["annotations"] == lws["metadata"]["annotations"]


def pinned_version() -> str:
    match = re.search(r"^checkov==(\S+)\s*$", REQUIREMENTS.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{REQUIREMENTS.name} must pin checkov==<version>"
    return match.group(1)


def checkov_binary() -> Path | None:
    configured = os.environ.get("CHECKOV")
    if not configured:
        return DEFAULT_CHECKOV if os.access(DEFAULT_CHECKOV, os.X_OK) else None
    found = shutil.which(configured)
    return Path(found) if found else None


def missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: the checkov scan is part of make test-slow, which CI runs)")
    pytest.skip(reason)


# Per scan: the Deployments rendered from a LeaderWorkerSet, and which one each stands for.
STANDS_FOR: dict[str, dict[tuple[str, str], tuple[str, str]]] = {}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One Checkov run per stack, all started at once; Checkov's JSON report of each."""
    binary = checkov_binary()
    if binary is None:
        where = os.environ.get("CHECKOV") or DEFAULT_CHECKOV.relative_to(ROOT)
        missing(
            f"checkov not found at {where}: python3 -m venv .venv-checkov && .venv-checkov/bin/pip install -r {REQUIREMENTS.name}"
            " (or set CHECKOV=/path/to/checkov)"
        )
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    assert version == pinned_version(), f"{binary} is checkov {version}; {REQUIREMENTS.name} pins {pinned_version()}"
    running = {}
    for stack in SOURCES:
        directory = tmp_path_factory.mktemp(f"manifests-{stack}")
        if stack == MULTI_HOST:
            stands_for = write_for_checkov(manifests_of(stack), directory)
        else:
            assert write_manifests(shipped_run(stack), directory)
            # A LeaderWorkerSet the program registers is also rendered as the Deployments Checkov reads.
            stands_for = write_for_checkov(manifests_of(stack), directory, originals=False)
        STANDS_FOR[stack] = stands_for
        # --skip-download: no call to Prisma Cloud for guidelines or policies; the scan stays offline.
        command = [str(binary), "-d", str(directory), "--framework", "kubernetes", "-o", "json", "--skip-download"]
        running[stack] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found = {}
    for stack, process in running.items():
        out, err = process.communicate(timeout=TIMEOUT_SECONDS)
        # 0: all passed; 1: some check failed (the tests below say which). Anything else is Checkov failing.
        assert process.returncode in (0, 1), f"checkov on {stack} exited {process.returncode}: {err[-2000:]}"
        found[stack] = merged(json.loads(out))
    return found


def merged(document: Any) -> dict[str, Any]:
    """Checkov prints one report, or a list of them when several runners answer."""
    parts = document if isinstance(document, list) else [document]
    results: dict[str, list[dict[str, Any]]] = {"passed_checks": [], "failed_checks": [], "skipped_checks": []}
    parsing_errors = 0
    for part in parts:
        for key in results:
            results[key] += (part.get("results") or {}).get(key, [])
        parsing_errors += (part.get("summary") or {}).get("parsing_errors", 0)
    return {"results": results, "parsing_errors": parsing_errors}


def where(check: Mapping[str, Any]) -> str:
    return f"{check['check_id']} ({check.get('check_name')}) on {check['resource']} in {check['file_path']}"


def kind_and_name(resource: str) -> tuple[str, str]:
    """Checkov names an object Kind.namespace.name (the name may hold dots)."""
    kind, _, name = resource.split(".", 2)
    return kind, name


stacks = pytest.mark.parametrize("stack", SOURCES)


@stacks
def test_checkov_reads_every_workload(stack: str, reports: dict[str, dict[str, Any]]) -> None:
    report = reports[stack]
    assert report["parsing_errors"] == 0
    checked = {kind_and_name(c["resource"]) for part in report["results"].values() for c in part}
    manifests = manifests_of(stack)
    workloads = {("Deployment", str(d["metadata"]["name"])) for d in manifests if d["kind"] == "Deployment"}
    workloads |= {("Deployment", f"{m['metadata']['name']}-{role}") for m in manifests if m["kind"] == LWS_KIND for role in LWS_TEMPLATES}
    assert workloads and workloads <= checked, f"not scanned: {sorted(workloads - checked)}"
    # Checkov itself reads nothing of a LeaderWorkerSet: its templates are checked through the Deployments.
    assert not {obj for obj in checked if obj[0] == LWS_KIND}


@stacks
def test_no_failed_checks(stack: str, reports: dict[str, dict[str, Any]]) -> None:
    failed = reports[stack]["results"]["failed_checks"]
    assert failed == [], "checkov failed (fix the component or, if the workload truly cannot, skip with a true reason):\n" + "\n".join(
        where(c) for c in failed
    )


@stacks
def test_every_skip_is_expected_and_says_why(stack: str, reports: dict[str, dict[str, Any]]) -> None:
    skipped: dict[tuple[str, str], set[str]] = {}
    for check in reports[stack]["results"]["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert reason.strip() and reason != "No comment provided", f"no reason: {where(check)}"
        obj = kind_and_name(check["resource"])
        skipped.setdefault(STANDS_FOR[stack].get(obj, obj), set()).add(check["check_id"])
    # Exactly the expected set per object: a new skip needs a decision, a missing one means
    # Checkov ignored an annotation.
    for obj, checks in skipped.items():
        assert checks == EXPECTED_SKIPS.get(obj, set()), f"{obj}: checkov skipped {sorted(checks)}"


def annotations_anywhere(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and SKIP_ANNOTATION.match(key):
                yield path, key, item
            yield from annotations_anywhere(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from annotations_anywhere(item, f"{path}[{index}]")


@stacks
def test_skip_annotations_sit_where_checkov_reads_them(stack: str) -> None:
    """Checkov reads skips from the object's own metadata.annotations only: on a pod template
    they are silently ignored. A reason holding "=" breaks Checkov's parser."""
    for obj in manifests_of(stack):
        for path, key, value in annotations_anywhere(obj):
            label = f"{obj['kind']} {obj['metadata'].get('name')}: {path}.{key}"
            assert path == "metadata.annotations", f"{label}: checkov does not read skips there"
            check, _, reason = str(value).partition("=")
            assert re.fullmatch(r"CKV2?_K8S_\d+", check) and reason.strip() and "=" not in reason, f"{label} = {value!r}"
