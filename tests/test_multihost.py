"""Multi-host serving (issue 16): Llama 3.1 405B on a v6e 4x8 slice (8 x ct6e-standard-4t), the slice
`make recommend ALLOW_MULTI_HOST=1` proposes, planned offline: pools of whole slices, the pinned
LeaderWorkerSet controller, one LWS group per slice wired for Ray, HPA and PDBs per group."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components import facts, models, sizing, tokens
from components.config import load_stack_config
from components.errors import ConfigError
from components.vllm_multihost_server import RAY_HEAD, RAY_WORKER
from conftest import BASE, RunStack, build_config
from helpers import of_type, only
from offline_plan import second_apply
from offline_plan.harness import ProgramRun

ZONE = "us-east5-b"
MODEL: dict[str, Any] = {
    "name": "llama-405b",
    "hfId": "meta-llama/Llama-3.1-405B",
    "generation": "v6e",
    "topology": "auto",
    "allowMultiHost": True,
    "zones": [ZONE],
    "minReplicas": 1,
    "maxReplicas": 2,
}
OVERRIDES = {"tpu-serving:models": [MODEL]}


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    from conftest import NumberedProjectMocks
    from offline_plan.harness import run_program

    config, secrets = build_config(OVERRIDES)
    return run_program("test", config, secrets, project="tpu-serving", plan_mocks=NumberedProjectMocks())


def _raw(model: dict[str, Any], cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"project": "acme-llm-test", "region": "us-east5", "cluster": cluster or BASE["tpu-serving:cluster"], "models": [model]}


def test_recommend_and_config_agree_on_405b() -> None:
    """What `make recommend ... ALLOW_MULTI_HOST=1` proposes is what the stack builds."""
    arch = models.lookup("meta-llama/Llama-3.1-405B")
    assert arch is not None
    choice = sizing.choose(sizing.candidates(arch, facts.GENERATIONS["v6e"], 4096, 32, 0.95), allow_multi_host=True)
    assert choice is not None and choice.slice == facts.Slice("4x8", 32, 8, "ct6e-standard-4t")
    explicit = {**MODEL, "topology": choice.slice.topology, "machineType": choice.slice.machine_type}
    for model in (MODEL, explicit):
        resolved = load_stack_config(_raw(model), "t").models[0]
        assert resolved.slice == choice.slice and resolved.multi_host
        assert resolved.tensor_parallel_size == choice.tensor_parallel_size == 32


@pytest.mark.parametrize(
    ("change", "key", "text"),
    [
        ({"allowMultiHost": False, "topology": "4x8"}, "models[0].topology", "set allowMultiHost: true"),
        ({"allowMultiHost": False}, "models[0].topology", "try allowMultiHost: true"),
        ({"zones": ["us-east5-a", "us-east5-b"]}, "models[0].zones", "runs in one zone"),
    ],
)
def test_multi_host_needs_the_opt_in_and_one_zone(change: dict[str, Any], key: str, text: str) -> None:
    cluster = {"name": "llm-test", "zones": ["us-east5-a", "us-east5-b"], "extraTpuZones": {"v6e": ["us-east5-a"]}}
    with pytest.raises(ConfigError) as error:
        load_stack_config(_raw({**MODEL, **change}, cluster), "t")
    assert error.value.key == key and text in str(error.value)
    assert "\n" not in str(error.value)


def test_autopilot_refuses_a_multi_host_model() -> None:
    with pytest.raises(ConfigError, match=r"needs cluster\.mode: standard"):
        load_stack_config(_raw(MODEL, {"name": "llm-test", "mode": "autopilot", "zones": [ZONE]}), "t")


def test_one_compact_pool_per_slice_sized_in_whole_slices(run: ProgramRun) -> None:
    pools = sorted((p for p in of_type(run, tokens.NODE_POOL) if p.name.startswith("llama-405b")), key=lambda p: p.name)
    assert [p.name for p in pools] == ["llama-405b-slice-0", "llama-405b-slice-1"]
    for index, pool in enumerate(pools):
        inputs = pool.inputs
        assert inputs["nodeConfig"]["machineType"] == "ct6e-standard-4t"
        assert inputs["placementPolicy"] == {"type": "COMPACT", "tpuTopology": "4x8"}
        assert inputs["nodeLocations"] == [ZONE]
        hosts = 0 if index else 8  # minReplicas 1: the first pool keeps its slice, the second rests at 0
        assert inputs["initialNodeCount"] == hosts
        # Per zone, never total_*: GKE checks the slice against max_node_count (facts.MULTI_HOST_ZERO_MAX_REFUSED).
        assert inputs["autoscaling"] == {"minNodeCount": hosts, "maxNodeCount": 8, "locationPolicy": "ANY"}


def test_the_lws_controller_is_pinned_and_everything_lws_waits_for_it(run: ProgramRun) -> None:
    [release] = [r for r in run.registrations if r.type == tokens.CONFIG_FILE]
    assert release.inputs["file"] == facts.LWS_MANIFEST_URL
    assert facts.LWS_VERSION in facts.LWS_MANIFEST_URL
    assert len(of_type(run, tokens.LWS_CONTROLLER)) == 1
    lws = only(run, tokens.LEADER_WORKER_SET)
    controller = only(run, tokens.LWS_CONTROLLER).urn
    assert controller in lws.dependencies or release.urn in lws.dependencies
    assert {p.urn for p in of_type(run, tokens.NODE_POOL) if p.name.startswith("llama-405b")} <= set(lws.dependencies)


def test_single_host_stacks_install_no_controller(run_stack: RunStack) -> None:
    single = run_stack()
    assert of_type(single, tokens.CONFIG_FILE) == [] and of_type(single, tokens.LWS_CONTROLLER) == []


def test_the_leader_worker_set_has_one_group_per_slice(run: ProgramRun) -> None:
    lws = only(run, tokens.LEADER_WORKER_SET).inputs
    assert (lws["apiVersion"], lws["kind"]) == ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
    annotations = lws["metadata"]["annotations"]
    assert annotations[facts.LWS_EXCLUSIVE_TOPOLOGY_ANNOTATION] == "cloud.google.com/gke-nodepool"
    assert annotations["pulumi.com/waitFor"] == "condition=Available"
    spec = lws["spec"]
    assert "replicas" not in spec, "the HPA owns the group count"
    assert spec["rolloutStrategy"] == {"type": "RollingUpdate", "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0}}
    template = spec["leaderWorkerTemplate"]
    assert template["size"] == 8 and template["restartPolicy"] == "RecreateGroupOnPodRestart"
    for role in ("leaderTemplate", "workerTemplate"):
        pod = template[role]["spec"]
        container = pod["containers"][0]
        assert container["resources"]["requests"]["google.com/tpu"] == container["resources"]["limits"]["google.com/tpu"] == "4"
        assert pod["nodeSelector"][facts.ACCELERATOR_LABEL] == "tpu-v6e-slice"
        assert pod["nodeSelector"][facts.TOPOLOGY_LABEL] == "4x8"
        assert {"key": "google.com/tpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert any(v["name"] == "hf-token" and v["secret"]["defaultMode"] == 0o400 for v in pod["volumes"])
        assert any(v.get("csi", {}).get("driver") == facts.GCSFUSE_DRIVER for v in pod["volumes"])
        # The compile cache on the node's disk, bounded: in memory it would compete with the FUSE RAM cache.
        assert {"name": "xla-cache", "emptyDir": {"sizeLimit": "20Gi"}} in pod["volumes"]
        assert template[role]["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TPU_MULTIHOST_BACKEND"] == "ray"
        assert re.fullmatch(r"/var/cache/xla/[0-9a-f]{16}", env["VLLM_XLA_CACHE_PATH"]), "pod-local: one writer per directory"
        assert all(not re.search(r"[a-z]_[a-z]", k) for k in _keys(pod)), "a CustomResource takes camelCase"
    leader = template["leaderTemplate"]["spec"]["containers"][0]
    assert leader["command"][2].startswith(RAY_HEAD) and "ray start --head --port=6379" in leader["command"][2]
    assert "--tensor-parallel-size=32" in leader["args"] and "--pipeline-parallel-size=1" in leader["args"]
    assert "--distributed-executor-backend=ray" in leader["args"]
    assert leader["startupProbe"]["httpGet"]["path"] == "/health"
    assert leader["startupProbe"]["periodSeconds"] * leader["startupProbe"]["failureThreshold"] >= 40 * 60
    worker = template["workerTemplate"]["spec"]["containers"][0]
    assert worker["command"] == ["/bin/sh", "-c", RAY_WORKER]
    assert '--address="$LWS_LEADER_ADDRESS:6379" --block' in RAY_WORKER
    assert "startupProbe" not in worker and "readinessProbe" not in worker


def _keys(value: Any) -> list[str]:
    skip = {"labels", "annotations", "nodeSelector", "matchLabels", "volumeAttributes", "requests", "limits"}
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in [k, *([] if k in skip else _keys(v))]]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_service_and_metrics_reach_the_leaders_only(run: ProgramRun) -> None:
    leaders = {facts.LWS_WORKER_INDEX_LABEL: "0"}
    service = only(run, tokens.K8S_SERVICE, "llama-405b").inputs
    assert leaders.items() <= service["spec"]["selector"].items()
    monitoring = only(run, tokens.POD_MONITORING, "llama-405b").inputs
    assert leaders.items() <= monitoring["spec"]["selector"]["matchLabels"].items()
    policy = only(run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "llama-405b").inputs["spec"]
    peers = [{"podSelector": {"matchLabels": {facts.LWS_NAME_LABEL: "vllm-group"}}}]
    assert {"from": peers} in policy["ingress"] and {"to": peers} in policy["egress"]


def test_hpa_scales_whole_groups_after_the_lws_is_ready(run: ProgramRun) -> None:
    hpa = only(run, tokens.HPA)
    target = hpa.inputs["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": "vllm-group"}
    assert (hpa.inputs["spec"]["minReplicas"], hpa.inputs["spec"]["maxReplicas"]) == (1, 2)
    assert only(run, tokens.LEADER_WORKER_SET).urn in hpa.dependencies


def test_a_disruption_budget_per_group(run: ProgramRun) -> None:
    budgets = sorted(of_type(run, tokens.PDB), key=lambda r: r.name)
    assert [b.name for b in budgets] == ["llama-405b-group-0", "llama-405b-group-1"]
    for index, budget in enumerate(budgets):
        spec = budget.inputs["spec"]
        assert spec["minAvailable"] == 8
        assert spec["selector"]["matchLabels"] == {facts.LWS_NAME_LABEL: "vllm-group", facts.LWS_GROUP_INDEX_LABEL: str(index)}


@pytest.mark.slow
def test_second_apply_changes_nothing_for_the_multi_host_stack() -> None:
    config, secrets = build_config(OVERRIDES)
    result = second_apply.check("test", config, secrets, project="tpu-serving")
    assert result.changes == [], "\n".join(result.lines())


def test_the_private_control_plane_reaches_the_lws_webhook_before_the_controller_is_applied(run: ProgramRun) -> None:
    """GKE's automatic rule opens 443 and 10250 only; the LWS webhook listens on 9443 (failurePolicy Fail)."""
    [rule] = [r for r in run.registrations if r.type == tokens.FIREWALL]
    assert rule.inputs["direction"] == "INGRESS"
    assert rule.inputs["sourceRanges"] == ["172.16.0.0/28"]
    assert rule.inputs["allows"] == [{"protocol": "tcp", "ports": ["9443"]}]
    assert rule.inputs["targetServiceAccounts"] == ["llm-test-nodes@acme-llm-test.iam.gserviceaccount.com"]
    release = next(r for r in run.registrations if r.type == tokens.CONFIG_FILE)
    assert rule.urn in release.dependencies


def test_no_service_takes_the_name_of_the_leader_worker_set(run: ProgramRun) -> None:
    """The LWS controller resolves LWS_LEADER_ADDRESS through a headless Service named after the LWS,
    and creates none when a Service of that name already exists."""
    [lws] = [r for r in run.registrations if r.type == f"kubernetes:{facts.LWS_API_VERSION}:{facts.LWS_KIND}"]
    services = {r.inputs["metadata"]["name"] for r in run.registrations if r.type == tokens.K8S_SERVICE}
    assert lws.inputs["metadata"]["name"] == "vllm-group"
    assert "vllm-group" not in services and "vllm" in services
