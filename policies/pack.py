"""Every policy of the pack, in the order the pack reports them, and what each one reads."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pulumi_policy import Policy

from components import facts
from policies import identity, tpu, workload
from policies.k8s import POD_KINDS

NAME = "gke-tpu-vllm"
POLICIES: list[Policy] = [*tpu.POLICIES, *workload.POLICIES, *identity.POLICIES]

_TPU_PODS = (*POD_KINDS, facts.COMPUTE_CLASS_KIND)
# The kinds (Kubernetes) and types (Pulumi tokens, for cloud resources) each policy reads: the README's
# table, and what `make check` counts as checked. An object of any other kind is "not checked".
READS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "tpu-pod-topology": _TPU_PODS,
        "tpu-chip-request": _TPU_PODS,
        "tpu-tensor-parallel": _TPU_PODS,
        "model-fits-hbm": _TPU_PODS,
        "tpu-node-pool-shape": (tpu.NODE_POOL,),
        "tpu-node-pool-match": (*POD_KINDS, tpu.CLUSTER, tpu.NODE_POOL),
        "gke-version-for-tpu": (*_TPU_PODS, tpu.CLUSTER, tpu.NODE_POOL),
        "image-tag-pinned": POD_KINDS,
        "vllm-minimum-version": POD_KINDS,
        "hpa-metric-exists": (workload.HPA, *POD_KINDS),
        "compile-cache-scale-out": ("Deployment", workload.HPA),
        "hf-token-plain-env": POD_KINDS,
        "hf-token-as-file": POD_KINDS,
        "public-endpoint-auth": ("Service", *POD_KINDS),
        "bucket-access": (identity.BUCKET,),
        "project-iam-storage-role": ("gcp:*:IAMMember", "gcp:*:IAMBinding"),
        "no-basic-roles": ("gcp:*:*IAMMember", "gcp:*:*IAMBinding"),
        "no-public-principals": ("gcp:*:*IAMMember", "gcp:*:*IAMBinding"),
    }
)
# Kubernetes kinds that some policy reads (cloud resource types have a ":" in them).
KUBERNETES_KINDS_READ = frozenset(kind for kinds in READS.values() for kind in kinds if ":" not in kind)
