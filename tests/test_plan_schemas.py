"""Manifest schemas: built-in kinds against the Kubernetes OpenAPI schema (strict), custom
resources against the project's JSON schemas, unknown values stood in for, and the real plan."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from helpers import shipped_run
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
