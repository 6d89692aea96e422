"""LwsController: the LeaderWorkerSet controller (CRD, webhook, manager), pinned, installed once per
cluster when a model is multi-host. Every LeaderWorkerSet of the stack depends on it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import facts, tokens


@dataclass(frozen=True)
class LwsControllerArgs:
    """The release is pinned in facts (version and manifest URL); nothing else varies per stack."""

    manifest_url: str = facts.LWS_MANIFEST_URL


class LwsController(pulumi.ComponentResource):
    # What LeaderWorkerSets wait for: the applied release (CRD, webhook and manager, which the
    # provider awaits until its Deployment is available, so the webhook answers before any LWS).
    ready: pulumi.Resource

    def __init__(self, name: str, args: LwsControllerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(tokens.LWS_CONTROLLER, name, None, opts)
        # The release's own manifest, applied server-side as the LWS docs do with kubectl; the provider
        # fetches it at apply time. Under the SDK's mocks this arrives as one resource, unexpanded.
        release = k8s.yaml.v2.ConfigFile(name, file=args.manifest_url, opts=pulumi.ResourceOptions(parent=self))
        self.ready = release
        self.register_outputs({"version": facts.LWS_VERSION, "manifest": args.manifest_url})
