"""Runs the policy pack in policies/ through the analyzer gRPC protocol, without the Pulumi CLI:
for the offline plan (`analyze`, `start_policy_pack`) and for `make check` (`python -m policy_runner`)."""

from policy_runner.config import PolicyConfig, PolicyConfigError, PolicyInfo, load_policy_config, reconcile
from policy_runner.manifests import ManifestError, load_manifests
from policy_runner.report import render
from policy_runner.session import (
    POLICY_PACK,
    PackInfo,
    PolicyPackError,
    PolicyPackSession,
    Report,
    StackResource,
    Violation,
    analyze,
    start_policy_pack,
)

__all__ = [
    "POLICY_PACK",
    "ManifestError",
    "PackInfo",
    "PolicyConfig",
    "PolicyConfigError",
    "PolicyInfo",
    "PolicyPackError",
    "PolicyPackSession",
    "Report",
    "StackResource",
    "Violation",
    "analyze",
    "load_manifests",
    "load_policy_config",
    "reconcile",
    "render",
    "start_policy_pack",
]
