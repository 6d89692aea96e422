"""TpuNodePool: the node pool of one model's TPU slices (GKE Standard), and the placement that
the model's pods use, so the server and its pool cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components import facts, tokens
from components.cluster import NODE_MANAGEMENT, node_hardening
from components.config import ModelConfig

MODEL_LABEL = "serving.tpu.dev/model"
# A rollout starts one new replica before it stops an old one (see VllmServer): one spare slice.
ROLLOUT_SURGE_NODES = 1


@dataclass(frozen=True)
class SlicePlacement:
    """Where a model's pod runs and what it must request: the TPU node selectors, the chips
    (all of the node's), the capacity selectors Autopilot reads, and the zones it may use."""

    node_selector: dict[str, str]
    chips_per_node: int
    tolerations: list[k8s.core.v1.TolerationArgsDict]
    affinity: k8s.core.v1.AffinityArgsDict


def slice_placement(model: ModelConfig, autopilot: bool) -> SlicePlacement:
    selector = {
        facts.ACCELERATOR_LABEL: model.generation.accelerator,
        facts.TOPOLOGY_LABEL: model.slice.topology,
    }
    if autopilot:
        # Autopilot provisions nodes from these selectors; Standard pools carry the labels instead.
        selector.update(
            {
                "spot": {"cloud.google.com/gke-spot": "true"},
                "flex-start": {"cloud.google.com/gke-flex-start": "true"},
                "reservation": {
                    "cloud.google.com/reservation-name": model.reservation or "",
                    "cloud.google.com/reservation-affinity": "specific",
                },
            }.get(model.capacity, {})
        )
    else:
        selector[MODEL_LABEL] = model.name
    # GKE adds this toleration itself to pods that request google.com/tpu; stating it keeps the
    # pod schedulable if that admission behaviour ever changes.
    toleration: k8s.core.v1.TolerationArgsDict = {"key": facts.TPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    # A Standard pool already sits in these zones; Autopilot would otherwise use any zone of the region.
    zones: k8s.core.v1.AffinityArgsDict = {
        "node_affinity": {
            "required_during_scheduling_ignored_during_execution": {
                "node_selector_terms": [
                    {"match_expressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": list(model.zones)}]}
                ]
            }
        }
    }
    return SlicePlacement(selector, model.slice.chips_per_vm, [toleration], zones)


@dataclass(frozen=True)
class TpuNodePoolArgs:
    project: str
    region: str
    cluster_name: pulumi.Input[str]
    service_account: pulumi.Input[str]
    model: ModelConfig


class TpuNodePool(pulumi.ComponentResource):
    placement: SlicePlacement
    pool_name: pulumi.Output[str]
    # One pool (single-host: autoscaled in nodes), or one per slice (multi-host: maxReplicas pools).
    pools: list[gcp.container.NodePool]

    def __init__(self, name: str, args: TpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(tokens.TPU_NODE_POOL, name, None, opts)
        model = args.model
        self.placement = slice_placement(model, autopilot=False)
        node_config: gcp.container.NodePoolNodeConfigArgsDict = {
            **node_hardening(args.service_account),
            "machine_type": model.slice.machine_type,
            "labels": {MODEL_LABEL: model.name},
            "spot": model.capacity == "spot" or None,
            "flex_start": model.capacity == "flex-start" or None,
            "reservation_affinity": _reservation_affinity(model),
        }
        # GKE reports threads_per_core=1 on TPU VMs whether or not it was asked for, and the field
        # is ForceNew: without this the second `up` replaces the pool (facts.PROVIDER_FIELDS).
        kept = pulumi.ResourceOptions(parent=self, ignore_changes=["initialNodeCount", "nodeConfig.advancedMachineFeatures"])
        # Multi-host: one pool per slice, maxReplicas of them, as a LeaderWorkerSet group owns one pool
        # whole (facts.LWS_EXCLUSIVE_TOPOLOGY_ANNOTATION). Single-host: one pool, auto-named (name +
        # random suffix), so a new slice shape is a create-before-delete replacement.
        shapes = (
            [(f"{name}-slice-{index}", multi_host_pool_settings(model, index)) for index in range(model.max_replicas)]
            if model.multi_host
            else [(name, single_host_pool_settings(model))]
        )
        self.pools = [
            gcp.container.NodePool(
                pool_name,
                project=args.project,
                location=args.region,
                cluster=args.cluster_name,
                node_config=node_config,
                management=NODE_MANAGEMENT,
                opts=kept,
                **settings,
            )
            for pool_name, settings in shapes
        ]
        self.pool_name = self.pools[0].name
        self.register_outputs({"poolName": self.pool_name, "nodeSelector": self.placement.node_selector})


def single_host_pool_settings(model: ModelConfig) -> dict[str, Any]:
    """The pool of a single-host model, autoscaled in nodes (one slice each) up to one spare slice
    for a rollout's surge pod. Flex-start capacity is granted on demand, so such a pool rests at zero."""
    keep = 0 if model.capacity == "flex-start" else model.min_replicas
    return {
        "node_locations": list(model.zones),
        "placement_policy": tpu_placement_policy(model.slice),
        "initial_node_count": keep,
        "autoscaling": {
            "total_min_node_count": keep,
            "total_max_node_count": model.max_replicas + ROLLOUT_SURGE_NODES,
            "location_policy": "ANY",
        },
    }


def multi_host_pool_settings(model: ModelConfig, index: int) -> dict[str, Any]:
    """The pool of a model's slice number `index`: COMPACT with the topology, in the model's one zone,
    sized in whole slices per zone (0 or the slice's hosts; facts.MULTI_HOST_ZERO_MAX_REFUSED). The first
    minReplicas pools keep their slice; the others rest at zero until the HPA adds a group."""
    hosts = model.slice.vms
    kept = model.capacity != "flex-start" and index < model.min_replicas
    return {
        "node_locations": list(model.zones),
        "placement_policy": tpu_placement_policy(model.slice),
        "initial_node_count": hosts if kept else 0,
        "autoscaling": {
            "min_node_count": hosts if kept else 0,
            "max_node_count": hosts,
            "location_policy": facts.MULTI_HOST_LOCATION_POLICY,
        },
    }


def tpu_placement_policy(tpu_slice: facts.Slice) -> gcp.container.NodePoolPlacementPolicyArgsDict | None:
    """COMPACT placement with the slice's topology for a multi-host slice; nothing for a single-host
    one, whose topology follows from its machine type and which GKE refuses to take one for."""
    if not tpu_slice.multi_host:
        return None  # facts.SINGLE_HOST_TOPOLOGY_REFUSED
    return {"type": "COMPACT", "tpu_topology": tpu_slice.topology}


def _reservation_affinity(model: ModelConfig) -> gcp.container.NodePoolNodeConfigReservationAffinityArgsDict:
    if model.reservation is not None:
        return {
            "consume_reservation_type": "SPECIFIC_RESERVATION",
            "key": "compute.googleapis.com/reservation-name",
            "values": [model.reservation],
        }
    # Stated, never left to GKE's default: the block is ForceNew and not computed, so a value GKE
    # reports for an unset one would replace the pool (facts.TPU_RESERVATION_AFFINITY). Flex-start
    # and Spot capacity cannot draw from reservations anyway.
    return {"consume_reservation_type": "NO_RESERVATION"}
