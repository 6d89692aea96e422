"""The resource graph: its edges, critical path, needless waits for the cluster and its pictures,
on small hand-made registrations and on the real prod plan."""

from __future__ import annotations

import random
import xml.dom.minidom
from pathlib import Path
from typing import Any

import pytest

from components import tokens
from helpers import shipped_run
from offline_plan import graph
from offline_plan.harness import ProgramRun, Registration

STACK = "urn:pulumi:test::tpu-serving::pulumi:pulumi:Stack::tpu-serving-test"
CLUSTER = tokens.CLUSTER
BUCKET = tokens.BUCKET


def urn(type_: str, name: str, *parents: str) -> str:
    chain = "$".join([*parents, type_]) if parents else type_
    return f"urn:pulumi:test::tpu-serving::{chain}::{name}"


def reg(
    type_: str,
    name: str,
    *,
    parents: tuple[str, ...] = (),
    parent: str = STACK,
    custom: bool = True,
    deps: tuple[str, ...] = (),
    prop_deps: dict[str, list[str]] | None = None,
    provider: str = "",
    inputs: dict[str, Any] | None = None,
) -> Registration:
    return Registration(
        urn=urn(type_, name, *parents),
        type=type_,
        name=name,
        custom=custom,
        parent=parent,
        provider=provider,
        inputs=inputs or {},
        dependencies=list(deps),
        property_dependencies=prop_deps or {},
        protect=False,
        retain_on_delete=False,
    )


def small_stack(bucket_deps: tuple[str, ...] = ()) -> list[Registration]:
    """A Cluster component (network, cluster, provider, nested node pool component), a bucket
    component, and a TPU Deployment that waits for the node pool component."""
    comp = tokens.CLUSTER_COMPONENT
    component = reg(comp, "c", custom=False)
    network = reg(tokens.NETWORK, "c", parents=(comp,), parent=component.urn)
    cluster = reg(CLUSTER, "c", parents=(comp,), parent=component.urn, prop_deps={"network": [network.urn]})
    provider = reg(tokens.KUBERNETES_PROVIDER, "c-k8s", parents=(comp,), parent=component.urn, deps=(cluster.urn,))
    pools = reg("tpu-serving:index:Pools", "p", parents=(comp,), parent=component.urn, custom=False)
    pool = reg(
        tokens.NODE_POOL,
        "p",
        parents=(comp, "tpu-serving:index:Pools"),
        parent=pools.urn,
        deps=(cluster.urn,),
        inputs={"nodeConfig": {"machineType": "ct6e-standard-4t"}},
    )
    cache = reg("tpu-serving:index:Cache", "m", custom=False)
    bucket = reg(BUCKET, "m", parents=("tpu-serving:index:Cache",), parent=cache.urn, deps=bucket_deps)
    grant = reg(tokens.BUCKET_IAM_MEMBER, "m", parents=("tpu-serving:index:Cache",), parent=cache.urn, deps=(bucket.urn,))
    tpu = {"spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"google.com/tpu": "4"}}}]}}}}
    server = reg(
        tokens.DEPLOYMENT,
        "m",
        deps=(pools.urn, bucket.urn),
        provider=f"{provider.urn}::PLACEHOLDER-id",
        inputs=tpu,
    )
    return [component, network, cluster, provider, pools, pool, cache, bucket, grant, server]


def by_name(g: graph.ResourceGraph) -> dict[str, str]:
    return {f"{r.kind} {r.name}": r.urn for r in g.custom()}


def test_edges_come_from_dependencies_providers_and_components_not_parents() -> None:
    g = graph.build_graph(small_stack())
    names = by_name(g)
    labels = {names[k]: k for k in names}
    deployment = g.depends_on[names["Deployment m"]]
    # The pool component stands for its node pool; the provider is a dependency; the Deployment's
    # parent (the stack) and the components themselves are not nodes of the graph.
    assert sorted(labels[u] for u in deployment) == ["Bucket m", "NodePool p", "provider kubernetes c-k8s"]
    assert g.depends_on[names["Cluster c"]] == (names["Network c"],)
    assert g.depends_on[names["Network c"]] == ()
    assert g.group(names["NodePool p"]) == urn(tokens.CLUSTER_COMPONENT, "c")
    assert g.group(names["Deployment m"]) == ""
    assert (g.stack, g.project) == ("test", "tpu-serving")


def test_a_dependency_on_a_component_means_all_of_its_descendants() -> None:
    g = graph.build_graph(small_stack(bucket_deps=(urn(tokens.CLUSTER_COMPONENT, "c"),)))
    names = by_name(g)
    expected = {names[k] for k in ("Network c", "Cluster c", "provider kubernetes c-k8s", "NodePool p")}
    assert set(g.depends_on[names["Bucket m"]]) == expected


def test_critical_path_weights_each_step_by_its_typical_minutes() -> None:
    g = graph.build_graph(small_stack())
    path = graph.critical_path(g)
    assert [s.label for s in path.steps] == ["Network c", "Cluster c", "NodePool p", "Deployment m"]
    assert [s.minutes for s in path.steps] == [0.5, 8.0, 5.0, graph.TPU_SERVER_COLD_START_MINUTES]
    assert path.total_minutes == pytest.approx(33.5)
    assert path.steps[-1].finishes_at == path.total_minutes
    assert "Cluster c (8 min)" in path.describe()


def test_a_cycle_is_reported_with_its_members() -> None:
    a, b = urn(BUCKET, "a"), urn(BUCKET, "b")
    cyclic = [reg(BUCKET, "a", deps=(b,)), reg(BUCKET, "b", deps=(a,))]
    with pytest.raises(ValueError, match="cycle among: Bucket a, Bucket b"):
        graph.critical_path(graph.build_graph(cyclic))


def test_needless_waits_find_what_waits_for_the_cluster_without_needing_it() -> None:
    assert graph.needless_waits(graph.build_graph(small_stack())) == []
    g = graph.build_graph(small_stack(bucket_deps=(urn(tokens.CLUSTER_COMPONENT, "c"),)))
    names = by_name(g)
    waits = graph.needless_waits(g)
    assert [w.label for w in waits] == ["Bucket m", "BucketIAMMember m"]
    bucket = waits[0]
    assert bucket.chain == (names["Cluster c"], names["Bucket m"])
    # Its only other wait is the network (0.5 min); waiting for the whole component, it starts
    # when the pool is done (13.5 min).
    assert bucket.delay_minutes == pytest.approx(13.0)
    assert bucket.slack_minutes == 0
    assert waits[1].slack_minutes > 0
    assert "Bucket m waits 13 min" in graph.describe_waits(waits, g)[0]


@pytest.fixture(scope="module")
def prod() -> ProgramRun:
    return shipped_run("prod")


def test_prod_critical_path_runs_through_the_70b_slice(prod: ProgramRun) -> None:
    g = graph.build_graph(prod.registrations)
    path = graph.critical_path(g)
    # Every cloud resource waits for the project's APIs, all alike; one of them starts the path.
    assert path.steps[0].label.startswith("Service apis-")
    assert [s.label for s in path.steps[1:]] == [
        "Network llm-prod",
        "Subnetwork llm-prod",
        "Cluster llm-prod",
        "NodePool llama-70b",
        "Deployment llama-70b",
        "HorizontalPodAutoscaler llama-70b",
    ]
    assert path.total_minutes == pytest.approx(35.05)


def test_prod_buckets_do_not_wait_for_the_cluster(prod: ProgramRun) -> None:
    g = graph.build_graph(prod.registrations)
    assert graph.needless_waits(g) == []
    clusters = {r.urn for r in g.custom() if r.type == CLUSTER}
    buckets = [r for r in g.custom() if r.type == BUCKET]
    assert len(buckets) == 2
    for resource in buckets:
        assert not clusters & g.upstream(resource.urn), resource.label
    # Their grants name the cluster's Workload Identity pool: waiting for it is needed, not needless.
    grants = [r for r in g.custom() if r.type == tokens.BUCKET_IAM_MEMBER]
    assert grants and all(r.cluster_bound and clusters & g.upstream(r.urn) for r in grants)


@pytest.mark.skipif(graph.dot_binary() is None, reason="Graphviz's dot is not installed (.ci/run installs it)")
def test_pictures_are_the_same_bytes_whatever_the_registration_order(prod: ProgramRun, tmp_path: Path) -> None:
    shuffled = list(prod.registrations)
    random.Random(7).shuffle(shuffled)
    outputs = []
    for index, registrations in enumerate((prod.registrations, shuffled)):
        g = graph.build_graph(registrations)
        written = graph.write_graph(g, graph.critical_path(g), tmp_path / str(index), png=index == 0)
        outputs.append({p.name: p.read_bytes() for p in written})
    assert sorted(outputs[0]) == ["graph.dot", "graph.png", "graph.svg"]
    assert outputs[0]["graph.png"].startswith(b"\x89PNG")
    assert outputs[0]["graph.svg"] == outputs[1]["graph.svg"]
    assert outputs[0]["graph.dot"] == outputs[1]["graph.dot"]

    # Graphviz's layout: a node per custom resource (its URN the tooltip), an edge per dependency.
    svg = xml.dom.minidom.parseString(outputs[0]["graph.svg"])
    groups = svg.getElementsByTagName("g")
    nodes = [e for e in groups if e.getAttribute("class") == "node"]
    edges = [e for e in groups if e.getAttribute("class") == "edge"]
    assert len(nodes) == len(g.custom())
    assert len(edges) == sum(len(deps) for deps in g.depends_on.values())
    tooltips = {a.getAttribute("xlink:title") for a in svg.getElementsByTagName("a")}
    assert {r.urn for r in g.custom()} <= tooltips
    text = outputs[0]["graph.svg"].decode()
    assert ">llm&#45;prod<" in text and ">Cluster · 8 min<" in text and ">metrics&#45;adapter<" in text and graph.CRITICAL in text
    dot = outputs[0]["graph.dot"].decode()
    assert (
        dot.startswith('digraph "tpu-serving/prod"') and dot.count("subgraph cluster_") == 5
    )  # ProjectApis, Cluster, MetricsAdapter, 2 ServedModels
    assert dot.count("->") == sum(len(deps) for deps in g.depends_on.values())


def test_without_graphviz_only_the_dot_file_is_written(prod: ProgramRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph, "dot_binary", lambda: None)
    g = graph.build_graph(prod.registrations)
    written = graph.write_graph(g, graph.critical_path(g), tmp_path, png=True)
    assert [p.name for p in written] == ["graph.dot"] and sorted(p.name for p in tmp_path.iterdir()) == ["graph.dot"]


def test_topological_order_is_by_dependency_then_urn() -> None:
    g = graph.build_graph(small_stack())
    ordered = graph._topological(g)
    assert sorted(ordered) == sorted(g.depends_on)
    for position, current in enumerate(ordered):
        assert set(g.depends_on[current]) <= set(ordered[:position])
