"""Autoscaling: one model's HorizontalPodAutoscaler on a vLLM metric from Managed Prometheus."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import facts, tokens
from components.config import ModelConfig

# A replica takes minutes (cold: up to half an hour) to serve: add one at a time, wait to see
# its effect, and give capacity back slowly so a dip in traffic does not throw away a warm slice.
SCALE_UP_WINDOW_SECONDS = 120
SCALE_UP_PERIOD_SECONDS = 300
SCALE_DOWN_WINDOW_SECONDS = 1800
SCALE_DOWN_PERIOD_SECONDS = 600


@dataclass(frozen=True)
class AutoscalingArgs:
    model: ModelConfig
    namespace: str
    # What the HPA scales: the model's Deployment, or its LeaderWorkerSet (whole groups: LWS's scale
    # subresource counts groups, and its hpaPodSelector picks the leaders, which serve the metrics).
    target: pulumi.Resource
    target_name: pulumi.Input[str]
    metrics_adapter: pulumi.Resource
    labels: dict[str, str]
    target_api_version: str = "apps/v1"
    target_kind: str = "Deployment"


class Autoscaling(pulumi.ComponentResource):
    def __init__(self, name: str, args: AutoscalingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(tokens.AUTOSCALING, name, None, opts)
        model = args.model
        metric = facts.gmp_pod_metric(model.metric_name)
        target: k8s.autoscaling.v2.CrossVersionObjectReferenceArgsDict = {
            "api_version": args.target_api_version,
            "kind": args.target_kind,
            "name": args.target_name,
        }
        hpa = k8s.autoscaling.v2.HorizontalPodAutoscaler(
            name,
            metadata={"name": "vllm", "namespace": args.namespace, "labels": args.labels},
            spec={
                "scale_target_ref": target,
                "min_replicas": model.min_replicas,
                "max_replicas": model.max_replicas,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {"metric": {"name": metric}, "target": {"type": "AverageValue", "average_value": f"{model.target:g}"}},
                    }
                ],
                "behavior": {
                    "scale_up": {
                        "stabilization_window_seconds": SCALE_UP_WINDOW_SECONDS,
                        "select_policy": "Min",
                        "policies": [{"type": "Pods", "value": 1, "period_seconds": SCALE_UP_PERIOD_SECONDS}],
                    },
                    "scale_down": {
                        "stabilization_window_seconds": SCALE_DOWN_WINDOW_SECONDS,
                        "select_policy": "Min",
                        "policies": [{"type": "Pods", "value": 1, "period_seconds": SCALE_DOWN_PERIOD_SECONDS}],
                    },
                },
            },
            # The compile-cache guard: no second replica can exist before the first is Ready
            # (pulumi waits for the Deployment, or the LeaderWorkerSet's Available condition), by which
            # time it has written the cache.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.target, args.metrics_adapter]),
        )
        self.register_outputs({"hpa": hpa.metadata.apply(lambda m: m["name"]), "metric": metric})
