"""The NetworkPolicy every namespace of the stack gets (CIS GKE 4.3.2): its own ingress, and one
egress baseline."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi_kubernetes as k8s

METADATA_SERVER = "169.254.169.254/32"

# What a pod of this stack may call: cluster DNS, the GKE metadata server (Workload Identity
# tokens) and HTTPS (Hugging Face, Cloud Storage, Google APIs, the Kubernetes API).
EGRESS_BASELINE: tuple[k8s.networking.v1.NetworkPolicyEgressRuleArgsDict, ...] = (
    {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
    {
        "to": [{"ip_block": {"cidr": METADATA_SERVER}}],
        "ports": [{"port": 80, "protocol": "TCP"}, {"port": 988, "protocol": "TCP"}],
    },
    {"ports": [{"port": 443, "protocol": "TCP"}]},
)


def network_policy(ingress: Sequence[k8s.networking.v1.NetworkPolicyIngressRuleArgsDict]) -> k8s.networking.v1.NetworkPolicySpecArgsDict:
    """Every pod of the namespace: only the given ingress, only the baseline egress."""
    return {
        "pod_selector": {},
        "policy_types": ["Ingress", "Egress"],
        "ingress": list(ingress),
        "egress": list(EGRESS_BASELINE),
    }
