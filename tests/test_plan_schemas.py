"""Manifest schemas: built-in kinds against the Kubernetes OpenAPI schema (strict), custom
resources against the project's JSON schemas, unknown values stood in for, and the real plan."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from test_multihost import OVERRIDES as MULTI_HOST_OVERRIDES

from conftest import RunStack
from helpers import ROOT, shipped_run
from offline_plan import schemas
from offline_plan.harness import PLACEHOLDER, SECRET_MARKER

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "vllm", "namespace": "vllm-llama-8b", "labels": {"app": "vllm"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "vllm"}},
        "template": {
            "metadata": {"labels": {"app": "vllm"}},
            "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-tpu:v0.22.0", "ports": [{"containerPort": 8000.0}]}]},
        },
    },
}
POD_MONITORING: dict[str, Any] = {
    "apiVersion": "monitoring.googleapis.com/v1",
    "kind": "PodMonitoring",
    "metadata": {"name": "vllm", "namespace": "vllm-llama-8b"},
    "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "vllm"}},
        "endpoints": [{"port": 8000.0, "path": "/metrics", "interval": "15s", "timeout": "10s"}],
    },
}

# Hand-built after the multi-host stack's LeaderWorkerSet (tests/fixtures/policy/multihost-stack.yaml),
# numbers as they cross the wire (floats).
HOST_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "vllm"}},
    "spec": {
        "nodeSelector": {"cloud.google.com/gke-tpu-topology": "4x8"},
        "containers": [{"name": "vllm", "image": "vllm/vllm-tpu:v0.22.0", "resources": {"limits": {"google.com/tpu": "4"}}}],
    },
}
LEADER_WORKER_SET: dict[str, Any] = {
    "apiVersion": "leaderworkerset.x-k8s.io/v1",
    "kind": "LeaderWorkerSet",
    "metadata": {"name": "vllm", "namespace": "vllm-llama-405b"},
    "spec": {
        "replicas": 1.0,
        "startupPolicy": "LeaderCreated",
        "rolloutStrategy": {"type": "RollingUpdate", "rollingUpdateConfiguration": {"maxSurge": 0.0, "maxUnavailable": 1.0}},
        "leaderWorkerTemplate": {
            "size": 8.0,
            "restartPolicy": "RecreateGroupOnPodRestart",
            "leaderTemplate": copy.deepcopy(HOST_TEMPLATE),
            "workerTemplate": copy.deepcopy(HOST_TEMPLATE),
        },
    },
}
LWS_SCHEMA = "offline_plan/schemas/leaderworkerset-leaderworkerset.x-k8s.io-v1.json"


def edited(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `obj` with the dotted `path` set (a number is a list index)."""
    copied = copy.deepcopy(obj)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target: Any = copied
    for part in parents:
        target = target[part]
    target[last] = value
    return copied


def errors(obj: dict[str, Any]) -> list[schemas.SchemaProblem]:
    return [p for p in schemas.validate_manifest(obj) if p.severity == "error"]


def test_default_version_is_shipped_and_gke_versions_map_to_their_minor() -> None:
    assert schemas.DEFAULT_K8S_VERSION in schemas.supported_versions()
    assert schemas.k8s_version_of("1.33.5-gke.1080000") == "1.33"
    assert schemas.k8s_version_of(None) == schemas.DEFAULT_K8S_VERSION
    with pytest.raises(ValueError, match="has schemas for"):
        schemas.validate_manifest(DEPLOYMENT, "1.20")


def test_a_good_deployment_passes_and_a_wrong_field_name_fails_strict_validation() -> None:
    assert schemas.validate_manifest(DEPLOYMENT, "1.33") == []
    [problem] = errors(edited(DEPLOYMENT, "spec.template.spec.containers.0.imagePullPolicyy", "Always"))
    assert problem.path == "spec.template.spec.containers[0]"
    assert "imagePullPolicyy" in problem.message
    assert problem.schema == "kubernetes 1.33 (strict)"
    assert problem.name == "vllm-llama-8b/vllm"
    [wrong_type] = errors(edited(DEPLOYMENT, "spec.replicas", "two"))
    assert wrong_type.path == "spec.replicas"


def test_a_misspelled_builtin_kind_is_an_error_and_an_unknown_custom_resource_a_warning() -> None:
    [kind] = schemas.validate_manifest({**DEPLOYMENT, "kind": "Deploymnet"})
    assert kind.severity == "error"
    [crd] = schemas.validate_manifest({**POD_MONITORING, "apiVersion": "example.com/v1", "kind": "Widget"})
    assert crd.severity == "warning"
    assert "offline_plan/schemas/widget-example.com-v1.json" in crd.message


def test_unknown_values_stand_in_for_what_the_schema_expects() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hf-token", "namespace": "vllm-llama-8b"},
        "type": "Opaque",
        "stringData": SECRET_MARKER,
    }
    assert schemas.validate_manifest(secret) == []
    assert schemas.validate_manifest({**secret, "stringData": {"token": SECRET_MARKER}}) == []
    assert schemas.validate_manifest(edited(DEPLOYMENT, "spec.replicas", f"{PLACEHOLDER}-unknown")) == []
    # Standing in for one value does not hide a real error elsewhere.
    broken = edited(edited(secret, "metadata.nmae", "x"), "type", "Opaque")
    assert [p.path for p in errors(broken)] == ["metadata"]


def test_pod_monitoring_schema_accepts_the_crd_shape_and_rejects_typos() -> None:
    assert schemas.validate_manifest(POD_MONITORING) == []
    assert schemas.validate_manifest(edited(POD_MONITORING, "spec.endpoints.0.port", "http")) == []
    cases = {
        "spec.endpoints.0.intervall": ("15s", "spec.endpoints[0]"),
        "spec.selector.match_labels": ({"app": "vllm"}, "spec.selector"),
        "spec.endpoints.0.interval": ("15 seconds", "spec.endpoints[0].interval"),
        "spec.endpoints.0.scheme": ("ftp", "spec.endpoints[0].scheme"),
        "spec.endpoints.0.port": (0, "spec.endpoints[0].port"),
        "metadata.lables": ({"a": "b"}, "metadata"),
    }
    for path, (value, where) in cases.items():
        found = errors(edited(POD_MONITORING, path, value))
        assert [p.path for p in found] == [where], path
    no_port = copy.deepcopy(POD_MONITORING)
    del no_port["spec"]["endpoints"][0]["port"]
    assert [p.message for p in errors(no_port)] == ["'port' is a required property"]
    assert [p.path for p in errors(edited(POD_MONITORING, "spec.endpoints", []))] == ["spec.endpoints"]


def test_a_leader_worker_set_validates_against_its_schema() -> None:
    assert schemas.validate_manifest(LEADER_WORKER_SET) == []
    minimal = {**LEADER_WORKER_SET, "spec": {"leaderWorkerTemplate": {"workerTemplate": HOST_TEMPLATE}}}
    assert schemas.validate_manifest(minimal) == []
    assert schemas.validate_manifest(edited(LEADER_WORKER_SET, "spec.rolloutStrategy.rollingUpdateConfiguration.maxSurge", "25%")) == []
    assert schemas.validate_manifest(edited(LEADER_WORKER_SET, "spec.replicas", f"{PLACEHOLDER}-groups")) == []


def test_a_leader_worker_set_with_a_wrong_field_type_or_enum_fails_where_it_is_wrong() -> None:
    group = "spec.leaderWorkerTemplate"
    cases = {
        f"{group}.sise": (8, group, "'sise' was unexpected"),
        "spec.leaderWorkerTemplat": ({}, "spec", "'leaderWorkerTemplat' was unexpected"),
        f"{group}.size": ("eight", f"{group}.size", "is not of type 'integer'"),
        f"{group}.restartPolicy": ("Always", f"{group}.restartPolicy", "is not one of"),
        "spec.startupPolicy": ("LeaderFirst", "spec.startupPolicy", "is not one of"),
        "spec.rolloutStrategy.type": ("Recreate", "spec.rolloutStrategy.type", "is not one of"),
        "spec.rolloutStrategy.rollingUpdateConfiguration.maxSurge": (
            "150%",
            "spec.rolloutStrategy.rollingUpdateConfiguration.maxSurge",
            "",
        ),
        "spec.rolloutStrategy.rollingUpdateConfiguration.maxUnavailable": (
            0,
            "spec.rolloutStrategy.rollingUpdateConfiguration",
            "not both 0",
        ),
        "spec.replicas": (-1, "spec.replicas", "less than the minimum"),
        "spec.networkConfig": ({"subdomainPolicy": "PerGroup"}, "spec.networkConfig.subdomainPolicy", "is not one of"),
        "metadata.name": ("vLLM_405b", "metadata.name", "does not match"),
    }
    for path, (value, where, text) in cases.items():
        found = errors(edited(LEADER_WORKER_SET, path, value))
        assert [(p.path, p.schema) for p in found] == [(where, LWS_SCHEMA)], path
        assert text in found[0].message, (path, found[0].message)
    no_workers = copy.deepcopy(LEADER_WORKER_SET)
    del no_workers["spec"]["leaderWorkerTemplate"]["workerTemplate"]
    assert [(p.path, p.message) for p in errors(no_workers)] == [(group, "'workerTemplate' is a required property")]


def test_a_typo_inside_a_pod_template_of_a_leader_worker_set_fails_strict_validation() -> None:
    worker = "spec.leaderWorkerTemplate.workerTemplate"
    [typo] = errors(edited(LEADER_WORKER_SET, f"{worker}.spec.containers.0.imagePullPolicyy", "Always"))
    assert typo.path == f"{worker}.spec.containers[0]"
    assert "imagePullPolicyy" in typo.message
    assert typo.schema == f"kubernetes {schemas.DEFAULT_K8S_VERSION} (strict) via {LWS_SCHEMA}"
    [wrong_type] = errors(
        edited(LEADER_WORKER_SET, "spec.leaderWorkerTemplate.leaderTemplate.spec.containers.0.ports", [{"containerPort": "http"}])
    )
    assert wrong_type.path == "spec.leaderWorkerTemplate.leaderTemplate.spec.containers[0].ports[0].containerPort"
    [node_selector] = errors(edited(LEADER_WORKER_SET, f"{worker}.spec.nodeSelectr", {}))
    assert node_selector.path == f"{worker}.spec"


def test_api_service_is_a_builtin_kind() -> None:
    service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": "v1beta1.custom.metrics.k8s.io"},
        "spec": {"group": "custom.metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100, "versionPriority": 100},
    }
    assert schemas.validate_manifest(service) == []
    [problem] = errors(edited(service, "spec.insecure_skip_tls_verify", True))
    assert problem.schema.startswith("kubernetes ")


def test_the_real_prod_plan_manifests_validate() -> None:
    manifests = schemas.kubernetes_manifests(shipped_run("prod").registrations)
    assert {m["kind"] for m in manifests} >= {"Deployment", "Secret", "PodMonitoring", "APIService", "HorizontalPodAutoscaler"}
    problems = schemas.validate_all(manifests, schemas.k8s_version_of("1.33.5-gke.1080000"))
    assert problems == [], "\n".join(p.describe() for p in problems)


def test_the_programs_multi_host_manifests_validate(run_stack: RunStack) -> None:
    """The program's multi-host example (tests/test_multihost.py: Llama 3.1 405B on v6e 4x8): its
    LeaderWorkerSet against the schema, its pod templates strict, and everything around it."""
    manifests = schemas.kubernetes_manifests(run_stack(MULTI_HOST_OVERRIDES).registrations)
    assert {"LeaderWorkerSet", "PodDisruptionBudget", "HorizontalPodAutoscaler", "PodMonitoring"} <= {m["kind"] for m in manifests}
    problems = schemas.validate_all(manifests)
    assert problems == [], "\n".join(p.describe() for p in problems)


def test_the_multi_host_fixture_manifests_validate() -> None:
    """The policy pack's multi-host stack (a LeaderWorkerSet shaped like the program's, its Service
    and HPA) validates as the plan would validate it."""
    fixture = yaml.safe_load((ROOT / "tests" / "fixtures" / "policy" / "multihost-stack.yaml").read_text())
    manifests = [r["properties"] for r in fixture if r["type"].startswith("kubernetes:")]
    assert "LeaderWorkerSet" in {m["kind"] for m in manifests}
    problems = schemas.validate_all(manifests)
    assert problems == [], "\n".join(p.describe() for p in problems)
