"""MetricsAdapter: the Custom Metrics Stackdriver Adapter, once per cluster, as typed resources
with a pinned image, and the Workload Identity grant that lets it read Cloud Monitoring.

The objects follow Google's manifest (GoogleCloudPlatform/k8s-stackdriver
custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model.yaml) with the
hardening this stack adds. Left out on purpose: its tolerations of the GPU and TPU taints, which
let it run on accelerator nodes; every cluster here has other nodes (Standard's system pool,
Autopilot's general-purpose ones), and a TPU node's memory outside the server's share is the
FUSE file cache's.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components import facts, tokens
from components.specs.network_policy import network_policy

# The namespace and Kubernetes service account of Google's manifest (GoogleCloudPlatform/k8s-stackdriver
# custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model.yaml), as facts.METRICS_ADAPTER_IMAGE.
NAMESPACE, ACCOUNT = "custom-metrics", "custom-metrics-stackdriver-adapter"
APP = {"k8s-app": ACCOUNT}
ADAPTER_PORT = 443
# The adapter writes a self-signed serving certificate at start (k8s.io/apiserver's default
# directory is relative to "/", which readOnlyRootFilesystem makes unwritable): give it an emptyDir.
CERT_DIR = "/tmp"


@dataclass(frozen=True)
class MetricsAdapterArgs:
    project: str
    project_number: pulumi.Input[str]
    workload_identity_pool: pulumi.Resource


class MetricsAdapter(pulumi.ComponentResource):
    ready: pulumi.Resource

    def __init__(self, name: str, args: MetricsAdapterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(tokens.METRICS_ADAPTER, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        member = pulumi.Output.from_input(args.project_number).apply(
            lambda number: facts.workload_identity_member(number, args.project, NAMESPACE, ACCOUNT)
        )
        # Cloud Monitoring is read per project: this grant cannot be narrower than the project.
        # IAM refuses a member of the Workload Identity pool before the cluster has created it.
        gcp.projects.IAMMember(
            name,
            project=args.project,
            role="roles/monitoring.viewer",
            member=member,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.workload_identity_pool]),
        )

        namespace = k8s.core.v1.Namespace(name, metadata={"name": NAMESPACE, "labels": dict(facts.POD_SECURITY_LABELS)}, opts=child)
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        k8s.core.v1.ServiceAccount(name, metadata=_metadata(), automount_service_account_token=True, opts=in_ns)

        def role(suffix: str, metadata: k8s.meta.v1.ObjectMetaArgsDict, rules: list[k8s.rbac.v1.PolicyRuleArgsDict]) -> pulumi.Output[str]:
            created = k8s.rbac.v1.ClusterRole(f"{name}-{suffix}", metadata=metadata, rules=rules, opts=child)
            return created.metadata.apply(lambda m: m["name"])

        def bind(suffix: str, metadata: k8s.meta.v1.ObjectMetaArgsDict, ref: k8s.rbac.v1.RoleRefArgsDict, to: Subject) -> None:
            k8s.rbac.v1.ClusterRoleBinding(f"{name}-{suffix}", metadata=metadata, role_ref=ref, subjects=[to], opts=child)

        bind("auth-delegator", {"name": "custom-metrics:system:auth-delegator"}, _role_ref("ClusterRole", "system:auth-delegator"), ADAPTER)
        k8s.rbac.v1.RoleBinding(
            f"{name}-auth-reader",
            metadata={"name": "custom-metrics-auth-reader", "namespace": "kube-system"},
            role_ref=_role_ref("Role", "extension-apiserver-authentication-reader"),
            subjects=[ADAPTER],
            opts=child,
        )
        reader = role("resource-reader", {"name": "custom-metrics-resource-reader"}, [RESOURCE_READER_RULE])
        bind("resource-reader", {"name": "custom-metrics-resource-reader"}, _role_ref("ClusterRole", reader), ADAPTER)
        # As in Google's manifest: the HPA controller (kube-system/horizontal-pod-autoscaler) may
        # read what the adapter serves under external.metrics.k8s.io. Its resources are metric
        # names, which no fixed list can name, hence the wildcard.
        external = role("external-metrics-reader", _external_reader(EXTERNAL_READER_SKIPS), [EXTERNAL_READER_RULE])
        bind("external-metrics-reader", _external_reader(EXTERNAL_READER_BINDING_SKIPS), _role_ref("ClusterRole", external), HPA_CONTROLLER)

        deployment = k8s.apps.v1.Deployment(
            name, metadata=_metadata(labels=APP, annotations=ADAPTER_SKIPS), spec=adapter_deployment_spec(), opts=in_ns
        )
        service = k8s.core.v1.Service(name, metadata=_metadata(labels=APP), spec=adapter_service_spec(), opts=in_ns)
        k8s.networking.v1.NetworkPolicy(name, metadata=_metadata(labels=APP), spec=NETWORK_POLICY, opts=in_ns)
        for suffix, api_name, spec in api_services():
            k8s.apiregistration.v1.APIService(
                f"{name}-{suffix}",
                metadata={"name": api_name},
                spec=spec,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[service, deployment]),
            )
        self.ready = deployment
        self.register_outputs({"namespace": NAMESPACE, "image": facts.METRICS_ADAPTER_IMAGE})


Subject = k8s.rbac.v1.SubjectArgsDict
ADAPTER: Subject = {"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}
HPA_CONTROLLER: Subject = {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}
RESOURCE_READER_RULE: k8s.rbac.v1.PolicyRuleArgsDict = {
    "api_groups": [""],
    "resources": ["pods", "nodes", "nodes/stats"],
    "verbs": ["get", "list", "watch"],
}
EXTERNAL_READER_RULE: k8s.rbac.v1.PolicyRuleArgsDict = {
    "api_groups": ["external.metrics.k8s.io"],
    "resources": ["*"],
    "verbs": ["list", "get", "watch"],
}
# The aggregated APIs the adapter serves: (group, version, versionPriority).
API_VERSIONS = (
    ("custom.metrics.k8s.io", "v1beta1", 100),
    ("custom.metrics.k8s.io", "v1beta2", 200),
    ("external.metrics.k8s.io", "v1beta1", 100),
)


def _metadata(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> k8s.meta.v1.ObjectMetaArgsDict:
    """An object of the adapter's own namespace, named after its service account."""
    metadata: k8s.meta.v1.ObjectMetaArgsDict = {"name": ACCOUNT, "namespace": NAMESPACE}
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    return metadata


def _role_ref(kind: str, role_name: pulumi.Input[str]) -> k8s.rbac.v1.RoleRefArgsDict:
    return {"api_group": "rbac.authorization.k8s.io", "kind": kind, "name": role_name}


def _external_reader(annotations: dict[str, str]) -> k8s.meta.v1.ObjectMetaArgsDict:
    return {"name": "external-metrics-reader", "annotations": annotations}


def adapter_container() -> k8s.core.v1.ContainerArgsDict:
    limits = {"cpu": "250m", "memory": "400Mi"}
    return {
        "name": "adapter",
        "image": facts.METRICS_ADAPTER_IMAGE,
        "image_pull_policy": "Always",
        "command": [
            "/adapter",
            "--use-new-resource-model=true",
            "--fallback-for-container-metrics=true",
            f"--cert-dir={CERT_DIR}",
        ],
        "ports": [{"name": "https", "container_port": ADAPTER_PORT}],
        "resources": {"requests": limits, "limits": limits},
        "liveness_probe": {"tcp_socket": {"port": "https"}, "period_seconds": 20},
        # Google's probe (k8s-stackdriver#673): an open port is not yet an
        # adapter that answers, and the APIService would route to it.
        "readiness_probe": {
            "http_get": {"path": "/healthz", "port": "https", "scheme": "HTTPS"},
            "initial_delay_seconds": 40,
            "period_seconds": 10,
            "timeout_seconds": 5,
        },
        "security_context": {
            "allow_privilege_escalation": False,
            "read_only_root_filesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        },
        "volume_mounts": [{"name": "tmp", "mount_path": CERT_DIR}],
    }


def adapter_deployment_spec() -> k8s.apps.v1.DeploymentSpecArgsDict:
    return {
        "replicas": 1,
        "selector": {"match_labels": APP},
        "template": {
            "metadata": {"labels": APP},
            "spec": {
                "service_account_name": ACCOUNT,
                "automount_service_account_token": True,
                "security_context": {"seccomp_profile": {"type": "RuntimeDefault"}},
                "containers": [adapter_container()],
                "volumes": [{"name": "tmp", "empty_dir": {"size_limit": "64Mi"}}],
            },
        },
    }


def adapter_service_spec() -> k8s.core.v1.ServiceSpecArgsDict:
    return {"selector": APP, "ports": [{"port": ADAPTER_PORT, "target_port": "https", "protocol": "TCP"}]}


def api_services() -> list[tuple[str, str, k8s.apiregistration.v1.APIServiceSpecArgsDict]]:
    """(resource name suffix, APIService name, spec) of each API the adapter serves."""
    return [
        (
            f"{group.split('.')[0]}-{version}",
            f"{version}.{group}",
            {
                "group": group,
                "version": version,
                "group_priority_minimum": 100,
                "version_priority": priority,
                # The adapter serves a self-signed certificate, as in Google's own manifest.
                "insecure_skip_tls_verify": True,
                "service": {"name": ACCOUNT, "namespace": NAMESPACE},
            },
        )
        for group, version, priority in API_VERSIONS
    ]


# Google's adapter image, run as Google ships it; each reason is what Checkov cannot see. A
# reason may not contain "=" (Checkov splits on it).
ADAPTER_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_23=Google's image (distroless/static) sets no USER and serves on 443; non-root is unverified here",
    "checkov.io/skip2": "CKV_K8S_40=same image: runs as UID 0; escalation is off and only NET_BIND_SERVICE is kept",
    "checkov.io/skip3": "CKV_K8S_25=NET_BIND_SERVICE lets it listen on 443 as a root process without the other capabilities",
    "checkov.io/skip4": "CKV_K8S_43=pinned by release tag from gcr.io/gke-release; the offline plan cannot resolve digests",
    "checkov.io/skip5": "CKV_K8S_38=the adapter calls the Kubernetes API with its service account token",
}
EXTERNAL_READER_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_49=external metrics are resources named after each metric; read-only verbs on one API group",
}
EXTERNAL_READER_BINDING_SKIPS = {
    "checkov.io/skip1": "CKV2_K8S_5=the bound role only covers external.metrics.k8s.io (no secrets); the check ignores API groups",
}

# Every namespace the stack creates gets a policy (CIS GKE 4.3.2). The API server reaches the
# adapter on 443 through the control plane's range or the Konnectivity agent, which varies by
# cluster, so ingress is any source on that one port; egress is the stack's baseline.
NETWORK_POLICY = network_policy([{"ports": [{"port": ADAPTER_PORT, "protocol": "TCP"}]}])
