"""The whole stack from config: what each component registers, and how they are wired."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components import facts, tokens
from components.vllm_server import compile_cache_key, pod_memory_gib
from conftest import HF_TOKEN, PROJECT_NUMBER, RunStack
from helpers import base_model, container, of_type, only, shipped_run


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_stacks_build(stack: str) -> None:
    run = shipped_run(stack)
    types = {r.type for r in run.registrations}
    assert {tokens.CLUSTER, tokens.BUCKET, tokens.DEPLOYMENT} <= types
    assert any(note.startswith("tpu-serving:hfToken") for note in run.notes)


def test_prod_is_the_seed_case_on_standard() -> None:
    run = shipped_run("prod")
    pool = only(run, tokens.NODE_POOL, "llama-70b")
    # A single-host 2x4: the machine type makes the slice, and GKE refuses a topology for it.
    assert pool.inputs["nodeConfig"]["machineType"] == "ct6e-standard-8t"
    assert "placementPolicy" not in pool.inputs
    assert pool.inputs["autoscaling"]["totalMinNodeCount"] == 1
    # two replicas at most, plus the one spare slice a rolling update starts before stopping an old pod
    assert pool.inputs["autoscaling"]["totalMaxNodeCount"] == 3
    assert pool.inputs["nodeLocations"] == ["us-east5-b"]
    cluster = only(run, tokens.CLUSTER)
    assert cluster.inputs["removeDefaultNodePool"] is True
    assert only(run, tokens.NODE_POOL, "llm-prod-system").inputs["nodeConfig"]["machineType"] == "e2-standard-4"


def test_dev_is_autopilot_without_node_pools() -> None:
    run = shipped_run("dev")
    assert only(run, tokens.CLUSTER).inputs["enableAutopilot"] is True
    assert of_type(run, tokens.NODE_POOL) == []
    selector = only(run, tokens.DEPLOYMENT).inputs["spec"]["template"]["spec"]["nodeSelector"]
    assert selector["cloud.google.com/gke-tpu-accelerator"] == "tpu-v6e-slice"
    assert selector["cloud.google.com/gke-tpu-topology"] == "1x1"
    assert selector["cloud.google.com/gke-spot"] == "true"


def test_cluster_settings(run_stack: RunStack) -> None:
    cluster = only(run_stack(), tokens.CLUSTER).inputs
    assert cluster["workloadIdentityConfig"] == {"workloadPool": "acme-llm-test.svc.id.goog"}
    assert cluster["addonsConfig"]["gcsFuseCsiDriverConfig"] == {"enabled": True}
    assert cluster["monitoringConfig"]["managedPrometheus"] == {"enabled": True}
    assert cluster["privateClusterConfig"]["enablePrivateNodes"] is True
    assert cluster["enableLegacyAbac"] is False
    assert cluster["masterAuth"]["clientCertificateConfig"] == {"issueClientCertificate": False}
    assert cluster["deletionProtection"] is True
    assert cluster["releaseChannel"] == {"channel": "REGULAR"}


def test_bucket_and_bucket_level_grant(run_stack: RunStack) -> None:
    run = run_stack()
    bucket = only(run, tokens.BUCKET)
    assert bucket.inputs["uniformBucketLevelAccess"] is True
    assert bucket.inputs["publicAccessPrevention"] == "enforced"
    assert bucket.inputs["forceDestroy"] is False
    assert bucket.inputs["location"] == "US-EAST5"
    grant = only(run, tokens.BUCKET_IAM_MEMBER)
    assert grant.inputs["role"] == "roles/storage.objectUser"
    assert grant.inputs["member"] == (
        f"principal://iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/"
        "acme-llm-test.svc.id.goog/subject/ns/vllm-llama-70b/sa/vllm"
    )
    storage_roles = [r for r in of_type(run, tokens.PROJECT_IAM_MEMBER) if "storage" in r.inputs["role"]]
    assert storage_roles == [], "no project-wide storage grant"
    account = only(run, tokens.K8S_SERVICE_ACCOUNT, "llama-70b").inputs
    assert account["metadata"] == {**account["metadata"], "name": "vllm", "namespace": "vllm-llama-70b"}


def test_protect_data_protects_the_bucket(run_stack: RunStack) -> None:
    assert only(run_stack(), tokens.BUCKET).protect is False
    bucket = only(run_stack({"tpu-serving:protectData": True}), tokens.BUCKET)
    assert bucket.protect and bucket.retain_on_delete


def test_deployment_args_selectors_and_chips(run_stack: RunStack) -> None:
    run = run_stack()
    c = container(run, "llama-70b")
    assert "--tensor-parallel-size=8" in c["args"]
    assert "--model=meta-llama/Llama-3.1-70B" in c["args"]
    assert "--max-model-len=4096" in c["args"]
    assert "--download-dir=/data/models" in c["args"]
    assert c["image"] == "vllm/vllm-tpu:v0.22.0"
    assert c["resources"]["requests"]["google.com/tpu"] == c["resources"]["limits"]["google.com/tpu"] == "8"
    pod = only(run, tokens.DEPLOYMENT, "llama-70b").inputs["spec"]["template"]["spec"]
    pool = only(run, tokens.NODE_POOL, "llama-70b")
    machine = pool.inputs["nodeConfig"]["machineType"]
    assert pod["nodeSelector"]["cloud.google.com/gke-tpu-topology"] == next(
        s.topology for s in facts.GENERATIONS["v6e"].slices if s.machine_type == machine and not s.multi_host
    )
    assert pod["nodeSelector"]["serving.tpu.dev/model"] == pool.inputs["nodeConfig"]["labels"]["serving.tpu.dev/model"]
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 40 * 60
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    volume = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert volume["csi"]["driver"] == "gcsfuse.csi.storage.gke.io"
    assert volume["csi"]["volumeAttributes"]["bucketName"] == "acme-llm-test-test-llama-70b"


def test_hpa_metric_bounds_and_order(run_stack: RunStack) -> None:
    run = run_stack()
    hpa = only(run, tokens.HPA)
    spec = hpa.inputs["spec"]
    assert spec["metrics"][0]["pods"]["metric"]["name"] == "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 2)
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 600
    deployment = only(run, tokens.DEPLOYMENT, "llama-70b")
    assert deployment.urn in hpa.dependencies
    assert "replicas" not in deployment.inputs["spec"], "the HPA owns the replica count"


def test_kv_cache_metric_follows_the_image(run_stack: RunStack) -> None:
    model = {**base_model(), "autoscalingMetric": "kv_cache_usage", "autoscalingTarget": 0.8}
    hpa = only(run_stack({"tpu-serving:models": [model]}), tokens.HPA)
    assert hpa.inputs["spec"]["metrics"][0]["pods"]["metric"]["name"] == "prometheus.googleapis.com|vllm:kv_cache_usage_perc|gauge"


def test_one_kubernetes_provider_for_every_object(run_stack: RunStack) -> None:
    run = run_stack()
    providers = of_type(run, tokens.KUBERNETES_PROVIDER)
    assert len(providers) == 1
    kube = [r for r in run.registrations if r.custom and r.type.startswith("kubernetes:")]
    assert len(kube) > 10
    assert all(r.provider.startswith(providers[0].urn + "::") for r in kube)


def test_bucket_waits_only_for_the_apis_but_its_grant_waits_for_the_pool(run_stack: RunStack) -> None:
    run = run_stack()
    cluster = only(run, tokens.CLUSTER).urn
    apis = {r.urn for r in of_type(run, tokens.PROJECT_SERVICE)}
    assert set(only(run, tokens.BUCKET).dependencies) == apis
    # IAM refuses principals of a Workload Identity pool that does not exist yet (it comes with the cluster).
    assert cluster in only(run, tokens.BUCKET_IAM_MEMBER).dependencies


def test_first_pod_starts_after_its_pool_and_bucket_grant(run_stack: RunStack) -> None:
    run = run_stack()
    deployment = only(run, tokens.DEPLOYMENT, "llama-70b")
    # A pod without its grant fails to mount the bucket; pulumi then waits out its whole timeout.
    assert only(run, tokens.BUCKET_IAM_MEMBER).urn in deployment.dependencies
    assert only(run, tokens.NODE_POOL, "llama-70b").urn in deployment.dependencies
    assert all("pulumi:pulumi:Stack$" not in r.urn for r in run.registrations), "URNs as the engine makes them"
    adapter_grant = next(r for r in of_type(run, tokens.PROJECT_IAM_MEMBER) if r.name == "metrics-adapter")
    assert only(run, tokens.CLUSTER).urn in adapter_grant.dependencies


def test_compile_cache_is_keyed_and_rolls_out_one_writer_at_a_time(run_stack: RunStack) -> None:
    run = run_stack()
    deployment = only(run, tokens.DEPLOYMENT, "llama-70b").inputs
    env = {e["name"]: e.get("value") for e in container(run, "llama-70b")["env"]}
    assert env["VLLM_XLA_CACHE_PATH"].startswith("/data/xla-cache/")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    newer = run_stack({"tpu-serving:models": [{**base_model(), "imageTag": "v0.23.0"}]})
    newer_env = {e["name"]: e.get("value") for e in container(newer, "llama-70b")["env"]}
    assert newer_env["VLLM_XLA_CACHE_PATH"] != env["VLLM_XLA_CACHE_PATH"], "graphs of another image never share a directory"


def test_fixed_single_replica_has_no_hpa(run_stack: RunStack) -> None:
    run = run_stack({"tpu-serving:models": [{**base_model(), "maxReplicas": 1}]})
    assert of_type(run, tokens.HPA) == []
    assert only(run, tokens.DEPLOYMENT, "llama-70b").inputs["spec"]["replicas"] == 1


def test_several_models_each_get_their_own_components(run_stack: RunStack) -> None:
    models = [base_model(), {"name": "llama-8b", "hfId": "meta-llama/Llama-3.1-8B", "topology": "auto", "maxReplicas": 3}]
    run = run_stack({"tpu-serving:models": models})
    for component in ("VllmServer", "ModelCacheBucket", "TpuNodePool", "Autoscaling"):
        assert sorted(r.name for r in of_type(run, f"tpu-serving:index:{component}")) == ["llama-70b", "llama-8b"]
    assert len(of_type(run, tokens.METRICS_ADAPTER)) == 1
    small = only(run, tokens.NODE_POOL, "llama-8b").inputs
    assert small["nodeConfig"]["machineType"] == "ct6e-standard-1t"
    assert "placementPolicy" not in small


def test_hf_token_is_a_secret_everywhere(run_stack: RunStack) -> None:
    run = run_stack()
    dumped = json.dumps([r.inputs for r in run.registrations]) + json.dumps(run.outputs)
    assert HF_TOKEN not in dumped
    secret = only(run, tokens.SECRET, "llama-70b-hf-token")
    assert "[secret: not decrypted offline]" in json.dumps(secret.inputs["stringData"])
    env = container(run, "llama-70b")["env"]
    assert all("valueFrom" not in e and "TOKEN" not in e["name"].replace("HF_TOKEN_PATH", "") for e in env)


def test_external_exposure_needs_key_and_ranges(run_stack: RunStack) -> None:
    model = {**base_model(), "exposure": "external", "sourceRanges": ["203.0.113.0/24"]}
    run = run_stack({"tpu-serving:models": [model]}, secrets={"tpu-serving:hfToken": HF_TOKEN, "tpu-serving:apiKey": "k-123456"})
    service = only(run, tokens.K8S_SERVICE, "llama-70b").inputs
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert "annotations" not in service["metadata"] or "networking.gke.io/load-balancer-type" not in service["metadata"]["annotations"]
    env = {e["name"]: e.get("value") for e in container(run, "llama-70b")["env"]}
    assert env["VLLM_API_KEY_FILE"] == "/var/run/secrets/vllm/key"
    assert "k-123456" not in json.dumps([r.inputs for r in run.registrations])
    assert "Authorization: Bearer $VLLM_API_KEY" in run.outputs["llama-70b"]["curl"]


def test_internal_service_by_default(run_stack: RunStack) -> None:
    service = only(run_stack(), tokens.K8S_SERVICE, "llama-70b").inputs
    assert service["metadata"]["annotations"]["networking.gke.io/load-balancer-type"] == "Internal"


def test_outputs_give_address_and_curl(run_stack: RunStack) -> None:
    outputs = run_stack().outputs["llama-70b"]
    assert outputs["curl"].startswith("curl http://PLACEHOLDER-load-balancer-ip:8000/v1/completions")
    assert '"model": "meta-llama/Llama-3.1-70B"' in outputs["curl"]


def test_compile_cache_key_depends_on_graph_shaping_args(run_stack: RunStack) -> None:
    from components.config import load_stack_config

    raw = {"project": "acme-llm-test", "region": "us-east5", "cluster": {"zones": ["us-east5-b"]}}
    first = load_stack_config({**raw, "models": [base_model()]}, "t").models[0]
    longer = load_stack_config({**raw, "models": [{**base_model(), "maxModelLen": 8192}]}, "t").models[0]
    assert compile_cache_key(first) != compile_cache_key(longer)
    assert compile_cache_key(first) == compile_cache_key(load_stack_config({**raw, "models": [base_model()]}, "t").models[0])


def test_autopilot_sidecar_memory_holds_the_weights(run_stack: RunStack) -> None:
    cluster = {"name": "llm-test", "mode": "autopilot", "zones": ["us-east5-b"]}
    run = run_stack({"tpu-serving:cluster": cluster})
    template = only(run, tokens.DEPLOYMENT, "llama-70b").inputs["spec"]["template"]
    sidecar_gib = int(template["metadata"]["annotations"]["gke-gcsfuse/memory-limit"].removesuffix("Gi"))
    assert sidecar_gib >= 132, "Llama 3.1 70B's bf16 weights are ~131 GiB and are cached in RAM by the sidecar"
    app_gib = int(template["spec"]["containers"][0]["resources"]["requests"]["memory"].removesuffix("Gi"))
    # ct6e-standard-8t: 1440 GiB; the pod's share 1152 GiB (80%), the sidecar's RAM cache out of it.
    assert app_gib + sidecar_gib == pod_memory_gib(facts.GENERATIONS["v6e"].machine("ct6e-standard-8t")) == 1152
    standard = only(run_stack(), tokens.DEPLOYMENT, "llama-70b").inputs["spec"]["template"]
    assert standard["metadata"]["annotations"]["gke-gcsfuse/memory-limit"] == "0"


@pytest.mark.parametrize(
    ("capacity", "extra", "expected"),
    [
        ("spot", {}, {"spot": True, "min": 1, "affinity": "NO_RESERVATION", "queued": None, "repair": True}),
        ("flex-start", {}, {"flexStart": True, "min": 0, "affinity": "NO_RESERVATION", "queued": None, "repair": True}),
        ("reservation", {"reservation": "tpu-res"}, {"min": 1, "affinity": "SPECIFIC_RESERVATION", "queued": None, "repair": True}),
    ],
)
def test_capacity_options_shape_the_pool(run_stack: RunStack, capacity: str, extra: dict[str, Any], expected: dict[str, Any]) -> None:
    pool = only(run_stack({"tpu-serving:models": [{**base_model(), "capacity": capacity, **extra}]}), tokens.NODE_POOL, "llama-70b")
    node = pool.inputs["nodeConfig"]
    for flag in ("spot", "flexStart"):
        assert node.get(flag) == expected.get(flag), flag
    assert pool.inputs["autoscaling"]["totalMinNodeCount"] == expected["min"]
    assert (node.get("reservationAffinity") or {}).get("consumeReservationType") == expected["affinity"]
    assert "queuedProvisioning" not in pool.inputs
    assert pool.inputs["management"]["autoRepair"] is expected["repair"]
    if capacity == "reservation":
        assert node["reservationAffinity"]["values"] == ["tpu-res"]


def test_pods_stay_in_the_configured_zones(run_stack: RunStack) -> None:
    autopilot = {"name": "llm-test", "mode": "autopilot", "zones": ["us-east5-a", "us-east5-b"]}
    run = run_stack({"tpu-serving:cluster": autopilot, "tpu-serving:models": [{**base_model(), "zones": ["us-east5-b"]}]})
    pod = only(run, tokens.DEPLOYMENT, "llama-70b").inputs["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east5-b"]}]}]
