"""The pack on manifests shaped like the ones Google publishes (GKE samples, the inference reference
architecture, tpu-recipes, tpu-inference), one fixture pair per class of issue 14: the correct
manifest passes, its broken twin fails with the policy and text that name the problem. The fixtures
in tests/fixtures/policy/real-world/ are written for this project, reproducing each pattern.

Plus `make check`'s handling of what it cannot check (kinds no policy reads, templates, empty
files, kustomizations, directories) and the shipped configs' enforcement levels."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_policy import EnforcementLevel

from components import facts
from conftest import in_process_policy_session
from helpers import run_policy_check
from policies import pack
from policies.k8s import POD_KINDS
from policy_runner import ManifestError, PolicyPackSession, Report, load_manifests, reconcile
from policy_runner.coverage import coverage

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "policy" / "real-world"
CONFIGS = ROOT / "policies" / "config"
PROD = CONFIGS / "prod.json"


@pytest.fixture(scope="module")
def session() -> PolicyPackSession:
    return in_process_policy_session(project="manifests", stack="check")


def check(session: PolicyPackSession, name: str, config: Any = PROD) -> Report:
    session.configure(config)
    return session.analyze(load_manifests([FIXTURES / name]))


def found(report: Report, policy: str) -> list[str]:
    return [v.detail for v in report.violations if v.policy_name == policy]


# (class, fixture stem, {policy: text its message contains}) for the broken twin.
CLASSES: list[tuple[str, str, dict[str, str]]] = [
    (
        "ComputeClass selection resolved",
        "compute-class",
        {"tpu-chip-request": "a pod on tpu-v6e-slice 2x2 (through ComputeClass tpu-v6e-2x2) must take all 4 chips"},
    ),
    (
        "tpu7x devices per chip",
        "tpu7x",
        {"tpu-tensor-parallel": f"holds 4 chips = {4 * facts.GENERATIONS['tpu7x'].devices_per_chip} devices"},
    ),
    ("leader without chips", "leader", {"tpu-chip-request": f"tolerate the {facts.TPU_RESOURCE} NoSchedule taint"}),
    ("placeholders", "placeholder", {"image-tag-pinned": "image vllm/vllm-tpu has no tag"}),
    ("levels: a literal token is mandatory", "levels", {"hf-token-plain-env": "env HF_TOKEN holds a Hugging Face token"}),
    ("vLLM text per image family", "vllm-family", {"vllm-minimum-version": f"Use {facts.VLLM_GPU_IMAGE_REPOSITORY}:v"}),
    ("moving tags", "moving-tags", {"image-tag-pinned": "moving tag"}),
    ("every workload kind", "kinds", {"image-tag-pinned": "uses latest", "tpu-chip-request": "requests 8 google.com/tpu"}),
    (
        "multi-host LeaderWorkerSet: one slice, group size = hosts, chips per host",
        "multihost",
        {"tpu-pod-topology": "its templates select different ones", "tpu-chip-request": "must take all 4 chips of its node"},
    ),
]


@pytest.mark.parametrize(("stem", "expected"), [(s, e) for _, s, e in CLASSES], ids=[c for c, _, _ in CLASSES])
def test_the_broken_twin_fails_with_the_policy_that_names_it(session: PolicyPackSession, stem: str, expected: dict[str, str]) -> None:
    report = check(session, f"{stem}-fail.yaml")
    assert report.exit_code == 1
    for policy, text in expected.items():
        assert any(text in m for m in found(report, policy)), (policy, found(report, policy))


@pytest.mark.parametrize("stem", [s for _, s, _ in CLASSES], ids=[c for c, _, _ in CLASSES])
def test_the_correct_manifest_passes_prod(session: PolicyPackSession, stem: str) -> None:
    report = check(session, f"{stem}-pass.yaml")
    assert report.mandatory == (), [v.detail for v in report.mandatory]


def test_the_correct_manifests_raise_nothing_but_the_advisory_token_file(session: PolicyPackSession) -> None:
    """No false alarm, not even an advisory one, except the by-design advice on the env-var token."""
    session.configure(PROD)
    report = session.analyze(load_manifests(sorted(FIXTURES.glob("*-pass.yaml"))))
    assert {(v.policy_name, v.enforcement_level) for v in report.violations} == {("hf-token-as-file", "advisory")}


def test_a_compute_class_that_is_not_in_the_input_is_accepted(session: PolicyPackSession) -> None:
    resources = [r for r in load_manifests([FIXTURES / "compute-class-fail.yaml"]) if "ComputeClass" not in r.type]
    session.configure(PROD)
    assert session.analyze(resources).violations == ()


def test_tpu7x_messages_count_devices_and_data_parallelism(session: PolicyPackSession) -> None:
    [message] = found(check(session, "tpu7x-fail.yaml"), "tpu-tensor-parallel")
    assert "--tensor-parallel-size=4 uses 4 devices" in message and "Set --tensor-parallel-size=8" in message
    assert {s.topology for s in facts.GENERATIONS["tpu7x"].slices} >= {"1x1x1", "2x2x1", "4x4x4"}


def test_gpu_images_are_not_told_to_use_the_tpu_image(session: PolicyPackSession) -> None:
    messages = found(check(session, "vllm-family-fail.yaml"), "vllm-minimum-version")
    gpu = next(m for m in messages if "gpu-server" in m)
    vendor = next(m for m in messages if "vendor-build" in m)
    assert facts.VLLM_IMAGE_REPOSITORY not in gpu
    assert "the pack cannot tell" in vendor and facts.VLLM_IMAGE_REPOSITORY not in vendor


def test_an_unreadable_version_is_mandatory_in_prod_and_advisory_in_dev(session: PolicyPackSession) -> None:
    levels = {v.enforcement_level for v in check(session, "vllm-family-fail.yaml", CONFIGS / "dev.json").violations}
    assert levels == {"advisory"}
    assert {v.enforcement_level for v in check(session, "vllm-family-fail.yaml").violations} == {"mandatory"}


def test_every_moving_tag_is_reported(session: PolicyPackSession) -> None:
    messages = found(check(session, "moving-tags-fail.yaml"), "image-tag-pinned")
    containers = yaml.safe_load((FIXTURES / "moving-tags-fail.yaml").read_text())["spec"]["containers"]
    assert sorted(re.findall(r"container (\S+):", " ".join(messages))) == sorted(c["name"] for c in containers)


def test_every_pod_template_of_every_kind_is_read(session: PolicyPackSession) -> None:
    objects = list(yaml.safe_load_all((FIXTURES / "kinds-fail.yaml").read_text()))
    assert {o["kind"] for o in objects} == set(POD_KINDS) - {"ReplicaSet"}
    report = check(session, "kinds-fail.yaml")
    pinned = found(report, "image-tag-pinned")
    chips = found(report, "tpu-chip-request")
    for obj in objects:
        label = f"{obj['kind']} {obj['metadata']['name']}"
        assert any(m.startswith(label) for m in pinned), label
        assert any(m.startswith(label) for m in chips), label
    for kind in ("RayCluster", "RayService", "RayJob"):
        for group in ("headGroupSpec", "workerGroupSpecs[tpu-single]", "workerGroupSpecs[tpu-multi]"):
            assert any(m.startswith(f"{kind} {kind.lower()} ({group})") for m in pinned), (kind, group)
    assert any(m.startswith("JobSet jobset") for m in chips)
    assert any(m.startswith("LeaderWorkerSet lws (leaderTemplate)") for m in chips)
    assert any(m.startswith("LeaderWorkerSet lws (workerTemplate)") for m in chips)


def test_a_multi_host_group_must_match_the_slice(session: PolicyPackSession) -> None:
    """The Indexed Job passes with one pod per VM of tpu7x 4x4x4; a plain Job on it, or a group of the wrong size, does not."""
    tpu7x = facts.GENERATIONS["tpu7x"]
    vms = tpu7x.slices_of("4x4x4")[0].vms
    resources = load_manifests([FIXTURES / "kinds-pass.yaml"])
    job = next(r for r in resources if r.name == "indexed-job")
    assert job.properties["spec"]["parallelism"] == vms
    session.configure(PROD)
    for spec, expected in (
        ({**job.properties["spec"], "completionMode": "NonIndexed"}, "is a multi-host slice"),
        ({**job.properties["spec"], "parallelism": vms // 2}, f"{vms // 2} pods take one slice together"),
    ):
        changed = type(job)(job.urn, job.type, job.name, {**job.properties, "spec": spec})
        messages = found(session.analyze([changed]), "tpu-pod-topology")
        assert any(expected in m for m in messages), messages


def test_each_broken_multi_host_group_is_named_with_its_fault(session: PolicyPackSession) -> None:
    """One LeaderWorkerSet per rule: hosts on different slices, a group smaller than the slice, a host
    asking for more chips than its VM has. The numbers come from the catalog, not from the test."""
    v6e = facts.GENERATIONS["v6e"]
    [slice_4x8] = v6e.slices_of("4x8")
    report = check(session, "multihost-fail.yaml")
    messages = [(v.policy_name, v.detail) for v in report.violations]

    def said(policy: str, name: str, text: str) -> bool:
        return any(p == policy and d.startswith(f"LeaderWorkerSet vllm/{name}") and text in d for p, d in messages)

    assert said("tpu-pod-topology", "split-slice", "select different ones"), messages
    assert said("tpu-pod-topology", "short-group", f"4 pods take one slice together but it is {slice_4x8.vms} VM(s)"), messages
    assert said("tpu-chip-request", "fat-hosts", f"must take all {slice_4x8.chips_per_vm} chips of its node ({slice_4x8.machine_type})"), (
        messages
    )


def test_templates_are_reported_as_not_checked() -> None:
    seen = coverage(load_manifests([FIXTURES / "placeholder-pass.yaml"]))
    assert seen.notes == [
        "template, not checked: Deployment templated container vllm: image ${IMAGE_URI}",
        "template, not checked: Deployment templated container fetch: image <your-image>",
    ]


def test_objects_no_policy_reads_are_counted() -> None:
    seen = coverage(load_manifests([FIXTURES / "not-checked.yaml", FIXTURES / "levels-pass.yaml"]))
    assert seen.checked == 1
    assert seen.notes == ["2 objects not checked (kinds ConfigMap, PodMonitoring): no policy reads them"]


@pytest.mark.slow
def test_make_check_refuses_a_file_with_nothing_it_reads() -> None:
    result = run_policy_check(FIXTURES / "not-checked.yaml")
    assert result.returncode == 2 and result.stdout == ""
    assert "nothing to check: 2 objects not checked (kinds ConfigMap, PodMonitoring)" in result.stderr


@pytest.mark.slow
def test_make_check_reads_a_directory_and_stdin(tmp_path: Path) -> None:
    for name in ("not-checked.yaml", "tpu7x-fail.yaml", "leader-pass.yaml"):
        (tmp_path / name.replace(".yaml", ".yml" if name.startswith("leader") else ".yaml")).write_text((FIXTURES / name).read_text())
    (tmp_path / "notes.txt").write_text("not YAML, not read")
    result = run_policy_check(tmp_path, "--config", PROD)
    assert result.returncode == 1, result.stderr
    assert "2 of 4 objects checked, from 3 files" in result.stdout and "~ 2 objects not checked" in result.stdout
    piped = run_policy_check("-", stdin=(FIXTURES / "tpu7x-pass.yaml").read_text())
    assert piped.returncode == 0 and "✅ gke-tpu-vllm" in piped.stdout, piped.stderr


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.yaml", "", "no Kubernetes object (the file is empty or holds only `---`)"),
        ("dashes.yaml", "---\n", "no Kubernetes object"),
        ("comments.yaml", "# nothing\n---\n---\n", "no Kubernetes object"),
        ("kustomization.yaml", "resources: [deployment.yaml]\n", "run `kustomize build"),
        ("overlay.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n", "kustomize build"),
    ],
)
def test_make_check_refuses_what_it_cannot_check(tmp_path: Path, name: str, content: str, problem: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(ManifestError, match=re.escape(problem)):
        load_manifests([tmp_path / name])


def test_a_kustomize_directory_says_to_build_it(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [deployment.yaml]\n")
    with pytest.raises(ManifestError, match=f"run `kustomize build {re.escape(str(tmp_path))} > built.yaml`"):
        load_manifests([tmp_path])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ManifestError, match=r"a directory with no \.yaml or \.yml file"):
        load_manifests([empty])


ADVISORY_BY_DESIGN = {p.name for p in pack.POLICIES if p.enforcement_level == EnforcementLevel.ADVISORY}


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.json")), ids=lambda p: p.stem)
def test_no_shipped_config_raises_an_advisory_by_design_policy(session: PolicyPackSession, config: Path) -> None:
    assert "hf-token-as-file" in ADVISORY_BY_DESIGN
    resolved = reconcile(session.policies, __import__("json").loads(config.read_text()))
    assert {name for name in ADVISORY_BY_DESIGN if resolved[name].enforcement_level != "advisory"} == set()
    # Config lowers, never raises: every entry is at or below the policy's own level.
    order = ("disabled", "advisory", "mandatory", "remediate")
    own = {p.name: p.enforcement_level for p in session.policies}
    assert all(order.index(resolved[n].enforcement_level) <= order.index(own[n]) for n in own), config.name


def test_the_policy_doc_lists_the_kinds_each_policy_reads() -> None:
    section = (ROOT / "docs" / "policy-pack.md").read_text()
    assert section.startswith("# Policy pack")
    assert set(pack.READS) == {p.name for p in pack.POLICIES}, "policies/pack.py READS names every policy, and only those"
    for policy in pack.READS:
        row = next((line for line in section.splitlines() if line.startswith(f"| `{policy}`")), None)
        assert row is not None, policy
        reads = row.split("|")[3].lower()
        kinds = pack.READS[policy]
        pods = set(POD_KINDS) <= set(kinds)
        wanted = {"pods" if pods and kind in POD_KINDS else kind.rsplit(":", 1)[-1].lstrip("*") for kind in kinds}
        assert all(w.lower() in reads for w in wanted), (policy, wanted, reads)
    for kind in POD_KINDS:
        assert kind in section, kind
