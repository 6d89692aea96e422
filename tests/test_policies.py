"""Every policy of the pack passes on a stack shaped like the program's and fails on one change
to it; the seed's manifests trip what they should; values unknown during preview are skipped.

The pack runs in-process here: the SDK's own analyzer servicer behind policy_runner's session,
so properties cross the same protobuf Struct (numbers become floats) that they cross in
`pulumi preview`, without a subprocess per test."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs
from test_multihost import OVERRIDES as MULTI_HOST_OVERRIDES

from components import facts, tokens
from conftest import RunStack, in_process_policy_session
from offline_plan.sdk import UNKNOWN, unknown_checking_proxy
from policies import pack, tpu
from policy_runner import PolicyPackSession, Report, StackResource, load_manifests

ROOT = Path(__file__).resolve().parent.parent
PROD = ROOT / "policies" / "config" / "prod.json"
DEV = ROOT / "policies" / "config" / "dev.json"
SEED = sorted((ROOT / "tests" / "fixtures" / "seed").glob("*.yaml"))
STACK = ROOT / "tests" / "fixtures" / "policy" / "standard-stack.yaml"

CLUSTER = tokens.CLUSTER
POOL = tokens.NODE_POOL
BUCKET = tokens.BUCKET
BUCKET_GRANT = tokens.BUCKET_IAM_MEMBER
PROJECT_GRANT = tokens.PROJECT_IAM_MEMBER
DEPLOYMENT = tokens.DEPLOYMENT
SERVICE = tokens.K8S_SERVICE
HPA = tokens.HPA
ACC, TOPO, TPU = facts.ACCELERATOR_LABEL, facts.TOPOLOGY_LABEL, facts.TPU_RESOURCE
HF_LITERAL = "hf_" + "x" * 34
V6E = facts.GENERATIONS["v6e"]

Stack = list[StackResource]


@pytest.fixture(scope="module")
def session() -> PolicyPackSession:
    return in_process_policy_session(project="tpu-serving", stack="test")


@pytest.fixture(scope="module")
def stack() -> Stack:
    return [StackResource.from_mapping(raw) for raw in yaml.safe_load(STACK.read_text())]


def check(session: PolicyPackSession, resources: Stack, config: Any = PROD) -> Report:
    session.configure(config)
    return session.analyze(resources)


def messages(report: Report, policy: str) -> list[str]:
    return [v.detail for v in report.violations if v.policy_name == policy]


def edit(
    resources: Stack, token: str, change: Callable[[dict[str, Any]], object] | None = None, *, which: str | None = None, **fields: Any
) -> Stack:
    """The stack with the first resource of type `token` (named `which`, if given) changed on a deep copy."""
    index = next(i for i, r in enumerate(resources) if r.type == token and which in (None, r.name))
    properties = copy.deepcopy(dict(resources[index].properties))
    if change is not None:
        change(properties)
    return [*resources[:index], dataclasses.replace(resources[index], properties=properties, **fields), *resources[index + 1 :]]


def pod(props: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], props["spec"]["template"]["spec"])


def container(props: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], pod(props)["containers"][0])


def env(props: dict[str, Any]) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], container(props)["env"])


def arg(props: dict[str, Any], flag: str, value: str) -> None:
    args = container(props)["args"]
    args[:] = [a for a in args if not a.startswith(f"--{flag}=")] + [f"--{flag}={value}"]


def tpu_chips(requests: str | None, limits: str | None) -> Callable[[dict[str, Any]], None]:
    def change(props: dict[str, Any]) -> None:
        resources = container(props)["resources"]
        for kind, value in (("requests", requests), ("limits", limits)):
            resources[kind].pop(TPU)
            if value is not None:
                resources[kind][TPU] = value

    return change


def tpu_pool(resources: Stack, machine: str, topology: str | None = None, placement: str | None = "COMPACT") -> Stack:
    """The 70B's pool on another machine type; a placement policy only where a topology is given."""
    placement_policy = {"placementPolicy": {"type": placement, "tpuTopology": topology}} if topology else {}
    return edit(resources, POOL, lambda p: p.update(nodeConfig={"machineType": machine}, **placement_policy), which="llama-70b")


def affinity_instead_of_node_selector(props: dict[str, Any]) -> None:
    expressions = [{"key": k, "operator": "In", "values": [v]} for k, v in pod(props).pop("nodeSelector").items()]
    required = {"nodeSelectorTerms": [{"matchExpressions": expressions}]}
    pod(props)["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}


def without_hpa(resources: Stack) -> Stack:
    return [r for r in resources if r.type != HPA]


CASES: list[tuple[str, Callable[[Stack], Stack], str]] = [
    ("tpu-pod-topology", lambda s: edit(s, DEPLOYMENT, lambda p: pod(p)["nodeSelector"].pop(TOPO)), f"but no {TOPO}"),
    (
        "tpu-pod-topology",
        lambda s: edit(s, DEPLOYMENT, lambda p: pod(p)["nodeSelector"].update({TOPO: "4x4"})),
        "is a multi-host slice (4 VMs",
    ),
    (
        "tpu-pod-topology",
        lambda s: edit(s, DEPLOYMENT, lambda p: pod(p)["nodeSelector"].update({ACC: "tpu-v9-slice"})),
        "no GKE TPU accelerator",
    ),
    ("tpu-pod-topology", lambda s: edit(s, DEPLOYMENT, lambda p: pod(p)["nodeSelector"].update({TOPO: "2x2x1"})), "is not a v6e topology"),
    ("tpu-chip-request", lambda s: edit(s, DEPLOYMENT, tpu_chips("4", "4")), "2-node form of 2x4 on ct6e-standard-4t"),
    ("tpu-chip-request", lambda s: edit(s, DEPLOYMENT, tpu_chips("8", None)), "without a limit"),
    ("tpu-chip-request", lambda s: edit(s, DEPLOYMENT, tpu_chips("4", "8")), "differs from its limit 8"),
    ("tpu-chip-request", lambda s: edit(s, DEPLOYMENT, tpu_chips(None, None)), f"requests no {TPU}"),
    (
        "tpu-tensor-parallel",
        lambda s: edit(s, DEPLOYMENT, lambda p: arg(p, "tensor-parallel-size", "4")),
        "uses 4 chips but the pod holds 8",
    ),
    (
        "model-fits-hbm",
        lambda s: edit(s, DEPLOYMENT, lambda p: arg(p, "gpu-memory-utilization", "0.5")),
        "too small for meta-llama/Llama-3.1-70B",
    ),
    ("model-fits-hbm", lambda s: edit(s, DEPLOYMENT, lambda p: arg(p, "max-model-len", "262144")), "at most 131072 tokens"),
    ("tpu-node-pool-shape", lambda s: tpu_pool(s, "ct6e-standard-4t", "2x4"), "2 nodes of 4 chips"),
    ("tpu-node-pool-shape", lambda s: tpu_pool(s, "ct6e-standard-8t", "4x4"), "cannot form v6e 4x4"),
    ("tpu-node-pool-shape", lambda s: tpu_pool(s, "ct6e-standard-4t", "4x4"), "set allowMultiHost"),
    ("tpu-node-pool-shape", lambda s: tpu_pool(s, "ct6e-standard-8t", "2x4"), facts.SINGLE_HOST_TOPOLOGY_REFUSED),
    ("tpu-node-pool-shape", lambda s: tpu_pool(s, "ct6e-standard-1t", "1x1"), "Remove placementPolicy"),
    ("tpu-node-pool-shape", lambda s: tpu_pool(s, "ct6e-standard-4t", "4x4", placement=None), "only with COMPACT"),
    ("tpu-node-pool-shape", lambda s: tpu_pool(s, "ct6e-standard-16t", "2x4"), "no TPU machine type GKE offers"),
    ("tpu-node-pool-match", lambda s: tpu_pool(s, "ct6e-standard-4t"), "(pools: llama-70b: tpu-v6e-slice 2x2)"),
    (
        "gke-version-for-tpu",
        lambda s: edit(s, CLUSTER, lambda p: p.update(minMasterVersion="1.30.5-gke.1000")),
        f"older than {V6E.min_gke_standard}",
    ),
    (
        "hpa-metric-exists",
        lambda s: edit(
            s, HPA, lambda p: p["spec"]["metrics"][0]["pods"]["metric"].update(name=facts.gmp_pod_metric(facts.METRIC_KV_CACHE_LEGACY))
        ),
        f"Use {facts.METRIC_KV_CACHE}",
    ),
    ("compile-cache-scale-out", lambda s: edit(s, HPA, dependencies=()), "created only after the Deployment is ready"),
    (
        "compile-cache-scale-out",
        lambda s: edit(s, DEPLOYMENT, lambda p: p["metadata"].pop("annotations")),
        f"annotation {facts.COMPILE_CACHE_ANNOTATION}",
    ),
    ("compile-cache-scale-out", lambda s: edit(s, DEPLOYMENT, lambda p: env(p)[1].update(value="/data")), "per-configuration directory"),
    ("compile-cache-scale-out", lambda s: edit(s, DEPLOYMENT, lambda p: p["spec"].pop("strategy")), "maxSurge 1 and maxUnavailable 0"),
    (
        "compile-cache-scale-out",
        lambda s: edit(without_hpa(s), DEPLOYMENT, lambda p: p["spec"].update(replicas=3)),
        "it is 3: that many writers",
    ),
    ("image-tag-pinned", lambda s: edit(s, DEPLOYMENT, lambda p: container(p).update(image="vllm/vllm-tpu")), "has no tag"),
    ("image-tag-pinned", lambda s: edit(s, DEPLOYMENT, lambda p: container(p).update(image="vllm/vllm-tpu:latest")), "uses latest"),
    (
        "vllm-minimum-version",
        lambda s: edit(s, DEPLOYMENT, lambda p: container(p).update(image="vllm/vllm-tpu:v0.12.0")),
        facts.VLLM_MIN_SAFE_ADVISORY,
    ),
    (
        "vllm-minimum-version",
        lambda s: edit(s, DEPLOYMENT, lambda p: container(p).update(image="vllm/vllm-tpu@sha256:" + "0" * 64)),
        "is pinned by digest only, which names no vLLM release",
    ),
    ("image-tag-pinned", lambda s: edit(s, DEPLOYMENT, lambda p: container(p).update(image="vllm/vllm-tpu:nightly")), "moving tag nightly"),
    (
        "hf-token-plain-env",
        lambda s: edit(s, DEPLOYMENT, lambda p: env(p).append({"name": "HF_TOKEN", "value": HF_LITERAL})),
        "env HF_TOKEN holds a Hugging Face token",
    ),
    ("hf-token-plain-env", lambda s: edit(s, DEPLOYMENT, lambda p: arg(p, "hf-token", HF_LITERAL)), "written into command/args"),
    (
        "hf-token-as-file",
        lambda s: edit(
            s, DEPLOYMENT, lambda p: env(p).append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}})
        ),
        "comes from Secret hf key token",
    ),
    (
        "public-endpoint-auth",
        lambda s: edit(s, SERVICE, lambda p: p["spec"].pop("loadBalancerSourceRanges")),
        "no spec.loadBalancerSourceRanges",
    ),
    (
        "public-endpoint-auth",
        lambda s: edit(s, SERVICE, lambda p: p["spec"].update(loadBalancerSourceRanges=["0.0.0.0/0"])),
        "0.0.0.0/0 admit every address",
    ),
    ("public-endpoint-auth", lambda s: edit(s, DEPLOYMENT, lambda p: env(p).pop(2)), "answers without an API key"),
    ("bucket-access", lambda s: edit(s, BUCKET, lambda p: p.update(uniformBucketLevelAccess=False)), "uniformBucketLevelAccess is False"),
    ("bucket-access", lambda s: edit(s, BUCKET, lambda p: p.pop("publicAccessPrevention")), "publicAccessPrevention is not set"),
    (
        "project-iam-storage-role",
        lambda s: edit(s, PROJECT_GRANT, lambda p: p.update(role="roles/storage.objectUser")),
        "reaches every bucket in it",
    ),
    ("no-basic-roles", lambda s: edit(s, PROJECT_GRANT, lambda p: p.update(role="roles/editor")), "roles/editor is a basic role"),
    ("no-public-principals", lambda s: edit(s, BUCKET_GRANT, lambda p: p.update(member="allUsers")), "granted to allUsers"),
]


def test_the_fixture_stack_passes_every_policy(session: PolicyPackSession, stack: Stack) -> None:
    assert check(session, stack).violations == ()


def test_every_policy_has_a_failing_case() -> None:
    assert {policy for policy, _, _ in CASES} == {p.name for p in pack.POLICIES}


@pytest.mark.parametrize(("policy", "change", "expected"), CASES, ids=[f"{p}:{e[:30]}" for p, _, e in CASES])
def test_a_change_trips_the_policy(
    session: PolicyPackSession, stack: Stack, policy: str, change: Callable[[Stack], Stack], expected: str
) -> None:
    found = messages(check(session, change(stack)), policy)
    assert any(expected in m for m in found), found


def test_messages_name_the_resource_and_never_repeat_a_token(session: PolicyPackSession, stack: Stack) -> None:
    changed = edit(stack, DEPLOYMENT, lambda p: env(p).append({"name": "HF_TOKEN", "value": HF_LITERAL}))
    report = check(session, changed)
    [violation] = report.violations
    assert violation.detail.startswith("Deployment vllm-llama-70b/vllm container vllm: ")
    assert violation.urn.endswith("kubernetes:apps/v1:Deployment::llama-70b")
    assert HF_LITERAL not in violation.message


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda s: edit(
                s,
                SERVICE,
                lambda p: p.update(
                    metadata={**p["metadata"], "annotations": {facts.INTERNAL_LB_ANNOTATIONS[0]: facts.INTERNAL_LB_VALUE}},
                    spec={**p["spec"], "loadBalancerSourceRanges": None},
                ),
            ),
            id="internal LB needs no ranges",
        ),
        pytest.param(
            lambda s: edit(
                s,
                DEPLOYMENT,
                lambda p: container(p).update(args=[a for a in container(p)["args"] if "tensor-parallel" not in a] + ["-tp", "8"]),
            ),
            id="-tp 8",
        ),
        pytest.param(
            lambda s: edit(
                s,
                DEPLOYMENT,
                lambda p: container(p).update(
                    args=[a for a in container(p)["args"] if "tensor-parallel" not in a] + ["--tensor-parallel-size", "8"]
                ),
            ),
            id="--flag value",
        ),
        pytest.param(lambda s: edit(s, DEPLOYMENT, tpu_chips(None, "8")), id="TPU limit only: Kubernetes copies it into requests"),
        pytest.param(lambda s: edit(s, DEPLOYMENT, affinity_instead_of_node_selector), id="required node affinity"),
        pytest.param(
            lambda s: edit(
                s, DEPLOYMENT, lambda p: container(p).update(image=f"vllm/vllm-tpu:{facts.VLLM_DEFAULT_TAG}@sha256:" + "0" * 64)
            ),
            id="tag and digest",
        ),
        pytest.param(lambda s: edit([r for r in s if r.type != POOL], CLUSTER, lambda p: p.update(enableAutopilot=True)), id="Autopilot"),
        pytest.param(lambda s: edit(s, CLUSTER, lambda p: p.pop("minMasterVersion")), id="release channel picks the version"),
        pytest.param(
            lambda s: edit(
                s, HPA, lambda p: p["spec"]["metrics"][0]["pods"]["metric"].update(name=facts.gmp_pod_metric(facts.METRIC_KV_CACHE))
            ),
            id="kv cache metric on 0.22",
        ),
        pytest.param(lambda s: edit(s, DEPLOYMENT, lambda p: env(p).pop(1)), id="no compile cache on the bucket"),
    ],
)
def test_legitimate_variations_pass(session: PolicyPackSession, stack: Stack, change: Callable[[Stack], Stack]) -> None:
    assert check(session, change(stack)).violations == ()


def test_multi_host_pools_pass_when_the_config_allows_them(session: PolicyPackSession, stack: Stack) -> None:
    vms = V6E.slices_of("4x4")[0].vms
    changed = tpu_pool(stack, "ct6e-standard-4t", "4x4")
    # A multi-host pool holds 0 or one slice's VMs (the single-host pool scaled 1-3 VMs).
    one_slice = {"minNodeCount": 0, "maxNodeCount": vms, "locationPolicy": facts.MULTI_HOST_LOCATION_POLICY}
    changed = edit(changed, POOL, lambda p: p.update(autoscaling=one_slice, nodeLocations=["us-east5-b"]), which="llama-70b")
    allowed = check(session, changed, {"all": "mandatory", "tpu-node-pool-shape": {"allowMultiHost": True}})
    assert messages(allowed, "tpu-node-pool-shape") == []


def test_a_leader_worker_set_may_use_a_multi_host_slice(session: PolicyPackSession, stack: Stack) -> None:
    deployment = next(r for r in stack if r.type == DEPLOYMENT)
    template = copy.deepcopy(deployment.properties["spec"]["template"])
    wrapper = {"spec": {"template": template}}
    pod(wrapper)["nodeSelector"][TOPO] = "4x4"
    serving = container(wrapper)
    serving["resources"] = {"limits": {TPU: "4"}}
    serving["args"] = [a for a in serving["args"] if "tensor-parallel" not in a] + ["--tensor-parallel-size=16"]
    serving["env"] = [e for e in serving["env"] if e["name"] != facts.XLA_CACHE_ENV]
    lws = StackResource(
        urn="urn:pulumi:prod::tpu-serving::leaderworkerset.x-k8s.io/v1:LeaderWorkerSet::big",
        type="kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet",
        name="big",
        properties={
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "metadata": {"name": "big"},
            "spec": {"leaderWorkerTemplate": {"size": 4, "workerTemplate": template}},
        },
    )
    report = check(session, [lws])
    assert report.violations == (), [v.detail for v in report.violations]


MULTI_HOST_STACK = ROOT / "tests" / "fixtures" / "policy" / "multihost-stack.yaml"
# What a multi-host stack's policy config sets: the opt-in for multi-host pools.
MULTI_HOST_CONFIG = {"tpu-node-pool-shape": {tpu.ALLOW_MULTI_HOST: True}}
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
V6E_4X8 = V6E.slices_of("4x8")[0]


@pytest.fixture(scope="module")
def multi_host() -> Stack:
    return [StackResource.from_mapping(raw) for raw in yaml.safe_load(MULTI_HOST_STACK.read_text())]


def group(props: dict[str, Any], which: str) -> dict[str, Any]:
    return cast(dict[str, Any], props["spec"]["leaderWorkerTemplate"][which]["spec"])


def host_chips(chips: str) -> Callable[[dict[str, Any]], None]:
    def change(props: dict[str, Any]) -> None:
        group(props, "workerTemplate")["containers"][0]["resources"] = {"requests": {TPU: chips}, "limits": {TPU: chips}}

    return change


def pool_change(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda p: p.update(fields)


MULTI_HOST_CASES: list[tuple[str, Callable[[Stack], Stack], str]] = [
    # Every host of a group on one slice.
    (
        "tpu-pod-topology",
        lambda s: edit(s, LWS, lambda p: group(p, "workerTemplate")["nodeSelector"].update({ACC: "tpu-v5-lite-podslice"})),
        "its templates select different ones",
    ),
    # Group size = hosts of the slice.
    (
        "tpu-pod-topology",
        lambda s: edit(s, LWS, lambda p: p["spec"]["leaderWorkerTemplate"].update(size=V6E_4X8.vms // 2)),
        f"{V6E_4X8.vms // 2} pods take one slice together but it is {V6E_4X8.vms} VM(s)",
    ),
    # Chips per host = chips of one VM of the slice's machine type.
    ("tpu-chip-request", lambda s: edit(s, LWS, host_chips(str(V6E_4X8.chips))), f"must take all {V6E_4X8.chips_per_vm} chips"),
    (
        "tpu-tensor-parallel",
        lambda s: edit(
            s,
            LWS,
            lambda p: group(p, "leaderTemplate")["containers"][0]["args"].__setitem__(3, f"--tensor-parallel-size={V6E_4X8.chips // 2}"),
        ),
        f"the slice holds {V6E_4X8.chips} chips",
    ),
    # Topology = the pool's topology.
    (
        "tpu-node-pool-match",
        lambda s: edit(s, POOL, lambda p: p["placementPolicy"].update(tpuTopology="8x8"), which="llama-405b-0"),
        "(8 VMs: a multi-host pool) but no TPU node pool",
    ),
    # Multi-host pools: COMPACT, one zone, 0 or hosts nodes.
    (
        "tpu-node-pool-shape",
        lambda s: edit(
            s, POOL, lambda p: p.pop("placementPolicy") and p.update(placementPolicy={"tpuTopology": "4x8"}), which="llama-405b-0"
        ),
        "only with COMPACT",
    ),
    (
        "tpu-node-pool-shape",
        lambda s: edit(s, POOL, pool_change(nodeLocations=["us-east5-a", "us-east5-b"]), which="llama-405b-0"),
        "lists 2 zones",
    ),
    (
        "tpu-node-pool-shape",
        lambda s: edit(s, POOL, lambda p: p["autoscaling"].update(maxNodeCount=V6E_4X8.vms // 2), which="llama-405b-0"),
        f"autoscaling.maxNodeCount is {V6E_4X8.vms // 2}",
    ),
    (
        "tpu-node-pool-shape",
        lambda s: edit(s, POOL, lambda p: p["autoscaling"].update(minNodeCount=1), which="llama-405b-0"),
        f"autoscaling.minNodeCount is 1 but a 4x8 slice is {V6E_4X8.vms} VMs",
    ),
    (
        "tpu-node-pool-shape",
        lambda s: edit(
            s,
            POOL,
            lambda p: p.update(autoscaling={"totalMinNodeCount": 0, "totalMaxNodeCount": V6E_4X8.vms, "locationPolicy": "ANY"}),
            which="llama-405b-0",
        ),
        facts.MULTI_HOST_ZERO_MAX_REFUSED,
    ),
    (
        "tpu-node-pool-shape",
        lambda s: edit(s, POOL, lambda p: p["autoscaling"].update(locationPolicy="BALANCED"), which="llama-405b-0"),
        f"assembled only with {facts.MULTI_HOST_LOCATION_POLICY}",
    ),
]


def test_the_programs_multi_host_stack_passes_with_the_opt_in_and_only_the_opt_in(session: PolicyPackSession, run_stack: RunStack) -> None:
    """The program's multi-host example (tests/test_multihost.py), as `make plan` hands it to the pack."""
    resources = run_stack(MULTI_HOST_OVERRIDES).policy_resources()
    assert any(r.type == LWS for r in resources)
    allowed = check(session, resources, MULTI_HOST_CONFIG)
    assert allowed.violations == (), [v.detail for v in allowed.violations]
    refused = check(session, resources)
    assert {v.policy_name for v in refused.violations} == {"tpu-node-pool-shape"}
    assert all(tpu.ALLOW_MULTI_HOST in v.detail for v in refused.violations)


def test_the_multi_host_stack_passes_with_the_opt_in_and_only_the_opt_in(session: PolicyPackSession, multi_host: Stack) -> None:
    assert check(session, multi_host, MULTI_HOST_CONFIG).violations == ()
    assert {v.policy_name for v in check(session, multi_host).violations} == {"tpu-node-pool-shape"}


@pytest.mark.parametrize(("policy", "change", "expected"), MULTI_HOST_CASES, ids=[f"{p}:{e[:30]}" for p, _, e in MULTI_HOST_CASES])
def test_a_change_trips_the_multi_host_rule(
    session: PolicyPackSession, multi_host: Stack, policy: str, change: Callable[[Stack], Stack], expected: str
) -> None:
    found = messages(check(session, change(multi_host), MULTI_HOST_CONFIG), policy)
    assert any(expected in m for m in found), found


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda s: edit(s, POOL, lambda p: p["autoscaling"].update(minNodeCount=V6E_4X8.vms), which="llama-405b-0"), id="min = hosts"
        ),
        pytest.param(lambda s: edit(s, POOL, lambda p: p.pop("nodeLocations"), which="llama-405b-0"), id="zone from a zonal cluster"),
        pytest.param(
            lambda s: edit(s, LWS, lambda p: p["spec"]["leaderWorkerTemplate"].pop("leaderTemplate")), id="leader = worker template"
        ),
    ],
)
def test_legitimate_multi_host_variations_pass(session: PolicyPackSession, multi_host: Stack, change: Callable[[Stack], Stack]) -> None:
    report = check(session, change(multi_host), MULTI_HOST_CONFIG)
    assert report.violations == (), [v.detail for v in report.violations]


def test_a_single_host_pod_does_not_match_the_multi_host_form_of_its_topology(session: PolicyPackSession, stack: Stack) -> None:
    """v6e 2x4 is one 8-chip VM or two 4-chip VMs: a pool of the second never runs a pod that needs the first."""
    [two_vms] = [s for s in V6E.slices_of("2x4") if s.multi_host]
    changed = tpu_pool(stack, two_vms.machine_type, "2x4")
    found = messages(check(session, changed, MULTI_HOST_CONFIG), "tpu-node-pool-match")
    assert any(f"on {two_vms.machine_type})" in m for m in found), found


def test_the_seed_trips_what_it_should(session: PolicyPackSession) -> None:
    report = check(session, load_manifests(SEED))
    assert {v.policy_name: v.enforcement_level for v in report.violations} == {
        "image-tag-pinned": "mandatory",
        "public-endpoint-auth": "mandatory",
        "compile-cache-scale-out": "mandatory",
        "hf-token-as-file": "advisory",  # advisory by design: prod does not raise it
    }
    scale_out = " ".join(messages(report, "compile-cache-scale-out"))
    assert "HorizontalPodAutoscaler vllm-hpa scales it" in scale_out and "cannot create directories" in scale_out
    auth = " ".join(messages(report, "public-endpoint-auth"))
    assert "no spec.loadBalancerSourceRanges" in auth and "Deployment vllm-tpu container vllm-tpu answers without an API key" in auth


def test_the_dev_config_makes_the_seed_advisory_where_sensible(session: PolicyPackSession) -> None:
    levels = {v.policy_name: v.enforcement_level for v in check(session, load_manifests(SEED), DEV).violations}
    assert levels == {
        "image-tag-pinned": "advisory",
        "public-endpoint-auth": "mandatory",
        "compile-cache-scale-out": "mandatory",
        "hf-token-as-file": "advisory",
    }


def test_unknown_values_are_skipped_not_reported(session: PolicyPackSession, stack: Stack) -> None:
    """What a preview sends before the cloud has answered: no violation, and no advisory
    "can't run policy" diagnostic either, which the SDK would emit if a policy read one."""

    def unknown_deployment(props: dict[str, Any]) -> None:
        pod(props)["nodeSelector"][TOPO] = UNKNOWN
        container(props)["resources"]["requests"][TPU] = UNKNOWN
        env(props)[2]["value"] = UNKNOWN
        p_args = container(props)["args"]
        p_args[p_args.index("--tensor-parallel-size=8")] = UNKNOWN
        props["metadata"]["namespace"] = UNKNOWN

    changed = edit(stack, DEPLOYMENT, unknown_deployment)
    changed = edit(changed, SERVICE, lambda p: p["spec"].update(loadBalancerSourceRanges=UNKNOWN))
    changed = edit(changed, HPA, lambda p: p["spec"]["scaleTargetRef"].update(name=UNKNOWN))
    changed = edit(changed, POOL, lambda p: p["nodeConfig"].update(machineType=UNKNOWN), which="llama-70b")
    changed = edit(changed, BUCKET, lambda p: p.update(uniformBucketLevelAccess=UNKNOWN, publicAccessPrevention=UNKNOWN))
    assert check(session, changed).violations == ()


def test_a_validate_function_reads_the_sdks_proxies() -> None:
    """The cheapest path: a policy's validate with hand-built args, as the SDK's own tests do."""
    reported: list[str] = []
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])

    def validate(props: dict[str, Any]) -> None:
        args = ResourceValidationArgs(POOL, unknown_checking_proxy(props), "urn:x", "pool", options, None)
        tpu.validate_node_pool_shape(args, lambda message, urn: reported.append(message))

    validate({"nodeConfig": {"machineType": UNKNOWN}, "placementPolicy": {"type": "COMPACT", "tpuTopology": "2x4"}})
    assert reported == []
    validate({"nodeConfig": {"machineType": "ct6e-standard-4t"}, "placementPolicy": {"type": "COMPACT", "tpuTopology": "2x4"}})
    assert reported == [
        "NodePool pool: 2x4 on ct6e-standard-4t is 2 nodes of 4 chips; a pod that needs all 8 chips on one node "
        "never schedules there. Use ct6e-standard-8t for a single-host 2x4."
    ]


def test_an_environment_can_require_images_by_digest(session: PolicyPackSession, stack: Stack) -> None:
    strict = {"image-tag-pinned": {"requireDigest": True}}
    [tagged] = messages(check(session, stack, strict), "image-tag-pinned")
    assert "has no digest" in tagged and "requireDigest" in tagged
    digest = "sha256:" + "ab" * 32
    pinned = edit(stack, DEPLOYMENT, lambda p: container(p).update(image=f"vllm/vllm-tpu:{facts.VLLM_DEFAULT_TAG}@{digest}"))
    assert messages(check(session, pinned, strict), "image-tag-pinned") == []
    assert messages(check(session, stack), "image-tag-pinned") == []
