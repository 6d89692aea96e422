"""Runs the real program (`__main__.py` with a stack's config) under the Pulumi SDK's mock
monitor and records every registration the engine would receive: type, name, parent,
provider, inputs, dependencies and property dependencies.

Invokes and values only the cloud could compute (project number, cluster endpoint and CA,
service account emails, load balancer addresses) are answered with strings that start with
PLACEHOLDER, so no output can pass one off as real.
"""

from __future__ import annotations

import asyncio
import json
import os
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks, settings
from pulumi.runtime.stack import run_pulumi_func

from policy_runner.session import StackResource

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "__main__.py"
PLACEHOLDER = "PLACEHOLDER"
SECRET_MARKER = "[secret: not decrypted offline]"
# A local run may supply a secret's real value as an env var: PLAN_SECRET_<KEY>, e.g. PLAN_SECRET_HFTOKEN.
SECRET_ENV_PREFIX = "PLAN_SECRET_"


def placeholder(what: str) -> str:
    return f"{PLACEHOLDER}-{what}"


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    provider: str
    inputs: dict[str, Any]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    protect: bool
    retain_on_delete: bool
    ignore_changes: list[str] = field(default_factory=list)
    id: str = ""
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProgramRun:
    stack: str
    project: str
    registrations: list[Registration]
    outputs: dict[str, Any]
    notes: list[str]

    def policy_resources(self) -> list[StackResource]:
        """The registrations as the engine hands them to a policy pack."""
        return [
            StackResource(
                urn=r.urn,
                type=r.type,
                name=r.name,
                properties=r.inputs,
                parent=r.parent or None,
                dependencies=tuple(r.dependencies),
                property_dependencies=r.property_dependencies,
                provider=r.provider or None,
            )
            for r in self.registrations
        ]


class PlanMocks(pulumi.runtime.Mocks):
    """Answers what a provider would compute, with plainly marked placeholders."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        token = args.typ
        if token == "gcp:container/cluster:Cluster":
            state.setdefault("endpoint", placeholder("cluster-endpoint"))
            state["masterAuth"] = {**state.get("masterAuth", {}), "clusterCaCertificate": placeholder("cluster-ca-certificate")}
        elif token == "gcp:serviceaccount/account:Account":
            email = f"{args.inputs['accountId']}@{args.inputs.get('project', 'project')}.iam.gserviceaccount.com"
            state.update(email=email, member=f"serviceAccount:{email}")
        elif token == "kubernetes:core/v1:Service":
            state["status"] = {"loadBalancer": {"ingress": [{"ip": placeholder("load-balancer-ip")}]}}
        name = args.inputs.get("name") or (args.inputs.get("metadata") or {}).get("name") or args.name
        return (f"{PLACEHOLDER}-id-{name}" if args.custom else None), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "gcp:organizations/getProject:getProject":
            project = args.args.get("projectId", "project")
            return {"projectId": project, "number": placeholder("project-number"), "name": project}, []
        return {}, []


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, plan_mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(plan_mocks)
        self.registrations: list[Registration] = []

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # The engine leaves the stack out of its children's qualified types; the SDK's mock does not.
        return super().make_urn("" if parent.split("::")[2:3] == ["pulumi:pulumi:Stack"] else parent, type_, name)

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            registered = self.resources[response.urn]
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    custom=request.custom,
                    parent=request.parent,
                    provider=request.provider,
                    inputs=_plain(pulumi.runtime.rpc.deserialize_properties(request.object, keep_unknowns=True)),
                    dependencies=list(request.dependencies),
                    property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                    protect=request.protect,
                    retain_on_delete=request.retainOnDelete,
                    ignore_changes=list(request.ignoreChanges),
                    id=registered.id or "",
                    state=_plain(registered.state),
                )
            )
        return response


def _plain(value: Any) -> Any:
    """Deserialized properties as JSON-ready values: secrets unwrapped into the marker."""
    if isinstance(value, Mapping):
        if value.get(pulumi.runtime.rpc._special_sig_key) == pulumi.runtime.rpc._special_secret_sig:
            return SECRET_MARKER
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is pulumi.runtime.rpc.UNKNOWN or value.__class__.__name__ == "Unknown":
        return placeholder("unknown")
    # The wire format carries every number as a double; Kubernetes rejects 1.0 where it wants an int.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def read_project_name(root: Path) -> str:
    return str(yaml.safe_load((root / "Pulumi.yaml").read_text())["name"])


def read_stack_config(stack: str, root: Path = ROOT) -> tuple[str, dict[str, str], list[str], list[str]]:
    """Pulumi.<stack>.yaml as the CLI hands it to the program: a flat map of `ns:key` to string
    (objects as JSON). Encrypted (`secure:`) values cannot be read offline; they become a
    marker unless PLAN_SECRET_<KEY> supplies a value. Returns (project, config, secret keys, notes)."""
    project = read_project_name(root)
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        stacks = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise FileNotFoundError(f"no stack file {path.name}; stacks here: {', '.join(stacks)}")
    document = yaml.safe_load(path.read_text()) or {}
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    notes: list[str] = []
    for key, value in (document.get("config") or {}).items():
        full = key if ":" in key else f"{project}:{key}"
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            secret_keys.append(full)
            env = SECRET_ENV_PREFIX + full.split(":", 1)[1].upper()
            if env in os.environ:
                config[full] = os.environ[env]
                notes.append(f"{full}: secret value taken from ${env}")
            else:
                config[full] = SECRET_MARKER
                notes.append(f"{full}: encrypted in {path.name}; cannot decrypt offline, using a marker (set ${env} to supply it)")
        else:
            config[full] = value if isinstance(value, str) else json.dumps(value)
    for secret in ("hfToken",):
        full = f"{project}:{secret}"
        if full not in config:
            secret_keys.append(full)
            config[full] = SECRET_MARKER
            notes.append(f"{full}: not set in {path.name}; `pulumi up` needs `pulumi config set --secret {secret}`; the plan uses a marker")
    return project, config, secret_keys, notes


def run_program(
    stack: str,
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    *,
    project: str | None = None,
    program: Path = PROGRAM,
    plan_mocks: pulumi.runtime.Mocks | None = None,
    monitor: RecordingMonitor | None = None,
    preview: bool = True,
) -> ProgramRun:
    """Runs the program once, as a preview or (preview=False) as an update. Without `config`, the
    stack file's config is used. Raises what the
    program raises (a ConfigError for bad config) after the registrations it made are counted."""
    notes: list[str] = []
    if config is None:
        project, config, secret_keys, notes = read_stack_config(stack, program.parent)
    project = project or read_project_name(program.parent)
    monitor = monitor or RecordingMonitor(plan_mocks or PlanMocks())
    asyncio.set_event_loop(asyncio.new_event_loop())
    settings.ROOT.set(None)
    pulumi.runtime.set_all_config(config, secret_keys or [])
    pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    root = settings.get_root_resource()
    outputs: dict[str, Any] = {}

    def program_body() -> None:
        runpy.run_path(str(program), run_name="__main__")

    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(run_pulumi_func(program_body))
        if root is not None:
            outputs = loop.run_until_complete(_resolve(getattr(root, "outputs", {})))
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    return ProgramRun(stack, project, monitor.registrations, outputs, notes)


async def _resolve(outputs: Mapping[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in outputs.items():
        output = pulumi.Output.from_input(value)
        secret = await output.is_secret()
        resolved[key] = SECRET_MARKER if secret else _plain(await output.future(with_unknowns=True))
    return resolved


__all__ = ["PLACEHOLDER", "SECRET_MARKER", "PlanMocks", "ProgramRun", "Registration", "read_stack_config", "run_program"]
