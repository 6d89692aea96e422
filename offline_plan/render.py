"""What a run of the program becomes: the `pulumi preview`-style tree, plan.json shaped like
`pulumi preview --json`, and the Kubernetes manifests as applyable YAML."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from components import tokens
from components.errors import mask
from offline_plan.harness import ProgramRun, Registration

# A few inputs per type that say what the resource is; the rest is in plan.json.
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    tokens.CLUSTER: ("location", "enableAutopilot", "releaseChannel.channel", "minMasterVersion"),
    tokens.NODE_POOL: (
        "nodeConfig.machineType",
        "placementPolicy.tpuTopology",
        "nodeLocations",
        "autoscaling.totalMinNodeCount",
        "autoscaling.totalMaxNodeCount",
        "nodeConfig.spot",
    ),
    tokens.BUCKET: ("name", "location", "publicAccessPrevention"),
    tokens.BUCKET_IAM_MEMBER: ("role", "member"),
    tokens.PROJECT_IAM_MEMBER: ("role",),
    tokens.SUBNETWORK: ("ipCidrRange",),
    tokens.DEPLOYMENT: ("spec.template.spec.containers.0.image", "spec.replicas"),
    tokens.HPA: (
        "spec.metrics.0.pods.metric.name",
        "spec.minReplicas",
        "spec.maxReplicas",
    ),
    tokens.K8S_SERVICE: ("spec.type",),
}


def _dig(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def key_inputs(registration: Registration) -> str:
    shown = []
    for path in KEY_INPUTS.get(registration.type, ()):
        value = _dig(registration.inputs, path)
        if value is not None:
            shown.append(f"{path.rsplit('.', 1)[-1]}={','.join(map(str, value)) if isinstance(value, list) else value}")
    return " ".join(shown)


def ordered(run: ProgramRun) -> list[Registration]:
    """Registrations in a stable order (the SDK registers concurrently, so arrival order varies):
    parents before children, siblings by URN."""
    children: dict[str, list[Registration]] = defaultdict(list)
    urns = {r.urn for r in run.registrations}
    for registration in run.registrations:
        children[registration.parent if registration.parent in urns else ""].append(registration)
    result: list[Registration] = []

    def visit(parent: str) -> None:
        for child in sorted(children.get(parent, []), key=lambda r: r.urn):
            result.append(child)
            visit(child.urn)

    visit("")
    return result


def stack_urn(run: ProgramRun) -> str:
    return f"urn:pulumi:{run.stack}::{run.project}::pulumi:pulumi:Stack::{run.project}-{run.stack}"


def tree_lines(run: ProgramRun) -> list[str]:
    """The resource tree as `pulumi preview` draws it."""
    by_parent: dict[str, list[Registration]] = defaultdict(list)
    for registration in ordered(run):
        by_parent[registration.parent].append(registration)
    rows: list[tuple[str, str, str]] = [(tokens.STACK, f"{run.project}-{run.stack}", "")]

    def visit(parent: str, prefix: str) -> None:
        items = by_parent.get(parent, [])
        for index, item in enumerate(items):
            last = index == len(items) - 1
            rows.append((f"{prefix}{'└─ ' if last else '├─ '}{item.type}", item.name, key_inputs(item)))
            visit(item.urn, prefix + ("   " if last else "│  "))

    visit(stack_urn(run), "")
    width_type = max(len(r[0]) for r in rows)
    width_name = max(len(r[1]) for r in rows)
    lines = [f"     {'Type':<{width_type}}  {'Name':<{width_name}}  Plan    Info"]
    lines += [f" +   {t:<{width_type}}  {n:<{width_name}}  create  {info}".rstrip() for t, n, info in rows]
    return lines


def plan_document(run: ProgramRun, policy: dict[str, Any] | None, notes: Iterable[str]) -> dict[str, Any]:
    """Shaped like `pulumi preview --json`: one create step per resource, in a stable order."""
    steps = [
        {
            "op": "create",
            "urn": stack_urn(run),
            "newState": {"type": tokens.STACK, "urn": stack_urn(run), "custom": False, "inputs": {}},
        }
    ]
    for registration in ordered(run):
        new_state: dict[str, Any] = {
            "type": registration.type,
            "urn": registration.urn,
            "custom": registration.custom,
            "parent": registration.parent or stack_urn(run),
            "inputs": registration.inputs,
            "dependencies": sorted(registration.dependencies),
            "propertyDependencies": {k: sorted(v) for k, v in sorted(registration.property_dependencies.items())},
        }
        if registration.protect:
            new_state["protect"] = True
        if registration.retain_on_delete:
            new_state["retainOnDelete"] = True
        step: dict[str, Any] = {"op": "create", "urn": registration.urn, "newState": new_state}
        if registration.provider:
            step["provider"] = registration.provider
        steps.append(step)
    document: dict[str, Any] = {
        "config": {},
        "steps": steps,
        "changeSummary": {"create": len(steps)},
        "diagnostics": [{"severity": "info", "message": note} for note in notes],
    }
    if policy is not None:
        document["policyResults"] = policy
    return document


def write_json(document: dict[str, Any], path: Path) -> None:
    """Secret-shaped text (hf_..., sk-...) and secret values this run was handed are masked: CI
    uploads build/ even when the plan fails."""
    path.write_text(mask(json.dumps(document, indent=2, sort_keys=True)) + "\n", encoding="utf-8")


def kubernetes_objects(run: ProgramRun) -> list[tuple[Registration, dict[str, Any]]]:
    return [
        (r, r.inputs)
        for r in ordered(run)
        if r.custom and r.type.startswith(tokens.KUBERNETES_PREFIX) and not r.type.startswith(tokens.PROVIDER_PREFIX) and "kind" in r.inputs
    ]


def _file_name(manifest: dict[str, Any]) -> str:
    metadata = manifest.get("metadata") or {}
    name = re.sub(r"[^a-zA-Z0-9.-]+", "-", str(metadata.get("name", "unnamed")))
    return f"{manifest['kind'].lower()}-{name}.yaml"


def write_manifests(run: ProgramRun, out_dir: Path) -> list[Path]:
    """One file per object under <namespace>/ (cluster-scoped objects under _cluster/); secret
    values are already the offline marker (a Secret keeps its keys), never the real value, and
    anything secret-shaped is masked as the file is written."""
    written = []
    for _, manifest in kubernetes_objects(run):
        namespace = (manifest.get("metadata") or {}).get("namespace") or "_cluster"
        path = out_dir / namespace / _file_name(manifest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(mask(yaml.safe_dump(manifest, sort_keys=True)), encoding="utf-8")
        written.append(path)
    return written
