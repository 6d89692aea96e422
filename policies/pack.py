"""Every policy of the pack, in the order the pack reports them."""

from __future__ import annotations

from pulumi_policy import Policy

from policies import identity, tpu, workload

NAME = "gke-tpu-vllm"
POLICIES: list[Policy] = [*tpu.POLICIES, *workload.POLICIES, *identity.POLICIES]
