"""LwsController: the LeaderWorkerSet controller (CRD, webhook, manager), pinned, installed once per
cluster when a model is multi-host, and the firewall rule that lets the private control plane reach
its webhook. Every LeaderWorkerSet of the stack depends on it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components import facts, tokens


@dataclass(frozen=True)
class LwsControllerArgs:
    """Where the webhook runs (the cluster's network, its nodes' service account and its control
    plane's range); the release itself is pinned in facts."""

    project: str
    network: pulumi.Input[str]
    node_service_account: pulumi.Input[str]
    control_plane_cidr: str
    manifest_url: str = facts.LWS_MANIFEST_URL


class LwsController(pulumi.ComponentResource):
    # What LeaderWorkerSets wait for: the applied release (CRD, webhook and manager, which the
    # provider awaits until its Deployment is available, so the webhook answers before any LWS).
    ready: pulumi.Resource

    def __init__(self, name: str, args: LwsControllerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(tokens.LWS_CONTROLLER, name, None, opts)
        # Nodes run as the stack's own service account, so the rule targets it rather than GKE's node tags.
        webhook = gcp.compute.Firewall(
            f"{name}-webhook",
            project=args.project,
            network=args.network,
            direction="INGRESS",
            source_ranges=[args.control_plane_cidr],
            allows=[{"protocol": "tcp", "ports": [str(facts.LWS_WEBHOOK_PORT)]}],
            target_service_accounts=[args.node_service_account],
            description="GKE control plane to the LeaderWorkerSet webhook",
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The release's own manifest, applied server-side as the LWS docs do with kubectl; the provider
        # fetches it at apply time. Under the SDK's mocks this arrives as one resource, unexpanded.
        release = k8s.yaml.v2.ConfigFile(name, file=args.manifest_url, opts=pulumi.ResourceOptions(parent=self, depends_on=[webhook]))
        self.ready = release
        self.register_outputs({"version": facts.LWS_VERSION, "manifest": args.manifest_url})
