"""Every use of a Pulumi SDK internal by the developer tools, in one place.

The offline plan runs the program under the SDK's mock monitor and reads what it registers; the
policy runner speaks the analyzer protocol to the pack; the tests drive the pack's servicer in
process. None of that is public API: the names below are private or undocumented (`settings.ROOT`,
`rpc._special_sig_key`, `run_pulumi_func`, the generated analyzer protos, pulumi_policy's
`_PolicyAnalyzerServicer`). requirements.txt pins the SDKs exactly, and tests/test_sdk_contract.py
pins what is used here (names, signatures, results), so an SDK upgrade fails there first, with the
name that moved. Nothing else in the tools imports pulumi.runtime internals or pulumi_policy's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pulumi
from pulumi.runtime import mocks as _mocks
from pulumi.runtime import rpc as _rpc
from pulumi.runtime import settings as _settings
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi.runtime.stack import run_pulumi_func as _run_pulumi_func
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer
from pulumi_policy.proxy import unknown_checking_proxy

# Public in pulumi.runtime, re-exported so the tools have one import site.
Mocks = pulumi.runtime.Mocks
MockResourceArgs = pulumi.runtime.MockResourceArgs
MockCallArgs = pulumi.runtime.MockCallArgs
# The mock engine's monitor: RegisterResource(request) records `resources[urn]` (id, state) and
# returns a response with `urn`; `mocks` is the Mocks it was made with; make_urn builds URNs.
MockMonitor = _mocks.MockMonitor
# The value a property has when only the cloud can compute it (deserialized with keep_unknowns).
UNKNOWN = _rpc.UNKNOWN


def deserialize_properties(struct: Any) -> Any:
    """A RegisterResource request's `object` (a protobuf Struct) as Python values, unknowns kept
    as UNKNOWN and secrets as the wire's signature mappings (see is_secret)."""
    return _rpc.deserialize_properties(struct, keep_unknowns=True)


def is_secret(value: Any) -> bool:
    """A deserialized value the program marked secret: a mapping with the secret signature."""
    return isinstance(value, Mapping) and value.get(_rpc._special_sig_key) == _rpc._special_secret_sig


def is_unknown(value: Any) -> bool:
    """A value only the cloud can compute: UNKNOWN itself, or the SDK's Unknown object that
    deserialize_properties(keep_unknowns) gives for it."""
    return value is UNKNOWN or value.__class__.__name__ == "Unknown"


def start_mocked_run(
    monitor: Any, *, config: Mapping[str, str], secret_keys: Sequence[str], project: str, stack: str, preview: bool
) -> Any:
    """Readies the SDK for one program run against `monitor` (a MockMonitor): forgets the previous
    run's root stack resource, sets config and mocks. Returns the new root resource (or None)."""
    _settings.ROOT.set(None)
    pulumi.runtime.set_all_config(dict(config), list(secret_keys))
    pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    return _settings.get_root_resource()


def run_program_body(body: Callable[[], None]) -> Awaitable[Any]:
    """What the SDK's stack runner does around a program: run `body`, then wait for every
    registration and output it started. Await it in the run's event loop."""
    return _run_pulumi_func(body)


def policy_analyzer_servicer(name: str, version: str, policies: Any, level: EnforcementLevel) -> Any:
    """pulumi_policy's analyzer servicer for a pack, in process: methods GetAnalyzerInfo,
    ConfigureStack, Configure, Analyze, AnalyzeStack, each `(request, context)`."""
    return _PolicyAnalyzerServicer(name, version, policies, level)


__all__ = [
    "UNKNOWN",
    "EnforcementLevel",
    "MockCallArgs",
    "MockMonitor",
    "MockResourceArgs",
    "Mocks",
    "analyzer_pb2",
    "analyzer_pb2_grpc",
    "deserialize_properties",
    "is_secret",
    "is_unknown",
    "policy_analyzer_servicer",
    "run_program_body",
    "start_mocked_run",
    "unknown_checking_proxy",
]
