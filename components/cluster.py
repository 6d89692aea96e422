"""Cluster: the GKE cluster, its private network, the node identity and the one Kubernetes
provider every Kubernetes object of the stack uses."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components import facts, tokens
from components.config import ClusterConfig

NODE_SUBNET_CIDR = "10.10.0.0/20"
POD_CIDR = "10.16.0.0/14"
SERVICE_CIDR = "10.20.0.0/20"
CONTROL_PLANE_CIDR = "172.16.0.0/28"
OAUTH_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


# Every pool of the stack: GKE repairs broken nodes and keeps them on the control plane's version.
NODE_MANAGEMENT: gcp.container.NodePoolManagementArgsDict = {"auto_repair": True, "auto_upgrade": True}


def node_hardening(service_account: pulumi.Input[str]) -> gcp.container.NodePoolNodeConfigArgsDict:
    """Node settings shared by every pool: own service account, shielded VMs, GKE metadata server."""
    return {
        "service_account": service_account,
        "oauth_scopes": OAUTH_SCOPES,
        "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
        "workload_metadata_config": {"mode": "GKE_METADATA"},
    }


@dataclass(frozen=True)
class ClusterArgs:
    project: str
    region: str
    config: ClusterConfig
    # The project's APIs (ProjectApis): the network and the node identity are created after them.
    apis: pulumi.Resource


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    node_service_account: pulumi.Output[str]
    network_id: pulumi.Output[str]
    control_plane_cidr: str
    provider: k8s.Provider
    # Grants to <project>.svc.id.goog principals wait for this: the pool exists once the cluster does.
    workload_identity_pool: pulumi.Resource

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(tokens.CLUSTER_COMPONENT, name, None, opts)
        cfg, child = args.config, pulumi.ResourceOptions(parent=self)
        after_apis = pulumi.ResourceOptions(parent=self, depends_on=[args.apis])

        network = gcp.compute.Network(name, project=args.project, auto_create_subnetworks=False, opts=after_apis)
        subnet = gcp.compute.Subnetwork(
            name,
            project=args.project,
            region=args.region,
            network=network.id,
            ip_cidr_range=NODE_SUBNET_CIDR,
            private_ip_google_access=True,
            secondary_ip_ranges=[
                {"range_name": "pods", "ip_cidr_range": POD_CIDR},
                {"range_name": "services", "ip_cidr_range": SERVICE_CIDR},
            ],
            opts=child,
        )
        # Private nodes reach Hugging Face only through NAT.
        router = gcp.compute.Router(name, project=args.project, region=args.region, network=network.id, opts=child)
        gcp.compute.RouterNat(
            name,
            project=args.project,
            region=args.region,
            router=router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config={"enable": True, "filter": "ERRORS_ONLY"},
            opts=child,
        )

        node_sa = gcp.serviceaccount.Account(
            f"{name}-nodes",
            project=args.project,
            account_id=node_account_id(cfg.name),
            display_name=f"GKE nodes of {cfg.name}",
            opts=after_apis,
        )
        role = facts.NODE_SERVICE_ACCOUNT_ROLE
        gcp.projects.IAMMember(f"{name}-nodes", project=args.project, role=role, member=node_sa.member, opts=child)

        cluster = gcp.container.Cluster(
            name,
            **cluster_settings(args.project, args.region, cfg, network.id, subnet.id),
            **mode_settings(cfg, node_sa.email),
            # The API reports the first node pool's config as the cluster's (a TPU pool's Spot flag and
            # threads per core included): read back, it would replace the cluster (facts.PROVIDER_FIELDS).
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["nodeConfig", "monitoringConfig.enableComponents"]),
        )
        # Standard starts with no nodes (the default pool is removed): Kubernetes objects wait for
        # the system pool, or Services and the metrics adapter would race it.
        nodes_ready: pulumi.Resource = cluster
        if not cfg.autopilot:
            nodes_ready = gcp.container.NodePool(
                f"{name}-system",
                name="system",
                project=args.project,
                location=args.region,
                cluster=cluster.name,
                node_locations=list(cfg.zones),
                node_count=cfg.system_nodes,
                node_config={**node_hardening(node_sa.email), "machine_type": cfg.system_machine_type},
                management=NODE_MANAGEMENT,
                opts=child,
            )

        kubeconfig: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(cluster.name, cluster.endpoint, cluster.master_auth.cluster_ca_certificate).apply(
                lambda parts: _kubeconfig(*parts)
            )
        )
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=kubeconfig, opts=pulumi.ResourceOptions(parent=self, depends_on=[nodes_ready])
        )
        self.name, self.endpoint, self.kubeconfig = cluster.name, cluster.endpoint, kubeconfig
        self.node_service_account = node_sa.email
        self.network_id, self.control_plane_cidr = network.id, CONTROL_PLANE_CIDR
        self.workload_identity_pool = cluster
        self.register_outputs({"name": self.name, "endpoint": self.endpoint, "kubeconfig": kubeconfig})


def cluster_settings(
    project: str, region: str, cfg: ClusterConfig, network: pulumi.Input[str], subnetwork: pulumi.Input[str]
) -> dict[str, Any]:
    """The cluster's arguments common to both modes: a private, regional cluster on its own VPC
    with Workload Identity, the FUSE CSI driver and Managed Prometheus."""
    return {
        "name": cfg.name,
        "project": project,
        "location": region,
        "network": network,
        "subnetwork": subnetwork,
        "ip_allocation_policy": {"cluster_secondary_range_name": "pods", "services_secondary_range_name": "services"},
        "min_master_version": cfg.version,
        "release_channel": {"channel": cfg.release_channel},
        "deletion_protection": cfg.deletion_protection,
        "workload_identity_config": {"workload_pool": f"{project}.svc.id.goog"},
        "addons_config": {"gcs_fuse_csi_driver_config": {"enabled": True}},
        # Stated, so system metrics are on for sure: left out, the provider sends an empty component
        # list on create (resource_container_cluster.go expandMonitoringConfig). GKE then adds its own
        # packages, which the cluster ignores rather than diffing on every plan (facts.PROVIDER_FIELDS).
        "monitoring_config": {"enable_components": ["SYSTEM_COMPONENTS"], "managed_prometheus": {"enabled": True}},
        "logging_config": {"enable_components": ["SYSTEM_COMPONENTS", "WORKLOADS"]},
        "private_cluster_config": {
            "enable_private_nodes": True,
            "enable_private_endpoint": cfg.private_endpoint,
            "master_ipv4_cidr_block": CONTROL_PLANE_CIDR,
        },
        "master_authorized_networks_config": (
            {"cidr_blocks": [{"display_name": n.name, "cidr_block": n.cidr} for n in cfg.authorized_networks]}
            if cfg.authorized_networks
            else None
        ),
        "master_auth": {"client_certificate_config": {"issue_client_certificate": False}},
    }


def mode_settings(cfg: ClusterConfig, node_service_account: pulumi.Input[str]) -> dict[str, Any]:
    """The arguments that differ between Autopilot and Standard; each mode sets only its own."""
    if cfg.autopilot:
        # Autopilot enforces legacy ABAC off, shielded nodes and Dataplane V2 itself: unset here, so
        # nothing can conflict with enable_autopilot. Auto-provisioned nodes run as our own identity.
        return {
            "enable_autopilot": True,
            "cluster_autoscaling": {"auto_provisioning_defaults": {"service_account": node_service_account, "oauth_scopes": OAUTH_SCOPES}},
        }
    return {
        # The default pool would run on the default compute SA: remove it for our own pools. It
        # lives only until remove_default_node_pool deletes it; hardened meanwhile.
        "remove_default_node_pool": True,
        "initial_node_count": 1,
        "node_config": cast(gcp.container.ClusterNodeConfigArgsDict, node_hardening(node_service_account)),
        "node_locations": list(cfg.zones),
        "enable_legacy_abac": False,
        "enable_shielded_nodes": True,
        # Dataplane V2 enforces the NetworkPolicies the servers ship with.
        "datapath_provider": "ADVANCED_DATAPATH",
    }


def node_account_id(cluster_name: str) -> str:
    """A service account id (6-30 characters, ending in a letter or digit) that stays unique for
    cluster names too long to keep whole."""
    account_id = f"{cluster_name}-nodes"
    if len(account_id) <= 30:
        return account_id
    digest = hashlib.sha256(cluster_name.encode()).hexdigest()[:6]
    return f"{cluster_name[:17].rstrip('-')}-{digest}-nodes"


def _kubeconfig(name: str, endpoint: str, ca_certificate: str) -> str:
    """A kubeconfig that authenticates through gke-gcloud-auth-plugin, so no token is stored."""
    context = f"gke_{name}"
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": f"https://{endpoint}", "certificate-authority-data": ca_certificate}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
            "users": [
                {
                    "name": context,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "gke-gcloud-auth-plugin",
                            "installHint": "gcloud components install gke-gcloud-auth-plugin",
                            "provideClusterInfo": True,
                        }
                    },
                }
            ],
        }
    )
