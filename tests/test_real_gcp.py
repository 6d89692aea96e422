"""What the real APIs accept and read back (issue 11): APIs first, no topology on single-host
pools, no version pin that ages out, and a second apply that changes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import tool_cli
from components import facts, tokens
from components.tpu_node_pool import tpu_placement_policy
from helpers import shipped_run
from offline_plan import __main__ as offline_plan_cli
from offline_plan import second_apply
from offline_plan.harness import ProgramRun, Registration

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = tool_cli.stack_names(ROOT)
POOL = tokens.NODE_POOL
SERVICE = tokens.PROJECT_SERVICE


@pytest.fixture(scope="module", params=SHIPPED)
def shipped(request: pytest.FixtureRequest) -> ProgramRun:
    return shipped_run(request.param)


def _closure(run: ProgramRun, urn: str) -> Iterator[str]:
    """Everything a resource waits for: its dependencies and its provider's, transitively."""
    by_urn = {r.urn: r for r in run.registrations}
    seen: set[str] = set()
    todo = [urn]
    while todo:
        current = by_urn.get(todo.pop())
        if current is None:
            continue
        for dependency in [*current.dependencies, current.provider.rsplit("::", 1)[0] if current.provider else ""]:
            if dependency and dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    yield from seen


def test_every_stack_enables_its_apis_and_never_disables_them(shipped: ProgramRun) -> None:
    services = [r for r in shipped.registrations if r.type == SERVICE]
    assert sorted(s.inputs["service"] for s in services) == sorted(facts.REQUIRED_APIS)
    assert all(s.inputs["disableOnDestroy"] is False for s in services)
    assert all(s.inputs["disableDependentServices"] is False for s in services)


def test_every_cloud_resource_waits_for_every_api(shipped: ProgramRun) -> None:
    apis = {r.urn for r in shipped.registrations if r.type == SERVICE}
    waiting = [r for r in shipped.registrations if r.custom and r.type != SERVICE and not r.type.startswith("pulumi:providers:")]
    assert waiting
    for registration in waiting:
        missing = apis - set(_closure(shipped, registration.urn))
        assert not missing, f"{registration.type} {registration.name} does not wait for {sorted(missing)}"


def test_no_single_host_pool_sets_a_topology(shipped: ProgramRun) -> None:
    pools = [r for r in shipped.registrations if r.type == POOL and facts.machine_type_info(r.inputs["nodeConfig"]["machineType"])]
    for pool in pools:
        assert "placementPolicy" not in pool.inputs, pool.name
        # GKE reports threads_per_core on TPU VMs; the pool must not be replaced for it.
        assert "nodeConfig.advancedMachineFeatures" in pool.ignore_changes


def test_multi_host_slices_keep_compact_placement_with_their_topology() -> None:
    v6e = facts.GENERATIONS["v6e"]
    assert tpu_placement_policy(v6e.slices_of("4x4")[0]) == {"type": "COMPACT", "tpu_topology": "4x4"}
    assert tpu_placement_policy(v6e.single_host_slice("2x4")) is None  # type: ignore[arg-type]
    assert tpu_placement_policy(v6e.single_host_slice("1x1")) is None  # type: ignore[arg-type]


def test_no_shipped_stack_pins_a_gke_version() -> None:
    for stack in SHIPPED:
        cluster = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["tpu-serving:cluster"]
        assert "version" not in cluster, stack


def test_standard_cluster_leaves_server_filled_fields_alone() -> None:
    run = shipped_run("prod")
    cluster = next(r for r in run.registrations if r.type == tokens.CLUSTER)
    assert {"nodeConfig", "monitoringConfig.enableComponents"} <= set(cluster.ignore_changes)
    # Stated on create (left out, the provider would send an empty list), GKE's additions ignored after.
    assert cluster.inputs["monitoringConfig"] == {"enableComponents": ["SYSTEM_COMPONENTS"], "managedPrometheus": {"enabled": True}}
    assert "minMasterVersion" not in cluster.inputs


def test_nodes_hold_the_one_default_node_role() -> None:
    run = shipped_run("prod")
    grants = [r for r in run.registrations if r.type == tokens.PROJECT_IAM_MEMBER and "-nodes@" in r.inputs["member"]]
    assert [g.inputs["role"] for g in grants] == [facts.NODE_SERVICE_ACCOUNT_ROLE] == ["roles/container.defaultNodeServiceAccount"]


@pytest.mark.slow
def test_second_apply_changes_nothing_on_any_shipped_stack() -> None:
    for stack in SHIPPED:
        result = second_apply.check(stack)
        assert result.changes == [], "\n".join(result.lines())


def _registration(token: str, inputs: dict[str, Any], ignore: list[str] | None = None) -> Registration:
    return Registration(f"urn:pulumi:s::p::{token}::x", token, "x", True, "", "", inputs, [], {}, False, False, ignore or [])


def test_a_server_filled_forcenew_block_is_a_replacement() -> None:
    inputs = {"nodeConfig": {"machineType": "ct6e-standard-8t", "reservationAffinity": {"consumeReservationType": "NO_RESERVATION"}}}
    state = second_apply.read_back(POOL, inputs)
    changes = second_apply.diff_resource(_registration(POOL, inputs), state)
    assert {(c.op, c.path) for c in changes} == {
        ("replace", "nodeConfig.advancedMachineFeatures.threadsPerCore"),
        ("replace", "nodeConfig.advancedMachineFeatures.enableNestedVirtualization"),
    }
    assert second_apply.diff_resource(_registration(POOL, inputs, ["nodeConfig.advancedMachineFeatures"]), state) == []
    # Not a ct6e machine: GKE fills nothing there.
    other = {"nodeConfig": {"machineType": "e2-standard-4"}}
    assert second_apply.diff_resource(_registration(POOL, other), second_apply.read_back(POOL, other)) == []


def test_a_field_filled_only_when_unset_keeps_what_the_program_states() -> None:
    unset = {"nodeConfig": {"machineType": "ct5lp-hightpu-4t"}}
    assert second_apply.read_back(POOL, unset)["nodeConfig"]["reservationAffinity"] == facts.TPU_RESERVATION_AFFINITY.value
    stated = {"nodeConfig": {"machineType": "ct5lp-hightpu-4t", "reservationAffinity": {"consumeReservationType": "NO_RESERVATION"}}}
    assert second_apply.read_back(POOL, stated) == stated
    [*changes] = second_apply.diff_resource(_registration(POOL, unset), second_apply.read_back(POOL, unset))
    assert [(c.op, c.path) for c in changes] == [("replace", "nodeConfig.reservationAffinity.consumeReservationType")]


def test_computed_fields_diff_only_when_the_program_sets_them() -> None:
    token = tokens.CLUSTER
    state = {"monitoringConfig": {"enableComponents": ["SYSTEM_COMPONENTS", "POD"], "managedPrometheus": {"enabled": True}}}
    unset = {"monitoringConfig": {"managedPrometheus": {"enabled": True}}}
    assert second_apply.diff_resource(_registration(token, unset), state) == []
    partial = {"monitoringConfig": {"enableComponents": ["SYSTEM_COMPONENTS"], "managedPrometheus": {"enabled": True}}}
    [change] = second_apply.diff_resource(_registration(token, partial), state)
    assert (change.op, change.path) == ("update", "monitoringConfig.enableComponents")
    renamed = {**unset, "network": "other"}
    [change] = second_apply.diff_resource(_registration(token, renamed), {**state, "network": "net"})
    assert (change.op, change.path) == ("replace", "network")


def test_kubernetes_objects_diff_inputs_not_server_state() -> None:
    token = tokens.DEPLOYMENT
    inputs = {"metadata": {"name": "a"}, "spec": {"selector": {"matchLabels": {"app": "a"}}}}
    state = {**inputs, "status": {"replicas": 1}}
    assert second_apply.diff_resource(_registration(token, inputs), state) == []
    moved = {"metadata": {"name": "a"}, "spec": {"selector": {"matchLabels": {"app": "b"}}}}
    [change] = second_apply.diff_resource(_registration(token, moved), state)
    assert change.replace and change.path == "spec.selector.matchLabels.app"


@pytest.mark.slow
def test_make_plan_fails_on_a_replacement_the_program_does_not_handle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Were GKE to report another reservation affinity than the pools ask for (a ForceNew field),
    the plan must say the second apply replaces the TPU pools, and fail."""
    fields = facts.PROVIDER_FIELDS[POOL]
    filled = facts.ServerFilled("nodeConfig.reservationAffinity", {"consumeReservationType": "ANY_RESERVATION"}, "test")
    patched = dict(facts.PROVIDER_FIELDS)
    patched[POOL] = dataclasses.replace(fields, server_filled=(*fields.server_filled, filled))
    monkeypatch.setattr(facts, "PROVIDER_FIELDS", patched)
    code = offline_plan_cli.main(["--stack", "prod", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert (
        "replace gcp:container/nodePool:NodePool llama-70b: nodeConfig.reservationAffinity.consumeReservationType: "
        "'ANY_RESERVATION' -> 'NO_RESERVATION'"
    ) in out
    assert "second apply: no changes" not in out


def test_urns_carry_the_whole_parent_chain_as_the_engine_makes_them() -> None:
    """`pulumi state unprotect` and the plan-vs-preview comparison need the engine's URNs; the SDK's
    mock keeps only the nearest parent's type."""
    run = shipped_run("prod")
    bucket = next(r for r in run.registrations if r.type == tokens.BUCKET and r.name == "llama-70b")
    assert bucket.urn == (
        "urn:pulumi:prod::tpu-serving::tpu-serving:index:ServedModel$tpu-serving:index:ModelCacheBucket"
        "$gcp:storage/bucket:Bucket::llama-70b"
    )
    network = next(r for r in run.registrations if r.type == tokens.NETWORK)
    assert network.urn == "urn:pulumi:prod::tpu-serving::tpu-serving:index:Cluster$gcp:compute/network:Network::llm-prod"
