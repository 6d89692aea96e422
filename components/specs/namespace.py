"""A served model's namespace: its labels, and the reference its objects take to it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import facts
from components.config import ModelConfig


@dataclass(frozen=True)
class ModelNamespace:
    """Where a model's Kubernetes objects live: the name their metadata carries, and the Namespace
    resource they are created after."""

    name: str
    resource: pulumi.Resource


def model_labels(model: ModelConfig, stack: str) -> dict[str, str]:
    """The labels on every Kubernetes object of one served model."""
    return {"app.kubernetes.io/part-of": "tpu-serving", "serving.tpu.dev/model": model.name, "serving.tpu.dev/stack": stack}


def namespace_metadata(model: ModelConfig, stack: str) -> k8s.meta.v1.ObjectMetaArgsDict:
    return {"name": model.namespace, "labels": {**model_labels(model, stack), **facts.POD_SECURITY_LABELS}}


def bucket_labels(model: ModelConfig, stack: str) -> dict[str, str]:
    """Cloud Storage labels of the model's bucket (and its ServiceAccount's Kubernetes labels)."""
    return {"model": model.name, "stack": stack, "managed-by": "pulumi"}
