"""What the tools rely on from the Pulumi SDKs' internals (offline_plan/sdk.py), pinned: the
installed versions, the names, their signatures and what they return. An SDK upgrade that moves
one of them fails here first, naming it, before the offline plan or the policy runner break in
some less legible way. Upgrading: bump the pins in requirements.txt, `make lock`, run this file."""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import inspect
import re
from pathlib import Path

import pytest
from google.protobuf import empty_pb2, struct_pb2

from offline_plan import sdk
from offline_plan.harness import SECRET_MARKER, placeholder, run_program
from policies import pack

ROOT = Path(__file__).resolve().parent.parent
UNKNOWN_WIRE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")


def test_installed_sdks_are_the_pinned_ones() -> None:
    pinned = dict(re.findall(r"^(pulumi[a-z_-]*)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert pinned.keys() == {"pulumi", "pulumi-gcp", "pulumi-kubernetes", "pulumi-policy"}
    assert {name: importlib.metadata.version(name) for name in pinned} == pinned


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_signatures_the_adapter_calls() -> None:
    runtime = sdk.pulumi.runtime
    assert parameters(runtime.rpc.deserialize_properties)[:2] == ["props_struct", "keep_unknowns"]
    assert parameters(runtime.set_all_config) == ["config", "secret_keys"]
    assert {"mocks", "project", "stack", "preview", "monitor"} <= set(parameters(runtime.set_mocks))
    assert parameters(sdk._run_pulumi_func) == ["func"]
    assert parameters(sdk._settings.get_root_resource) == []
    assert hasattr(sdk._settings.ROOT, "set") and hasattr(sdk._settings.ROOT, "get")
    assert parameters(sdk._PolicyAnalyzerServicer.__init__)[:5] == ["self", "name", "version", "policies", "enforcement_level"]
    assert parameters(sdk.MockMonitor.__init__)[:2] == ["self", "mocks"]
    assert all(callable(getattr(sdk.MockMonitor, m)) for m in ("RegisterResource", "make_urn"))
    assert parameters(sdk.Mocks.new_resource) == ["self", "args"] and parameters(sdk.Mocks.call) == ["self", "args"]
    assert parameters(sdk.unknown_checking_proxy)[:1] == ["props"]
    assert (sdk._rpc._special_sig_key, sdk._rpc._special_secret_sig) == SECRET_SIG
    assert sdk.UNKNOWN == UNKNOWN_WIRE


def test_analyzer_protocol_names_the_policy_runner_uses() -> None:
    pb = sdk.analyzer_pb2
    for message in (
        "AnalyzerStackConfigureRequest",
        "ConfigureAnalyzerRequest",
        "PolicyConfig",
        "AnalyzeRequest",
        "AnalyzeStackRequest",
        "AnalyzerResource",
        "AnalyzerPropertyDependencies",
        "AnalyzerProviderResource",
        "AnalyzerResourceOptions",
        "AnalyzerInfo",
        "AnalyzeResponse",
    ):
        assert hasattr(pb, message), message
    assert [pb.EnforcementLevel.Name(pb.EnforcementLevel.Value(n)) for n in ("ADVISORY", "MANDATORY", "REMEDIATE", "DISABLED")] == [
        "ADVISORY",
        "MANDATORY",
        "REMEDIATE",
        "DISABLED",
    ]
    assert pb.PolicySeverity.Name(0) == "POLICY_SEVERITY_UNSPECIFIED"
    assert {"GetAnalyzerInfo", "ConfigureStack", "Configure", "Analyze", "AnalyzeStack"} <= set(dir(sdk.analyzer_pb2_grpc.AnalyzerServicer))


def test_deserialize_keeps_unknowns_and_marks_secrets() -> None:
    struct = struct_pb2.Struct()
    struct.update({"plain": 1.0, "later": UNKNOWN_WIRE, "token": {SECRET_SIG[0]: SECRET_SIG[1], "value": "hf_x"}})
    values = sdk.deserialize_properties(struct)
    assert values["plain"] == 1.0 and type(values["later"]).__name__ == "Unknown" and sdk.is_unknown(values["later"])
    assert sdk.is_unknown(sdk.UNKNOWN) and not sdk.is_unknown(UNKNOWN_WIRE + "x") and not sdk.is_unknown(None)
    assert sdk.is_secret(values["token"]) and values["token"]["value"] == "hf_x"
    assert not sdk.is_secret({"value": "hf_x"}) and not sdk.is_secret("hf_x")


PROGRAM = """
import pulumi

class Thing(pulumi.CustomResource):
    def __init__(self, name, props, opts=None):
        super().__init__("test:index:Thing", name, props, opts)

parent = pulumi.ComponentResource("test:index:Group", "group")
first = Thing("first", {"size": 2, "token": pulumi.Output.secret("hf_x")}, pulumi.ResourceOptions(parent=parent))
Thing("second", {"after": first.id}, pulumi.ResourceOptions(parent=parent, protect=True))
pulumi.export("first", first.id)
pulumi.export("secret", pulumi.Output.secret("s"))
"""


def test_a_mocked_run_records_what_the_engine_would_receive(tmp_path: Path) -> None:
    program = tmp_path / "__main__.py"
    program.write_text(PROGRAM)
    run = run_program("s", {}, [], project="p", program=program)
    assert [(r.type, r.name, r.urn) for r in run.registrations] == [
        ("test:index:Group", "group", "urn:pulumi:s::p::test:index:Group::group"),
        ("test:index:Thing", "first", "urn:pulumi:s::p::test:index:Group$test:index:Thing::first"),
        ("test:index:Thing", "second", "urn:pulumi:s::p::test:index:Group$test:index:Thing::second"),
    ]
    group, first, second = run.registrations
    assert (first.parent, first.custom, group.custom) == (group.urn, True, False)
    assert first.inputs == {"size": 2, "token": SECRET_MARKER}
    assert first.id == f"{placeholder('id')}-first"
    assert second.inputs == {"after": f"{placeholder('id')}-first"} and second.protect
    assert second.dependencies == [first.urn] and second.property_dependencies == {"after": [first.urn]}
    assert run.outputs == {"first": f"{placeholder('id')}-first", "secret": SECRET_MARKER}
    # A second run in the same process starts from a clean SDK state.
    assert [r.name for r in run_program("s", {}, [], project="p", program=program).registrations] == ["group", "first", "second"]


def test_the_in_process_servicer_answers_the_analyzer_calls() -> None:
    servicer = sdk.policy_analyzer_servicer(pack.NAME, "0.1.0", pack.POLICIES, sdk.EnforcementLevel.MANDATORY)
    info = servicer.GetAnalyzerInfo(empty_pb2.Empty(), None)
    assert isinstance(info, sdk.analyzer_pb2.AnalyzerInfo)
    assert info.name == pack.NAME and info.version == "0.1.0"
    assert {p.name for p in info.policies} == {p.name for p in pack.POLICIES}
    request = sdk.analyzer_pb2.AnalyzeRequest(type="kubernetes:core/v1:Namespace", urn="urn:pulumi:s::p::kubernetes:core/v1:Namespace::n")
    assert isinstance(servicer.Analyze(request, None), sdk.analyzer_pb2.AnalyzeResponse)


def test_run_program_body_is_awaitable() -> None:
    ran: list[bool] = []
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(sdk.run_program_body(lambda: ran.append(True)))
    finally:
        loop.close()
    assert ran == [True]


SDK_INTERNALS = re.compile(
    r"\bpulumi\.runtime\.(mocks|rpc|settings|stack|proto)\b|\bpulumi_policy\.(policy|proxy)\b|\._special_|_PolicyAnalyzerServicer"
)
TOOLS = ("offline_plan", "policy_runner", "recommend", "loadtest", "e2e", "tests")


@pytest.mark.parametrize("package", TOOLS)
def test_sdk_internals_are_used_only_through_the_adapter(package: str) -> None:
    here = Path(__file__).resolve()
    for path in sorted((ROOT / package).rglob("*.py")):
        if path in (ROOT / "offline_plan" / "sdk.py", here):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(SDK_INTERNALS.search(n) for n in names), f"{path.relative_to(ROOT)}:{node.lineno}: use offline_plan.sdk"
        code = re.sub(r'""".*?"""', "", path.read_text(), flags=re.S)
        assert not SDK_INTERNALS.search(code), f"{path.relative_to(ROOT)}: use offline_plan.sdk"


def test_register_resource_request_fields_the_recording_monitor_reads() -> None:
    from pulumi.runtime.proto import resource_pb2

    fields = resource_pb2.RegisterResourceRequest.DESCRIPTOR.fields_by_name
    read = ("type", "name", "custom", "parent", "provider", "object", "dependencies", "propertyDependencies", "protect")
    assert set(read) | {"retainOnDelete", "ignoreChanges", "aliases", "aliasURNs"} <= set(fields)
    alias = fields["aliases"].message_type
    assert {"urn", "spec"} <= set(alias.fields_by_name)
    assert {"name", "type", "parentUrn", "noParent"} <= set(alias.fields_by_name["spec"].message_type.fields_by_name)
