"""ProjectApis: the Google APIs the stack calls, enabled before anything else is created."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components import facts, tokens


@dataclass(frozen=True)
class ProjectApisArgs:
    project: str
    services: tuple[str, ...] = facts.REQUIRED_APIS


class ProjectApis(pulumi.ComponentResource):
    """Depending on this component waits for every API it enables (Pulumi expands a component
    dependency to all its children)."""

    def __init__(self, name: str, args: ProjectApisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(tokens.PROJECT_APIS, name, None, opts)
        enabled = [
            gcp.projects.Service(
                f"{name}-{service.split('.')[0]}",
                project=args.project,
                service=service,
                # Other workloads of the project may use the same APIs: a destroy leaves them on.
                disable_on_destroy=False,
                disable_dependent_services=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for service in args.services
        ]
        self.register_outputs({"services": [s.service for s in enabled]})
