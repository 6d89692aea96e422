"""The resource dependency graph of one program run, its critical path, the resources that wait
for the cluster without needing it, and a picture of it (SVG, Graphviz source, optional PNG).

Edges are what the engine waits on: explicit and property dependencies, and a resource's
provider. A dependency on a component stands for all of the component's descendants, as
`depends_on` a component does in Pulumi. Parent nesting is grouping only: a child never waits
for its parent component.
"""

from __future__ import annotations

import graphlib
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from components import facts, tokens
from offline_plan.harness import Registration

CLUSTER_TYPE = tokens.CLUSTER
# What talks to the cluster or is part of it; anything else has no reason to wait for it.
CLUSTER_BOUND_PREFIXES = (tokens.KUBERNETES_PREFIX, tokens.KUBERNETES_PROVIDER, "gcp:container/", "gcp:gkehub/")

# Rough minutes from create to "pulumi up moves on", to rank chains, not to promise durations.
TYPICAL_MINUTES: Mapping[str, float] = MappingProxyType(
    {
        # A regional GKE control plane (Standard or Autopilot) takes 6 to 10 minutes.
        tokens.CLUSTER: 8.0,
        # Enabling an API on a fresh project takes about a minute; an enabled one answers at once.
        tokens.PROJECT_SERVICE: 1.0,
        # A pool is done once its nodes register; CPU VMs boot in a few minutes.
        tokens.NODE_POOL: 3.0,
        tokens.NETWORK: 0.5,
        tokens.SUBNETWORK: 0.5,
        tokens.ROUTER: 0.3,
        tokens.ROUTER_NAT: 0.5,
        # IAM writes are read-modify-write of a policy: seconds, retried on conflicts.
        tokens.PROJECT_IAM_MEMBER: 0.2,
        tokens.SERVICE_ACCOUNT: 0.1,
        tokens.BUCKET: 0.05,
        tokens.BUCKET_IAM_MEMBER: 0.1,
        # Pulumi waits for a Deployment's pods to be ready: an image pull and a start.
        tokens.DEPLOYMENT: 1.0,
        # Pulumi waits for a Service's endpoints and, for a LoadBalancer, its address.
        tokens.K8S_SERVICE: 1.0,
    }
)
# TPU VMs (and their host maintenance set-up) boot slower than CPU ones.
TPU_NODE_POOL_MINUTES = 5.0
# The first replica of a TPU server: a slice to schedule on, a ~10 GB image, the weights from the
# Hub and an XLA compile; Pulumi waits for all of it before the Deployment counts as created.
TPU_SERVER_COLD_START_MINUTES = 20.0
# The Kubernetes API accepts other objects at once; providers are configured locally.
KUBERNETES_OBJECT_MINUTES = 0.05
PROVIDER_MINUTES = 0.0
OTHER_MINUTES = 0.5


def typical_minutes(resource_type: str, inputs: Mapping[str, Any]) -> float:
    if resource_type == tokens.DEPLOYMENT and _requests_tpu(inputs):
        return TPU_SERVER_COLD_START_MINUTES
    if resource_type == tokens.NODE_POOL and facts.machine_type_info(str((inputs.get("nodeConfig") or {}).get("machineType", ""))):
        return TPU_NODE_POOL_MINUTES
    if resource_type in TYPICAL_MINUTES:
        return TYPICAL_MINUTES[resource_type]
    if resource_type.startswith(tokens.PROVIDER_PREFIX):
        return PROVIDER_MINUTES
    if resource_type.startswith(tokens.KUBERNETES_PREFIX):
        return KUBERNETES_OBJECT_MINUTES
    return OTHER_MINUTES


def _requests_tpu(inputs: Mapping[str, Any]) -> bool:
    pod = ((inputs.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod.get("containers") or []:
        resources = container.get("resources") or {}
        if any(facts.TPU_RESOURCE in (resources.get(part) or {}) for part in ("requests", "limits")):
            return True
    return False


@dataclass(frozen=True)
class Resource:
    urn: str
    type: str
    name: str
    custom: bool
    # The parent's URN, or "" at the stack's top level.
    parent: str
    minutes: float
    cluster_bound: bool = False

    @property
    def kind(self) -> str:
        """The type token's last part: Deployment, NodePool, ... and the package for providers."""
        if self.type.startswith("pulumi:providers:"):
            return f"provider {self.type.rsplit(':', 1)[1]}"
        return self.type.rsplit(":", 1)[1]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class ResourceGraph:
    stack: str
    project: str
    # Every registered resource, components included, in URN order: the engine's registration
    # order varies from run to run, and the same program must give the same report and picture.
    resources: Mapping[str, Resource]
    # Custom resource URN -> the custom resources it waits for.
    depends_on: Mapping[str, tuple[str, ...]]

    def custom(self) -> list[Resource]:
        return [r for r in self.resources.values() if r.custom]

    def dependents(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {urn: [] for urn in self.depends_on}
        for urn, deps in self.depends_on.items():
            for dep in deps:
                found[dep].append(urn)
        return found

    def upstream(self, urn: str) -> set[str]:
        """Everything `urn` waits for, directly or not."""
        seen: set[str] = set()
        todo = list(self.depends_on[urn])
        while todo:
            dep = todo.pop()
            if dep not in seen:
                seen.add(dep)
                todo.extend(self.depends_on[dep])
        return seen

    def group(self, urn: str) -> str:
        """The top-level component that holds `urn` (itself if it is one), or "" for the stack."""
        top = ""
        current = self.resources[urn]
        while True:
            if not current.custom:
                top = current.urn
            if current.parent not in self.resources:
                return top
            current = self.resources[current.parent]


def build_graph(registrations: Sequence[Registration]) -> ResourceGraph:
    if not registrations:
        raise ValueError("no registrations: the program registered no resources")
    registrations = sorted(registrations, key=lambda r: r.urn)
    resources = {
        r.urn: Resource(
            r.urn,
            r.type,
            r.name,
            r.custom,
            r.parent,
            typical_minutes(r.type, r.inputs) if r.custom else 0.0,
            needs_cluster(r.type, r.inputs),
        )
        for r in registrations
    }
    children: dict[str, list[str]] = {}
    for r in registrations:
        children.setdefault(r.parent, []).append(r.urn)

    def custom_descendants(urn: str) -> list[str]:
        found: list[str] = []
        for child in children.get(urn, []):
            found.extend([child] if resources[child].custom else [])
            found.extend(custom_descendants(child))
        return found

    depends_on: dict[str, tuple[str, ...]] = {}
    for r in registrations:
        if not r.custom:
            continue
        targets = [*r.dependencies, *(urn for urns in r.property_dependencies.values() for urn in urns)]
        if r.provider:
            targets.append(r.provider.rsplit("::", 1)[0])
        deps: set[str] = set()
        for target in targets:
            # The stack and default providers are not registrations here; nothing waits on them.
            if target not in resources:
                continue
            deps.update([target] if resources[target].custom else custom_descendants(target))
        deps.discard(r.urn)
        depends_on[r.urn] = tuple(sorted(deps))
    stack, project = _stack_and_project(registrations[0].urn)
    return ResourceGraph(stack, project, MappingProxyType(resources), MappingProxyType(depends_on))


def _stack_and_project(urn: str) -> tuple[str, str]:
    match = re.match(r"^urn:pulumi:([^:]+)::([^:]+)::", urn)
    if match is None:
        raise ValueError(f"not a Pulumi URN: {urn}")
    return match.group(1), match.group(2)


def _topological(graph: ResourceGraph) -> list[str]:
    """Custom resources, each after everything it waits for; ties in URN order."""
    sorter = graphlib.TopologicalSorter({urn: sorted(deps) for urn, deps in sorted(graph.depends_on.items())})
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        stuck = sorted({graph.resources[u].label for u in error.args[1]})
        raise ValueError(f"dependency cycle among: {', '.join(stuck)}") from None
    ordered: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered.extend(ready)
        sorter.done(*ready)
    return ordered


@dataclass(frozen=True)
class Schedule:
    """Earliest start and finish of each custom resource with unlimited parallelism, and the
    latest finish that does not delay the whole run."""

    start: Mapping[str, float]
    finish: Mapping[str, float]
    latest_finish: Mapping[str, float]
    total_minutes: float

    def slack(self, urn: str) -> float:
        return round(self.latest_finish[urn] - self.finish[urn], 6)


def schedule(graph: ResourceGraph) -> Schedule:
    ordered = _topological(graph)
    start: dict[str, float] = {}
    finish: dict[str, float] = {}
    for urn in ordered:
        # Rounded so that sums of tenths compare equal (no slack of -3.6e-15 minutes).
        start[urn] = max((finish[dep] for dep in graph.depends_on[urn]), default=0.0)
        finish[urn] = round(start[urn] + graph.resources[urn].minutes, 6)
    total = max(finish.values(), default=0.0)
    dependents = graph.dependents()
    latest: dict[str, float] = {}
    for urn in reversed(ordered):
        latest[urn] = min((round(latest[d] - graph.resources[d].minutes, 6) for d in dependents[urn]), default=total)
    return Schedule(MappingProxyType(start), MappingProxyType(finish), MappingProxyType(latest), total)


@dataclass(frozen=True)
class PathStep:
    urn: str
    label: str
    minutes: float
    starts_at: float
    finishes_at: float


@dataclass(frozen=True)
class CriticalPath:
    """The longest chain of custom resources `pulumi up` creates one after another."""

    steps: tuple[PathStep, ...]
    total_minutes: float

    @property
    def urns(self) -> tuple[str, ...]:
        return tuple(step.urn for step in self.steps)

    def describe(self) -> str:
        chain = " -> ".join(f"{step.label} ({step.minutes:g} min)" for step in self.steps)
        return f"~{self.total_minutes:.0f} min: {chain}"


def critical_path(graph: ResourceGraph) -> CriticalPath:
    plan = schedule(graph)
    if not plan.finish:
        return CriticalPath((), 0.0)
    # Ties go to the first URN, so the same program gives the same path.
    current: str | None = min(plan.finish, key=lambda u: (-plan.finish[u], u))
    chain: list[str] = []
    while current is not None:
        chain.append(current)
        deps = graph.depends_on[current]
        current = min(deps, key=lambda u: (-plan.finish[u], u)) if deps else None
    steps = tuple(
        PathStep(urn, graph.resources[urn].label, graph.resources[urn].minutes, plan.start[urn], plan.finish[urn])
        for urn in reversed(chain)
    )
    return CriticalPath(steps, plan.total_minutes)


@dataclass(frozen=True)
class NeedlessWait:
    """A resource that waits for the cluster though nothing in it needs the cluster."""

    urn: str
    label: str
    # From the cluster to this resource, each waiting for the one before.
    chain: tuple[str, ...]
    # How much later it can start than it could without its cluster-bound dependencies.
    delay_minutes: float
    # 0 on the critical path; the smaller, the sooner this wait lengthens the whole run.
    slack_minutes: float


def needs_cluster(resource_type: str, inputs: Mapping[str, Any]) -> bool:
    """Talks to the cluster, is part of it, or grants to its Workload Identity pool, which only
    exists once a cluster with Workload Identity does (IAM refuses members of a missing pool)."""
    member = inputs.get("member")
    return resource_type.startswith(CLUSTER_BOUND_PREFIXES) or (isinstance(member, str) and ".svc.id.goog/" in member)


def needless_waits(graph: ResourceGraph) -> list[NeedlessWait]:
    """Cluster-independent resources whose dependencies reach a GKE cluster, nearest to the
    critical path first."""
    clusters = {r.urn for r in graph.custom() if r.type == CLUSTER_TYPE}
    plan = schedule(graph)
    found: list[NeedlessWait] = []
    for resource in graph.custom():
        if resource.cluster_bound or not clusters & graph.upstream(resource.urn):
            continue
        free = [d for d in graph.depends_on[resource.urn] if d not in clusters and not clusters & graph.upstream(d)]
        unblocked = max((plan.finish[d] for d in free), default=0.0)
        found.append(
            NeedlessWait(
                resource.urn,
                resource.label,
                _chain_from(graph, clusters, resource.urn),
                round(plan.start[resource.urn] - unblocked, 6),
                plan.slack(resource.urn),
            )
        )
    return sorted(found, key=lambda w: (w.slack_minutes, w.urn))


def _chain_from(graph: ResourceGraph, sources: set[str], target: str) -> tuple[str, ...]:
    """The shortest chain of dependencies from one of `sources` to `target`."""
    came_from: dict[str, str] = {}
    todo = deque([target])
    while todo:
        urn = todo.popleft()
        if urn in sources:
            chain = [urn]
            while chain[-1] != target:
                chain.append(came_from[chain[-1]])
            return tuple(chain)
        for dep in graph.depends_on[urn]:
            if dep not in came_from:
                came_from[dep] = urn
                todo.append(dep)
    raise ValueError(f"{target} does not wait for any of {sorted(sources)}")


# --- Drawing -------------------------------------------------------------------------------------
# graph.dot describes the picture: one cluster per top-level component, arrows from a resource to
# what waits for it, the critical path in red. Graphviz's `dot` lays it out (graph.svg) when it is
# on PATH (Debian/Ubuntu: apt-get install graphviz); the same plan gives the same bytes.

DOT = "dot"
CRITICAL = "#d93025"
PALETTE: Mapping[str, tuple[str, str]] = MappingProxyType(
    {"gcp": ("#e8f0fe", "#1a73e8"), "kubernetes": ("#e6f4ea", "#188038"), "pulumi": ("#f1f3f4", "#80868b")}
)
RENDER_TIMEOUT_SECONDS = 120


def _palette(resource_type: str) -> tuple[str, str]:
    return PALETTE.get(resource_type.split(":", 1)[0], PALETTE["pulumi"])


def _lanes(graph: ResourceGraph) -> dict[str, tuple[str, str, list[str]]]:
    """Lane key -> (title, name, members). A lane per top-level component; resources at the stack's
    top level get a lane per name, so a model's namespace sits next to that model's components."""
    lanes: dict[str, tuple[str, str, list[str]]] = {}
    for resource in graph.custom():
        group = graph.group(resource.urn)
        if group:
            lane = lanes.setdefault(group, (graph.resources[group].label, graph.resources[group].name, []))
        else:
            lane = lanes.setdefault(f"top level {resource.name}", (f"top level: {resource.name}", resource.name, []))
        lane[2].append(resource.urn)
    return lanes


def _dot(graph: ResourceGraph, path: CriticalPath) -> str:
    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    ids = {r.urn: f"r{index}" for index, r in enumerate(graph.custom())}
    critical_nodes = set(path.urns)
    critical_edges = set(zip(path.urns, path.urns[1:], strict=False))
    lines = [
        f"digraph {q(f'{graph.project}/{graph.stack}')} {{",
        "  rankdir=LR;",
        f"  label={q(f'critical path ~{path.total_minutes:.0f} min (red); minutes are typical creation times')};",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        '  edge [color="#80868b"];',
    ]
    for index, (title, _, members) in enumerate(_lanes(graph).values()):
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f'    label={q(title)}; style="rounded"; color="#bdc1c6";')
        for r in (graph.resources[urn] for urn in members):
            fill, stroke = _palette(r.type)
            color = CRITICAL if r.urn in critical_nodes else stroke
            width = ", penwidth=2.4" if r.urn in critical_nodes else ""
            label = f"{r.name}\n{r.kind} · {r.minutes:g} min"
            lines.append(f"    {ids[r.urn]} [label={q(label)}, tooltip={q(r.urn)}, fillcolor={q(fill)}, color={q(color)}{width}];")
        lines.append("  }")
    for urn, deps in graph.depends_on.items():
        for dep in deps:
            style = f' [color="{CRITICAL}", penwidth=2.4]' if (dep, urn) in critical_edges else ""
            lines.append(f"  {ids[dep]} -> {ids[urn]}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


class GraphvizError(Exception):
    """`dot` is installed but could not lay the graph out."""


def dot_binary() -> str | None:
    """Graphviz's `dot`, or None when it is not installed."""
    return shutil.which(DOT)


def write_graph(graph: ResourceGraph, path: CriticalPath, out_dir: Path, *, png: bool = False) -> list[Path]:
    """Writes graph.dot into `out_dir` and, when Graphviz's `dot` is on PATH, graph.svg (and
    graph.png with `png`) laid out from it; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / "graph.dot"
    source.write_text(_dot(graph, path), encoding="utf-8")
    written = [source]
    binary = dot_binary()
    if binary is None:
        return written
    for fmt in ("svg", "png") if png else ("svg",):
        target = out_dir / f"graph.{fmt}"
        result = subprocess.run(
            [binary, f"-T{fmt}", "-o", str(target), str(source)],
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise GraphvizError(f"{DOT} -T{fmt} {source} failed: {(result.stderr.strip().splitlines() or ['no output'])[-1]}")
        written.append(target)
    return written


def describe_waits(waits: Iterable[NeedlessWait], graph: ResourceGraph) -> list[str]:
    """One line per needless wait, for the CLI."""
    return [
        f"{w.label} waits {w.delay_minutes:g} min for the cluster it does not need "
        f"(slack {w.slack_minutes:g} min) via {' -> '.join(graph.resources[u].label for u in w.chain)}"
        for w in waits
    ]


__all__ = [
    "CriticalPath",
    "GraphvizError",
    "NeedlessWait",
    "PathStep",
    "Resource",
    "ResourceGraph",
    "Schedule",
    "build_graph",
    "critical_path",
    "describe_waits",
    "dot_binary",
    "needless_waits",
    "needs_cluster",
    "schedule",
    "typical_minutes",
    "write_graph",
]
