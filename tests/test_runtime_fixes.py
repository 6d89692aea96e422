"""Runtime defects of issue 11: rollout and Service waits that outlast a cold start, a bounded
FUSE file cache, a compile-cache key that ignores flags that shape no graph, and the metrics
adapter as Google ships it now."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from components import facts, tokens, vllm_server
from components.config import ModelConfig, load_stack_config
from components.vllm_server import compile_cache_key, gcsfuse_sidecar
from conftest import HF_TOKEN, RunStack
from helpers import base_model, container, of_type, only
from offline_plan.harness import ProgramRun

AUTOPILOT = {"name": "llm-test", "mode": "autopilot", "zones": ["us-east5-b"]}
RAW = {"project": "acme-llm-test", "region": "us-east5", "cluster": {"zones": ["us-east5-b"]}}
MIB = 1024


def model_config(**overrides: Any) -> ModelConfig:
    return load_stack_config({**RAW, "models": [{**base_model(), **overrides}]}, "t").models[0]


def deployment(run: ProgramRun) -> dict[str, Any]:
    return only(run, tokens.DEPLOYMENT, "llama-70b").inputs


def startup_budget_seconds(run: ProgramRun) -> int:
    probe = container(run, "llama-70b")["startupProbe"]
    return int(probe["periodSeconds"] * probe["failureThreshold"])


def cache_option_mib(run: ProgramRun) -> int:
    pod = deployment(run)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    sizes = [o for o in volume["csi"]["volumeAttributes"]["mountOptions"].split(",") if o.startswith("file-cache:max-size-mb:")]
    assert len(sizes) == 1, sizes
    return int(sizes[0].rsplit(":", 1)[1])


# --- 1. progressDeadlineSeconds -------------------------------------------------------------------


@pytest.mark.parametrize("minutes", [40, 90])
def test_progress_deadline_outlasts_a_cold_start(run_stack: RunStack, minutes: int) -> None:
    run = run_stack({"tpu-serving:models": [{**base_model(), "startupMinutes": minutes}]})
    spec, annotations = deployment(run)["spec"], deployment(run)["metadata"]["annotations"]
    # Kubernetes' default (600 s) would mark every cold start ProgressDeadlineExceeded.
    assert spec["progressDeadlineSeconds"] > 600
    assert spec["progressDeadlineSeconds"] > startup_budget_seconds(run), "the probe, not the deadline, decides a pod is stuck"
    assert spec["progressDeadlineSeconds"] == int(annotations["pulumi.com/timeoutSeconds"])


def test_progress_deadline_follows_startup_minutes(run_stack: RunStack) -> None:
    short = deployment(run_stack({"tpu-serving:models": [{**base_model(), "startupMinutes": 40}]}))["spec"]
    long = deployment(run_stack({"tpu-serving:models": [{**base_model(), "startupMinutes": 100}]}))["spec"]
    assert long["progressDeadlineSeconds"] - short["progressDeadlineSeconds"] == 60 * 60


def test_metrics_adapter_keeps_the_default_progress_deadline(run_stack: RunStack) -> None:
    adapter = only(run_stack(), tokens.DEPLOYMENT, "metrics-adapter").inputs
    assert "progressDeadlineSeconds" not in adapter["spec"], "it starts in seconds; 600 s already flags a stuck rollout"


# --- 2. Service await -----------------------------------------------------------------------------


@pytest.mark.parametrize("exposure", ["internal", "external"])
def test_service_waits_as_long_as_the_first_replica(run_stack: RunStack, exposure: str) -> None:
    model = {**base_model(), "exposure": exposure}
    secrets = {"tpu-serving:hfToken": HF_TOKEN}
    if exposure == "external":
        model["sourceRanges"] = ["203.0.113.0/24"]
        secrets["tpu-serving:apiKey"] = "k-123456"
    run = run_stack({"tpu-serving:models": [model]}, secrets=secrets)
    annotations = only(run, tokens.K8S_SERVICE, "llama-70b").inputs["metadata"]["annotations"]
    assert "pulumi.com/skipAwait" not in annotations, "the exported address must be the real one"
    # Its endpoints are Ready only once the pod has compiled: the 10-minute default would fail.
    assert int(annotations["pulumi.com/timeoutSeconds"]) > startup_budget_seconds(run)
    assert annotations["pulumi.com/timeoutSeconds"] == deployment(run)["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]
    internal = annotations.get(facts.INTERNAL_LB_ANNOTATIONS[0]) == facts.INTERNAL_LB_VALUE
    assert internal is (exposure == "internal")


# --- 3. Bounded FUSE file cache -------------------------------------------------------------------


def test_autopilot_file_cache_stays_below_the_sidecar_memory_limit(run_stack: RunStack) -> None:
    run = run_stack({"tpu-serving:cluster": AUTOPILOT})
    limit_gib = int(deployment(run)["spec"]["template"]["metadata"]["annotations"]["gke-gcsfuse/memory-limit"].removesuffix("Gi"))
    cache_mib = cache_option_mib(run)
    assert cache_mib >= 131 * MIB, "Llama 3.1 70B's ~131 GiB of bf16 weights still fit in the cache"
    assert limit_gib * MIB - cache_mib >= vllm_server.GCSFUSE_SIDECAR_OWN_MEMORY_GIB * MIB, "gcsfuse keeps room for itself"


def test_standard_file_cache_fits_in_what_the_node_leaves(run_stack: RunStack) -> None:
    run = run_stack()
    machine = facts.GENERATIONS["v6e"].machine("ct6e-standard-8t")
    server_gib = int(container(run, "llama-70b")["resources"]["limits"]["memory"].removesuffix("Gi"))
    reserved_gib = facts.gke_reserved_memory_gib(machine.memory_gib) + vllm_server.GKE_NODE_DAEMONS_MEMORY_GIB
    assert 0 < cache_option_mib(run) <= (machine.memory_gib - server_gib - reserved_gib - vllm_server.GCSFUSE_SIDECAR_OWN_MEMORY_GIB) * MIB


def test_every_single_host_shape_gets_a_positive_cache_below_its_bound() -> None:
    base = model_config()
    for generation in facts.GENERATIONS.values():
        for slice_ in (s for s in generation.slices if not s.multi_host):
            model = dataclasses.replace(base, generation=generation, slice=slice_, sizing=None)
            machine = model.machine
            standard = gcsfuse_sidecar(model, autopilot=False)
            assert 0 < standard.file_cache_mib < (machine.memory_gib - vllm_server.pod_memory_gib(machine)) * MIB, machine.name
            autopilot = gcsfuse_sidecar(model, autopilot=True)
            assert 0 < autopilot.file_cache_mib < autopilot.memory_gib * MIB, machine.name
            assert autopilot.annotations["gke-gcsfuse/memory-limit"] == f"{autopilot.memory_gib}Gi"


def test_gke_memory_reservation_follows_the_documented_tiers() -> None:
    # 150 GiB: 25% of 4 + 20% of 4 + 10% of 8 + 6% of 112 + 2% of 22, plus 100 MiB = 9.8577 GiB.
    assert facts.gke_reserved_memory_gib(150) == pytest.approx(1 + 0.8 + 0.8 + 6.72 + 0.44 + 100 / 1024)
    assert facts.gke_reserved_memory_gib(2) == pytest.approx(0.5 + 100 / 1024)


# --- 4. Compile-cache key -------------------------------------------------------------------------


def test_port_and_paths_do_not_change_the_compile_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    model = model_config()
    key, args = compile_cache_key(model), vllm_server.serving_args(model)
    monkeypatch.setattr(facts, "VLLM_PORT", 9000)
    monkeypatch.setattr(vllm_server, "DATA_DIR", "/bucket")
    moved = vllm_server.serving_args(model)
    assert {"--port=9000", "--download-dir=/bucket/models"} <= set(moved) - set(args)
    assert compile_cache_key(model) == key


def test_shutdown_timeout_does_not_change_the_cache_directory(run_stack: RunStack) -> None:
    def cache_path(run: ProgramRun) -> str:
        return next(e["value"] for e in container(run, "llama-70b")["env"] if e["name"] == facts.XLA_CACHE_ENV)

    drained = run_stack({"tpu-serving:models": [{**base_model(), "shutdownTimeoutSeconds": 300}]})
    assert "--shutdown-timeout=300" in container(drained, "llama-70b")["args"]
    assert cache_path(drained) == cache_path(run_stack())


@pytest.mark.parametrize(
    "change",
    [{"maxModelLen": 8192}, {"maxNumSeqs": 64}, {"maxNumBatchedTokens": 4096}, {"gpuMemoryUtilization": 0.8}, {"imageTag": "v0.23.0"}],
)
def test_what_shapes_the_graphs_changes_the_key(change: dict[str, Any]) -> None:
    assert compile_cache_key(model_config(**change)) != compile_cache_key(model_config())


# --- 5. Metrics adapter ---------------------------------------------------------------------------


def adapter_children(run: ProgramRun, type_: str) -> list[Any]:
    adapter = only(run, tokens.METRICS_ADAPTER).urn
    return [r for r in of_type(run, type_) if r.parent == adapter]


def test_metrics_adapter_runs_googles_current_image(run_stack: RunStack) -> None:
    adapter = only(run_stack(), tokens.DEPLOYMENT, "metrics-adapter").inputs
    [c] = adapter["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.16.9-gke.0"
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}


def test_hpa_controller_may_read_external_metrics(run_stack: RunStack) -> None:
    run = run_stack()
    [role] = [r for r in adapter_children(run, tokens.CLUSTER_ROLE) if "external" in r.name]
    assert role.inputs["metadata"]["name"] == "external-metrics-reader"
    assert role.inputs["rules"] == [{"apiGroups": ["external.metrics.k8s.io"], "resources": ["*"], "verbs": ["list", "get", "watch"]}]
    bindings = adapter_children(run, tokens.CLUSTER_ROLE_BINDING)
    [binding] = [b for b in bindings if b.inputs["metadata"]["name"] == "external-metrics-reader"]
    assert binding.inputs["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "external-metrics-reader"}
    assert binding.inputs["subjects"] == [{"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}]
    assert role.urn in binding.dependencies


def test_metrics_adapter_serves_the_api_versions_googles_manifest_registers(run_stack: RunStack) -> None:
    services = {
        (s.inputs["spec"]["group"], s.inputs["spec"]["version"]): s.inputs["spec"]["versionPriority"]
        for s in adapter_children(run_stack(), tokens.API_SERVICE)
    }
    assert services == {
        ("custom.metrics.k8s.io", "v1beta1"): 100,
        ("custom.metrics.k8s.io", "v1beta2"): 200,
        ("external.metrics.k8s.io", "v1beta1"): 100,
    }
