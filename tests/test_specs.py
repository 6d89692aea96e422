"""The pure spec builders, without the mock engine: plain config in, literal specs out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components import tokens
from components.cluster import mode_settings
from components.config import load_stack_config
from components.metrics_adapter import NETWORK_POLICY, adapter_container, api_services
from components.specs.namespace import model_labels, namespace_metadata
from components.specs.network_policy import EGRESS_BASELINE, network_policy
from components.tpu_node_pool import slice_placement
from components.vllm_server import (
    PodInputs,
    exposure,
    gcsfuse_sidecar,
    pod_spec,
    server_network_policy,
    service_annotations,
    vllm_container,
)
from helpers import shipped_run
from offline_plan.harness import ProgramRun

ROOT = Path(__file__).resolve().parent.parent
RAW: dict[str, Any] = {
    "project": "acme-llm-test",
    "region": "us-east5",
    "cluster": {"name": "c", "mode": "standard", "zones": ["us-east5-b"]},
}
MODEL = {"name": "m", "hfId": "meta-llama/Llama-3.1-8B", "generation": "v6e", "topology": "1x1", "maxModelLen": 4096, "maxReplicas": 1}
BASELINE = [
    {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
    {"to": [{"ip_block": {"cidr": "169.254.169.254/32"}}], "ports": [{"port": 80, "protocol": "TCP"}, {"port": 988, "protocol": "TCP"}]},
    {"ports": [{"port": 443, "protocol": "TCP"}]},
]


def _config(model: dict[str, Any] | None = None, mode: str = "standard") -> Any:
    raw = {**RAW, "cluster": {**RAW["cluster"], "mode": mode}, "models": [{**MODEL, **(model or {})}]}
    return load_stack_config(raw, "t")


def test_the_egress_baseline_is_written_once_and_shared() -> None:
    assert list(EGRESS_BASELINE) == BASELINE
    assert network_policy([]) == {"pod_selector": {}, "policy_types": ["Ingress", "Egress"], "ingress": [], "egress": BASELINE}
    policy: Any = NETWORK_POLICY
    assert policy["egress"] == BASELINE
    assert policy["ingress"] == [{"ports": [{"port": 443, "protocol": "TCP"}]}]


def test_an_internal_server_admits_the_private_range_and_the_collectors() -> None:
    spec: Any = server_network_policy(exposure(_config().models[0]))
    port = [{"port": 8000, "protocol": "TCP"}]
    collectors = {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["gmp-system", "gke-gmp-system"]}
    assert spec["ingress"] == [
        {"from_": [{"ip_block": {"cidr": "10.0.0.0/8"}}], "ports": port},
        {"from_": [{"namespace_selector": {"match_expressions": [collectors]}}], "ports": port},
    ]
    assert spec["egress"] == BASELINE


def test_exposure_is_decided_once() -> None:
    internal = _config().models[0]
    external = _config({"exposure": "external", "sourceRanges": ["203.0.113.0/24"]}).models[0]
    assert exposure(internal).external is False and exposure(external).external is True
    assert service_annotations(internal, exposure(internal)) == {
        "pulumi.com/timeoutSeconds": "3600",
        "networking.gke.io/load-balancer-type": "Internal",
    }
    assert service_annotations(external, exposure(external)) == {"pulumi.com/timeoutSeconds": "3600"}
    assert exposure(external).allowed_sources == ("203.0.113.0/24",)


def test_the_vllm_container_literal() -> None:
    model = _config().models[0]
    sidecar = gcsfuse_sidecar(model, autopilot=False)
    container: Any = vllm_container(model, 1, sidecar, with_api_key=True)
    assert container["image"] == "vllm/vllm-tpu:v0.22.0"
    assert container["resources"] == {
        "requests": {"cpu": "35", "memory": "358Gi", "google.com/tpu": "1"},
        "limits": {"cpu": "35", "memory": "358Gi", "google.com/tpu": "1"},
    }
    assert [e["name"] for e in container["env"]] == ["HF_TOKEN_PATH", "HOME", "VLLM_XLA_CACHE_PATH", "VLLM_API_KEY_FILE"]
    assert container["volume_mounts"][-2:] == [
        {"name": "hf-token", "mount_path": "/var/run/secrets/hf", "read_only": True},
        {"name": "api-key", "mount_path": "/var/run/secrets/vllm", "read_only": True},
    ]
    assert container["startup_probe"]["failure_threshold"] == 270
    assert container["security_context"]["capabilities"] == {"drop": ["ALL"]}


def test_the_pod_spec_literal() -> None:
    model = _config().models[0]
    sidecar = gcsfuse_sidecar(model, autopilot=False)
    pod: Any = pod_spec(model, slice_placement(model, autopilot=False), sidecar, PodInputs("vllm", "bucket-1", "hf-token", None))
    assert pod["service_account_name"] == "vllm" and pod["automount_service_account_token"] is False
    assert pod["node_selector"] == {
        "cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice",
        "cloud.google.com/gke-tpu-topology": "1x1",
        "serving.tpu.dev/model": "m",
    }
    assert pod["termination_grace_period_seconds"] == 90
    assert [v["name"] for v in pod["volumes"]] == ["model-cache", "gke-gcsfuse-cache", "dshm", "tmp", "home", "hf-token"]
    assert pod["volumes"][0]["csi"]["volume_attributes"]["bucketName"] == "bucket-1"
    assert pod["volumes"][-1] == {"name": "hf-token", "secret": {"secret_name": "hf-token", "default_mode": 0o400}}
    assert [e["name"] for e in pod["containers"][0]["env"]] == ["HF_TOKEN_PATH", "HOME", "VLLM_XLA_CACHE_PATH"]


def test_cluster_mode_settings() -> None:
    autopilot = _config(mode="autopilot").cluster
    assert mode_settings(autopilot, "nodes@p.iam") == {
        "enable_autopilot": True,
        "cluster_autoscaling": {
            "auto_provisioning_defaults": {
                "service_account": "nodes@p.iam",
                "oauth_scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            }
        },
    }
    assert mode_settings(_config().cluster, "nodes@p.iam") == {
        "remove_default_node_pool": True,
        "initial_node_count": 1,
        "node_config": {
            "service_account": "nodes@p.iam",
            "oauth_scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
            "workload_metadata_config": {"mode": "GKE_METADATA"},
        },
        "node_locations": ["us-east5-b"],
        "enable_legacy_abac": False,
        "enable_shielded_nodes": True,
        "datapath_provider": "ADVANCED_DATAPATH",
    }


def test_metrics_adapter_objects() -> None:
    assert [(suffix, name, dict(spec)["version_priority"]) for suffix, name, spec in api_services()] == [
        ("custom-v1beta1", "v1beta1.custom.metrics.k8s.io", 100),
        ("custom-v1beta2", "v1beta2.custom.metrics.k8s.io", 200),
        ("external-v1beta1", "v1beta1.external.metrics.k8s.io", 100),
    ]
    container: Any = adapter_container()
    assert container["command"] == ["/adapter", "--use-new-resource-model=true", "--fallback-for-container-metrics=true", "--cert-dir=/tmp"]
    assert container["security_context"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}


def test_model_namespace_labels() -> None:
    model = _config().models[0]
    assert model_labels(model, "t") == {
        "app.kubernetes.io/part-of": "tpu-serving",
        "serving.tpu.dev/model": "m",
        "serving.tpu.dev/stack": "t",
    }
    assert namespace_metadata(model, "t")["name"] == "vllm-m"


def _old_urns_kept(run: ProgramRun, before: list[str]) -> list[str]:
    """The old URNs no resource takes over, resolved as the engine does: a resource matches its own
    URN or one of its aliases, and a child also its parent's matched old URN with its own type and
    name appended (pulumi's step_generator generateAliases / inheritedChildAlias)."""
    old = set(before)
    matched: dict[str, str] = {}
    for r in run.registrations:
        candidates = [r.urn, *r.aliases]
        if r.parent in matched:
            stack_project, parent_type = matched[r.parent].rsplit("::", 2)[0], matched[r.parent].split("::")[2]
            candidates.append(f"{stack_project}::{parent_type}${r.type}::{r.name}")
        found = next((u for u in candidates if u in old), None)
        if found is not None:
            matched[r.urn] = found
    return sorted(old - set(matched.values()))


def test_every_resource_of_the_shipped_stacks_keeps_its_urn_or_an_alias_to_it() -> None:
    before = json.loads((ROOT / "tests/fixtures/urns_before_served_model.json").read_text())
    for stack, urns in before.items():
        run = shipped_run(stack)
        assert _old_urns_kept(run, urns) == [], stack
        moved = [r for r in run.registrations if r.parent.split("::")[2].endswith(tokens.SERVED_MODEL)]
        assert all(f"urn:pulumi:{stack}::tpu-serving::{r.type}::{r.name}" in r.aliases for r in moved)
        assert {r.type for r in moved} == {
            tokens.NAMESPACE,
            tokens.MODEL_CACHE_BUCKET,
            tokens.VLLM_SERVER,
            *([tokens.TPU_NODE_POOL] if stack != "dev" else []),
            *([tokens.AUTOSCALING] if stack != "dev" else []),
        }
