"""Secure and reliable by default (issue 6): the hardening the stack promises, asserted on what
every shipped stack (Pulumi.<stack>.yaml) registers: its Kubernetes objects as rendered, and its
GCP resources as the engine would receive them."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from components import autoscaling, facts, tokens
from components.config import MIN_STARTUP_MINUTES, StackConfig, load_stack_config
from components.vllm_server import NAME as VLLM
from components.vllm_server import pod_cpu, pod_memory_gib
from conftest import HF_TOKEN, RunStack
from helpers import STACKS, objects, of_type, shipped_run
from offline_plan import schemas
from offline_plan.harness import ProgramRun, read_stack_config

ROOT = Path(__file__).resolve().parent.parent
# What Kubernetes does without a behavior: scale down after 5 minutes of lower load.
K8S_DEFAULT_SCALE_DOWN_SECONDS = 300
WRITABLE_PATHS = ("/tmp", "/dev/shm")


@functools.cache
def shipped_config(stack: str) -> StackConfig:
    """The stack file's config as the program reads it (read_pulumi_config over the CLI's map)."""
    _, flat, _, _ = read_stack_config(stack)
    raw: dict[str, Any] = {"project": flat.get("gcp:project"), "region": flat.get("gcp:region")}
    for key in ("cluster", "bucket", "models"):
        if f"tpu-serving:{key}" in flat:
            raw[key] = json.loads(flat[f"tpu-serving:{key}"])
    if "tpu-serving:protectData" in flat:
        raw["protectData"] = flat["tpu-serving:protectData"]
    return load_stack_config(raw, stack)


def namespace(obj: Mapping[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("namespace")


def name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))


def pod_spec(deployment: Mapping[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def containers(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec(deployment).get("initContainers", []), *pod_spec(deployment)["containers"]]


def vllm_deployments(run: ProgramRun) -> list[dict[str, Any]]:
    found = [d for d in objects(run, "Deployment") if any(c["name"] == VLLM for c in containers(d))]
    assert found, "no vLLM Deployment rendered"
    return found


def vllm_container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    return next(c for c in containers(deployment) if c["name"] == VLLM)


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector of matchLabels only (what the stack writes); {} selects every pod."""
    selector = selector or {}
    assert set(selector) <= {"matchLabels"}, f"selector kinds this test does not evaluate: {sorted(selector)}"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def pod_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"].get("labels") or {}


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")


stacks = pytest.mark.parametrize("stack", STACKS)

# What each shipped model's vLLM container asks for (requests == limits), written out rather than
# recomputed: ct6e-standard-1t (44 vCPU, 448 GiB) and -8t (180 vCPU, 1440 GiB) leave the pod 80%;
# on Autopilot (dev) the FUSE sidecar's 4 CPUs and 18 GiB come out of that share.
VLLM_RESOURCES = {
    ("dev", "vllm-llama-8b"): {"cpu": "31", "memory": "340Gi", "google.com/tpu": "1"},
    ("staging", "vllm-llama-8b"): {"cpu": "35", "memory": "358Gi", "google.com/tpu": "1"},
    ("staging", "vllm-llama-70b"): {"cpu": "144", "memory": "1152Gi", "google.com/tpu": "8"},
    ("prod", "vllm-llama-8b"): {"cpu": "35", "memory": "358Gi", "google.com/tpu": "1"},
    ("prod", "vllm-llama-70b"): {"cpu": "144", "memory": "1152Gi", "google.com/tpu": "8"},
}


def test_every_stack_file_is_measured() -> None:
    assert {"dev", "prod"} <= set(STACKS)


# --- exposure ------------------------------------------------------------------------------------
@stacks
def test_servers_are_internal_unless_a_model_says_external(stack: str) -> None:
    run, config = shipped_run(stack), shipped_config(stack)
    services = {namespace(s): s for s in objects(run, "Service") if s["spec"].get("type") == "LoadBalancer"}
    assert set(services) == {m.namespace for m in config.models}, "one load balancer per model, nothing else exposed"
    for model in config.models:
        service = services[model.namespace]
        annotations = service["metadata"].get("annotations") or {}
        internal = any(annotations.get(key) == facts.INTERNAL_LB_VALUE for key in facts.INTERNAL_LB_ANNOTATIONS)
        assert internal == (model.exposure == "internal"), model.name
        # Client addresses reach the pod, so the NetworkPolicy's ipBlock sees the real caller.
        assert service["spec"]["externalTrafficPolicy"] == "Local"
        if model.exposure == "external":
            assert service["spec"]["loadBalancerSourceRanges"] == list(model.source_ranges)


def test_exposure_external_is_limited_to_source_ranges_and_keyed(run_stack: RunStack) -> None:
    ranges = ["203.0.113.0/24"]
    model = {"name": "llama-70b", "hfId": "meta-llama/Llama-3.1-70B", "topology": "2x4", "exposure": "external", "sourceRanges": ranges}
    run = run_stack({"tpu-serving:models": [model]}, {"tpu-serving:hfToken": HF_TOKEN, "tpu-serving:apiKey": "key-DoNotLeak-42"})
    [service] = [s for s in objects(run, "Service") if s["spec"].get("type") == "LoadBalancer"]
    assert not set(service["metadata"].get("annotations") or {}) & set(facts.INTERNAL_LB_ANNOTATIONS)
    assert service["spec"]["loadBalancerSourceRanges"] == ranges
    [policy] = [p for p in objects(run, "NetworkPolicy") if namespace(p) == "vllm-llama-70b"]
    served = [rule for rule in policy["spec"]["ingress"] if any("ipBlock" in peer for peer in rule["from"])]
    assert [peer["ipBlock"]["cidr"] for rule in served for peer in rule["from"]] == ranges
    [deployment] = vllm_deployments(run)
    env = {e["name"]: e for e in vllm_container(deployment)["env"]}
    assert "VLLM_API_KEY" not in env, "the key is read from a file, never set as an env value"
    key_file = env["VLLM_API_KEY_FILE"]["value"]
    assert any(key_file.startswith(m["mountPath"] + "/") for m in vllm_container(deployment)["volumeMounts"] if m.get("readOnly"))
    assert "key-DoNotLeak-42" not in json.dumps([r.inputs for r in run.registrations])


# --- secrets -------------------------------------------------------------------------------------
@stacks
def test_secrets_reach_pods_as_files_never_as_env_values(stack: str) -> None:
    run = shipped_run(stack)
    secret_names = {name(s) for s in objects(run, "Secret")}
    for deployment in objects(run, "Deployment"):
        for container in containers(deployment):
            for env in container.get("env") or []:
                assert "secretKeyRef" not in (env.get("valueFrom") or {}), f"{container['name']}: {env['name']} from a secret"
                assert env["name"] not in (*facts.HF_TOKEN_ENVS, "VLLM_API_KEY"), f"{container['name']}: {env['name']}"
                assert not re.search(facts.HF_TOKEN_PATTERN, str(env.get("value", "")))
            assert not any("secretRef" in source for source in container.get("envFrom") or [])
    for deployment in vllm_deployments(run):
        container = vllm_container(deployment)
        token_path = next(e["value"] for e in container["env"] if e["name"] == "HF_TOKEN_PATH")
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        [mount] = [m for m in container["volumeMounts"] if token_path.startswith(m["mountPath"] + "/")]
        assert mount.get("readOnly") is True
        secret = volumes[mount["name"]]["secret"]
        assert secret["secretName"] in secret_names
        assert secret["defaultMode"] == 0o400


def test_the_token_never_appears_in_plain_text(run_stack: RunStack) -> None:
    run = run_stack()
    assert HF_TOKEN not in json.dumps([r.inputs for r in run.registrations] + [r.state for r in run.registrations])


@stacks
def test_vllm_pods_mount_no_service_account_token(stack: str) -> None:
    run = shipped_run(stack)
    accounts = {(namespace(a), name(a)): a for a in objects(run, "ServiceAccount")}
    for deployment in vllm_deployments(run):
        spec = pod_spec(deployment)
        assert spec["automountServiceAccountToken"] is False
        assert accounts[(namespace(deployment), spec["serviceAccountName"])]["automountServiceAccountToken"] is False


# --- pod and container security --------------------------------------------------------------------
@stacks
def test_pod_and_container_security_contexts(stack: str) -> None:
    for deployment in objects(shipped_run(stack), "Deployment"):
        spec = pod_spec(deployment)
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name(deployment)
        assert not any(spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
        for container in containers(deployment):
            context = container["securityContext"]
            where = f"{name(deployment)}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context.get("privileged") in (None, False), where
            assert context["readOnlyRootFilesystem"] is True, where
            assert "ALL" in context["capabilities"]["drop"], where
            # Only the metrics adapter keeps one capability, to serve on 443 (see its checkov skip).
            added = set(context["capabilities"].get("add") or [])
            assert added <= ({"NET_BIND_SERVICE"} if container["name"] == "adapter" else set()), where
            assert context.get("seccompProfile", {"type": "RuntimeDefault"})["type"] == "RuntimeDefault", where


@stacks
def test_read_only_root_leaves_writable_scratch_space(stack: str) -> None:
    """/tmp, HOME and /dev/shm are emptyDirs, or a read-only root breaks the server at start."""
    for deployment in vllm_deployments(shipped_run(stack)):
        container = vllm_container(deployment)
        home = next(e["value"] for e in container["env"] if e["name"] == "HOME")
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        mounted = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        for path in (*WRITABLE_PATHS, home):
            assert "emptyDir" in mounted[path], f"{name(deployment)}: {path} is not an emptyDir"
        assert mounted["/dev/shm"]["emptyDir"]["medium"] == "Memory"


@stacks
def test_metrics_adapter_writes_its_certificate_to_an_empty_dir(stack: str) -> None:
    """k8s.io/apiserver writes its self-signed serving certificate at start, by default under
    the working directory ("/"), which a read-only root refuses: --cert-dir must be writable."""
    adapters = [d for d in objects(shipped_run(stack), "Deployment") if any(c["name"] == "adapter" for c in containers(d))]
    if any(m.max_replicas > 1 for m in shipped_config(stack).models):
        assert adapters, "autoscaled models need the metrics adapter"
    for deployment in adapters:
        [container] = containers(deployment)
        [cert_dir] = [arg.split("=", 1)[1] for arg in container["command"] if arg.startswith("--cert-dir=")]
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        assert any(m["mountPath"] == cert_dir and "emptyDir" in volumes[m["name"]] for m in container["volumeMounts"])


@stacks
def test_images_are_pinned(stack: str) -> None:
    for deployment in objects(shipped_run(stack), "Deployment"):
        for container in containers(deployment):
            tag = facts.image_tag(container["image"])
            assert (tag and tag != "latest") or "@sha256:" in container["image"], container["image"]


# --- network -------------------------------------------------------------------------------------
@stacks
def test_every_namespace_the_stack_creates_has_a_network_policy_over_all_its_pods(stack: str) -> None:
    run = shipped_run(stack)
    created = {name(n) for n in objects(run, "Namespace")}
    policies = objects(run, "NetworkPolicy")
    for ns in created:
        mine = [p for p in policies if namespace(p) == ns]
        assert mine, f"namespace {ns} has no NetworkPolicy (CIS GKE 4.3.2)"
        assert all({"Ingress", "Egress"} <= set(p["spec"]["policyTypes"]) for p in mine), ns
        for deployment in (d for d in objects(run, "Deployment") if namespace(d) == ns):
            assert any(selects(p["spec"]["podSelector"], pod_labels(deployment)) for p in mine), f"{ns}/{name(deployment)} unselected"
        labels = next(n for n in objects(run, "Namespace") if name(n) == ns)["metadata"]["labels"]
        assert {k: labels.get(k) for k in facts.POD_SECURITY_LABELS} == dict(facts.POD_SECURITY_LABELS), ns


@stacks
def test_nothing_lands_in_the_default_namespace(stack: str) -> None:
    run = shipped_run(stack)
    created = {name(n) for n in objects(run, "Namespace")}
    for obj in objects(run):
        ns = namespace(obj)
        assert ns != "default", f"{obj['kind']} {name(obj)}"
        if obj["kind"] in ("Deployment", "Service", "Secret", "ServiceAccount", "NetworkPolicy", "PodDisruptionBudget"):
            assert ns in created, f"{obj['kind']} {name(obj)} in {ns}, which the stack does not create"


# --- probes and shutdown ---------------------------------------------------------------------------
@stacks
def test_probes_let_a_cold_compile_finish_and_differ(stack: str) -> None:
    for deployment in vllm_deployments(shipped_run(stack)):
        container = vllm_container(deployment)
        startup, readiness, liveness = (container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe"))
        assert startup["periodSeconds"] * startup["failureThreshold"] >= MIN_STARTUP_MINUTES * 60
        for probe in (startup, readiness, liveness):
            assert probe["httpGet"]["path"] == facts.VLLM_HEALTH_PATH
        assert readiness != liveness, "identical probes restart a pod exactly when it should only leave the load balancer"


@stacks
def test_shutdown_drains_within_the_grace_period(stack: str) -> None:
    config = shipped_config(stack)
    for deployment in vllm_deployments(shipped_run(stack)):
        model = next(m for m in config.models if m.namespace == namespace(deployment))
        container = vllm_container(deployment)
        [pre_stop] = container["lifecycle"]["preStop"]["exec"]["command"][-1:]
        sleep = int(re.fullmatch(r"sleep (\d+)", pre_stop).group(1))  # type: ignore[union-attr]
        [shutdown] = [int(a.split("=", 1)[1]) for a in container["args"] if a.startswith("--shutdown-timeout=")]
        assert shutdown == model.shutdown_timeout_seconds > 0
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] >= sleep + shutdown


# --- availability and scaling ----------------------------------------------------------------------
@stacks
def test_every_server_has_a_disruption_budget(stack: str) -> None:
    run = shipped_run(stack)
    budgets = objects(run, "PodDisruptionBudget")
    for deployment in vllm_deployments(run):
        mine = [b for b in budgets if namespace(b) == namespace(deployment) and selects(b["spec"]["selector"], pod_labels(deployment))]
        assert len(mine) == 1, namespace(deployment)
        assert {"minAvailable", "maxUnavailable"} & set(mine[0]["spec"])


@stacks
def test_autoscaled_servers_scale_down_slowly_and_own_no_replica_count(stack: str) -> None:
    run, config = shipped_run(stack), shipped_config(stack)
    hpas = {namespace(h): h for h in objects(run, "HorizontalPodAutoscaler")}
    deployments = {namespace(d): d for d in vllm_deployments(run)}
    for model in config.models:
        deployment = deployments[model.namespace]
        if model.max_replicas == 1:
            assert model.namespace not in hpas
            assert deployment["spec"]["replicas"] == 1
            continue
        hpa = hpas[model.namespace]
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name(deployment))
        assert "replicas" not in deployment["spec"], "a Deployment an HPA owns must not set replicas (each apply would reset it)"
        window = hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        assert window == autoscaling.SCALE_DOWN_WINDOW_SECONDS > K8S_DEFAULT_SCALE_DOWN_SECONDS
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (model.min_replicas, model.max_replicas)


@stacks
def test_requests_and_limits_follow_the_machine_type(stack: str) -> None:
    run, config = shipped_run(stack), shipped_config(stack)
    for deployment in vllm_deployments(run):
        model = next(m for m in config.models if m.namespace == namespace(deployment))
        info = facts.machine_type_info(model.slice.machine_type)
        assert info is not None
        generation, machine = info
        selector = pod_spec(deployment)["nodeSelector"]
        assert selector[facts.ACCELERATOR_LABEL] == generation.accelerator
        assert selector[facts.TOPOLOGY_LABEL] == model.slice.topology
        # On Autopilot the FUSE sidecar's CPUs and RAM cache come out of the pod's share of the node
        # (Standard lifts its limits with "0").
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        sidecar_gib = int(annotations["gke-gcsfuse/memory-limit"].removesuffix("Gi"))
        sidecar_cpu = int(annotations.get("gke-gcsfuse/cpu-request", "0"))
        assert annotations.get("gke-gcsfuse/cpu-limit", "0") == annotations.get("gke-gcsfuse/cpu-request", "0")
        memory = f"{pod_memory_gib(machine) - sidecar_gib}Gi"
        cpu = str(pod_cpu(machine) - sidecar_cpu)
        expected = {"cpu": cpu, "memory": memory, facts.TPU_RESOURCE: str(model.slice.chips_per_vm)}
        resources = vllm_container(deployment)["resources"]
        assert resources["requests"] == resources["limits"] == expected == VLLM_RESOURCES[stack, model.namespace]
        room = "room for the kubelet and the FUSE sidecar"
        assert pod_cpu(machine) < machine.vcpus and pod_memory_gib(machine) < machine.memory_gib, room
    for deployment in objects(run, "Deployment"):
        for container in containers(deployment):
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name(deployment)}/{container['name']} {bound}"


# --- what `pulumi destroy` keeps -----------------------------------------------------------------------
@stacks
def test_data_and_cluster_protection_follow_the_stack(stack: str) -> None:
    run, config = shipped_run(stack), shipped_config(stack)
    buckets = of_type(run, tokens.BUCKET)
    assert len(buckets) == len(config.models)
    for bucket in buckets:
        assert bucket.protect is bucket.retain_on_delete is config.protect_data, bucket.name
        assert bucket.inputs["uniformBucketLevelAccess"] is True
        assert bucket.inputs["publicAccessPrevention"] == "enforced"
        assert bucket.inputs["forceDestroy"] is False
    [cluster] = of_type(run, tokens.CLUSTER)
    assert cluster.inputs["deletionProtection"] is config.cluster.deletion_protection


def test_prod_keeps_its_data_and_cluster() -> None:
    run = shipped_run("prod")
    assert all(b.protect and b.retain_on_delete for b in of_type(run, tokens.BUCKET))
    [cluster] = of_type(run, tokens.CLUSTER)
    assert cluster.inputs["deletionProtection"] is True


@stacks
def test_no_public_or_basic_role_grants(stack: str) -> None:
    run = shipped_run(stack)
    for grant in (r for r in run.registrations if "IAMMember" in r.type or "IAMBinding" in r.type):
        assert grant.inputs["role"] not in facts.BASIC_ROLES, grant.name
        members = [grant.inputs.get("member"), *(grant.inputs.get("members") or [])]
        assert not {"allUsers", "allAuthenticatedUsers"} & set(members), grant.name


# --- the cluster -----------------------------------------------------------------------------------
@stacks
def test_cluster_hardening(stack: str) -> None:
    run, config = shipped_run(stack), shipped_config(stack)
    [cluster] = of_type(run, tokens.CLUSTER)
    c = cluster.inputs
    assert c["privateClusterConfig"]["enablePrivateNodes"] is True
    assert c["privateClusterConfig"]["enablePrivateEndpoint"] is config.cluster.private_endpoint
    assert c["releaseChannel"]["channel"] in facts.RELEASE_CHANNELS
    assert c["masterAuth"]["clientCertificateConfig"]["issueClientCertificate"] is False
    assert {"SYSTEM_COMPONENTS", "WORKLOADS"} <= set(c["loggingConfig"]["enableComponents"])
    # Monitoring stays on: system components and Managed Prometheus asked for on create.
    assert c["monitoringConfig"] == {"enableComponents": ["SYSTEM_COMPONENTS"], "managedPrometheus": {"enabled": True}}
    assert c["workloadIdentityConfig"]["workloadPool"] == f"{config.project}.svc.id.goog"
    # Autopilot enforces shielded nodes, legacy ABAC off and Dataplane V2 (which enforces the
    # NetworkPolicies) itself and refuses the fields; Standard must ask for them.
    enforced = {"enableShieldedNodes": True, "enableLegacyAbac": False, "datapathProvider": "ADVANCED_DATAPATH"}
    if config.cluster.autopilot:
        assert c["enableAutopilot"] is True
        assert not set(enforced) & set(c)
    else:
        assert {k: c.get(k) for k in enforced} == enforced
    networks = [{"cidrBlock": n.cidr, "displayName": n.name} for n in config.cluster.authorized_networks]
    assert (c.get("masterAuthorizedNetworksConfig") or {}).get("cidrBlocks", []) == networks


@stacks
def test_nodes_run_as_a_dedicated_service_account_with_the_gke_metadata_server(stack: str) -> None:
    run, config = shipped_run(stack), shipped_config(stack)
    [account] = of_type(run, tokens.SERVICE_ACCOUNT)
    email = f"{account.inputs['accountId']}@{config.project}.iam.gserviceaccount.com"
    [cluster] = of_type(run, tokens.CLUSTER)
    pools = of_type(run, tokens.NODE_POOL)
    if config.cluster.autopilot:
        # Autopilot runs the GKE metadata server and shielded nodes itself; only the identity is ours.
        assert pools == []
        assert cluster.inputs["clusterAutoscaling"]["autoProvisioningDefaults"]["serviceAccount"] == email
        return
    assert cluster.inputs["removeDefaultNodePool"] is True
    assert len(pools) == len(config.models) + 1, "one pool per model and the system pool"
    for node_config in [cluster.inputs["nodeConfig"], *(p.inputs["nodeConfig"] for p in pools)]:
        assert node_config["serviceAccount"] == email, "never the default compute service account"
        assert node_config["workloadMetadataConfig"]["mode"] == "GKE_METADATA"
        assert node_config["shieldedInstanceConfig"] == {"enableSecureBoot": True, "enableIntegrityMonitoring": True}
    for pool in pools:
        assert pool.inputs["management"] == {"autoRepair": True, "autoUpgrade": True}, pool.name


# --- manifest validity ------------------------------------------------------------------------------
@stacks
def test_manifests_validate_strictly_against_the_clusters_kubernetes(stack: str) -> None:
    """kubernetes-validate strict on every built-in kind, the project's schema on PodMonitoring."""
    manifests = schemas.kubernetes_manifests(shipped_run(stack).registrations)
    problems = schemas.validate_all(manifests, schemas.k8s_version_of(shipped_config(stack).cluster.version))
    errors = [p for p in problems if p.severity == "error"]
    assert errors == [], "\n".join(p.describe() for p in errors)


@stacks
def test_no_value_reaches_a_manifest_as_a_python_repr(stack: str) -> None:
    """A snake_case key in a custom resource or a stray None would pass unnoticed elsewhere."""
    for obj in objects(shipped_run(stack)):
        for path, value in walk(obj):
            assert value is not None, f"{obj['kind']} {name(obj)}: {path} is null"
            free_form = obj["kind"] in ("Secret", "ConfigMap") or path.endswith(("annotations", "labels"))
            if isinstance(value, Mapping) and not free_form:
                snake = [k for k in value if re.fullmatch(r"[a-z]+(_[a-z]+)+", str(k))]
                assert not snake, f"{obj['kind']} {name(obj)}: {path} has {snake}"
