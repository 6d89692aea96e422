"""Driving the policy pack through the analyzer protocol, as `pulumi preview --policy-pack` does.

The engine starts `python -u -m pulumi.policy <engine-address> .` in the pack's directory, reads
the port the pack prints, then calls ConfigureStack, GetAnalyzerInfo and Configure (with the
config it resolved), Analyze once per resource and AnalyzeStack once. `start_policy_pack` does
the same over gRPC with the Python running this code; `PolicyPackSession` speaks the protocol to
anything with the analyzer stub's methods.
"""

from __future__ import annotations

import collections
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import grpc
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2

from offline_plan.sdk import analyzer_pb2, analyzer_pb2_grpc
from policy_runner.config import PolicyConfig, PolicyInfo, load_policy_config, reconcile

POLICY_PACK = Path(__file__).resolve().parent.parent / "policies"
START_TIMEOUT_SECONDS = 60.0
RPC_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 5.0
# The pack never calls the engine back; the address is only a required argument of pulumi.policy.
NO_ENGINE = "127.0.0.1:0"
_MAX_MESSAGE = 400 * 1024 * 1024  # what the SDK's own server accepts
_LEVEL = {level: analyzer_pb2.EnforcementLevel.Value(level.upper()) for level in ("advisory", "mandatory", "remediate", "disabled")}


class PolicyPackError(Exception):
    """The pack could not be started or did not answer."""


@dataclass(frozen=True)
class StackResource:
    """One resource as the engine describes it to an analyzer. `properties` are the resource's
    inputs with camelCase keys; a value unknown during preview is pulumi.runtime.rpc.UNKNOWN.
    `provider` is a provider reference (`<provider urn>::<id>`) or a provider URN."""

    urn: str
    type: str
    name: str
    properties: Mapping[str, Any] = field(default_factory=dict)
    parent: str | None = None
    dependencies: Sequence[str] = ()
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)
    provider: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> StackResource:
        """From the same fields in a JSON or YAML dump, camelCase like the protocol."""
        return cls(
            urn=raw["urn"],
            type=raw["type"],
            name=raw["name"],
            properties=raw.get("properties") or {},
            parent=raw.get("parent"),
            dependencies=tuple(raw.get("dependencies") or ()),
            property_dependencies=raw.get("propertyDependencies") or {},
            provider=raw.get("provider"),
        )


@dataclass(frozen=True)
class PackInfo:
    name: str
    version: str


@dataclass(frozen=True)
class Violation:
    policy_pack: str
    policy_pack_version: str
    policy_name: str
    description: str
    enforcement_level: str  # "advisory" or "mandatory" (the SDK reports a remediate policy's violations as mandatory)
    severity: str  # "low" ... "critical", or "" when the policy has none
    message: str  # as the engine shows it: the description, then what is wrong and how to fix it
    urn: str  # the resource's; "" for a violation of the stack as a whole

    @property
    def detail(self) -> str:
        """The message without the description the SDK puts in front of it."""
        return self.message.removeprefix(self.description).lstrip("\n")


@dataclass(frozen=True)
class Report:
    pack: PackInfo
    project: str
    stack: str
    violations: tuple[Violation, ...]

    @property
    def mandatory(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.enforcement_level == "mandatory")

    @property
    def exit_code(self) -> int:
        """Non-zero exactly when `pulumi preview` would fail: a mandatory violation."""
        return 1 if self.mandatory else 0


class AnalyzerStub(Protocol):
    """The calls of analyzer_pb2_grpc.AnalyzerStub that the engine makes."""

    def GetAnalyzerInfo(self, request: empty_pb2.Empty, timeout: float | None = None) -> analyzer_pb2.AnalyzerInfo: ...
    def ConfigureStack(
        self, request: analyzer_pb2.AnalyzerStackConfigureRequest, timeout: float | None = None
    ) -> analyzer_pb2.AnalyzerStackConfigureResponse: ...
    def Configure(self, request: analyzer_pb2.ConfigureAnalyzerRequest, timeout: float | None = None) -> empty_pb2.Empty: ...
    def Analyze(self, request: analyzer_pb2.AnalyzeRequest, timeout: float | None = None) -> analyzer_pb2.AnalyzeResponse: ...
    def AnalyzeStack(self, request: analyzer_pb2.AnalyzeStackRequest, timeout: float | None = None) -> analyzer_pb2.AnalyzeResponse: ...


def _struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    def jsonable(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): jsonable(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [jsonable(v) for v in value]
        return value

    message = struct_pb2.Struct()
    message.update(jsonable(values))
    return message


def _provider(reference: str | None) -> analyzer_pb2.AnalyzerProviderResource | None:
    if reference is None:
        return None
    urn = reference if reference.count("::") == 3 else reference.rsplit("::", 1)[0]
    qualified, name = urn.split("::", 3)[2:]
    return analyzer_pb2.AnalyzerProviderResource(type=qualified.rsplit("$", 1)[-1], urn=urn, name=name, properties=struct_pb2.Struct())


def _described(resource: StackResource) -> dict[str, Any]:
    """The fields that Analyze's request and AnalyzeStack's resources share."""
    return {
        "type": resource.type,
        "properties": _struct(resource.properties),
        "urn": resource.urn,
        "name": resource.name,
        "options": analyzer_pb2.AnalyzerResourceOptions(parent=resource.parent or ""),
        "provider": _provider(resource.provider),
    }


def _pack_version(policy_pack: Path) -> str:
    """The version in PulumiPolicy.yaml, which the CLI shows instead of the SDK's."""
    project = yaml.safe_load((policy_pack / "PulumiPolicy.yaml").read_text(encoding="utf-8")) or {}
    return str(project.get("version") or "")


class PolicyPackSession:
    def __init__(
        self,
        stub: AnalyzerStub,
        *,
        project: str,
        stack: str,
        pack_version: str = "",
        organization: str = "organization",
        dry_run: bool = True,
        rpc_timeout: float = RPC_TIMEOUT_SECONDS,
    ) -> None:
        self._stub, self._timeout, self.project, self.stack = stub, rpc_timeout, project, stack
        stub.ConfigureStack(
            analyzer_pb2.AnalyzerStackConfigureRequest(project=project, stack=stack, organization=organization, dry_run=dry_run),
            timeout=rpc_timeout,
        )
        info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=rpc_timeout)
        self.pack = PackInfo(info.name, pack_version or info.version)
        self.policies = tuple(
            PolicyInfo(
                p.name,
                p.description,
                analyzer_pb2.EnforcementLevel.Name(p.enforcementLevel).lower(),
                {"properties": json_format.MessageToDict(p.configSchema.properties), "required": list(p.configSchema.required)},
            )
            for p in info.policies
        )
        self.configure(None)

    def configure(self, policy_config: Path | str | Mapping[str, Any] | None) -> dict[str, PolicyConfig]:
        """Resolve the config (a --policy-pack-config file, a mapping, or None for the pack's
        defaults) like the CLI, hand it to the pack, and return it."""
        resolved = reconcile(self.policies, load_policy_config(policy_config))
        request = analyzer_pb2.ConfigureAnalyzerRequest(
            policyConfig={
                name: analyzer_pb2.PolicyConfig(enforcementLevel=_LEVEL[c.enforcement_level], properties=_struct(c.properties))
                for name, c in resolved.items()
            }
        )
        self._stub.Configure(request, timeout=self._timeout)
        return resolved

    def analyze(self, resources: Sequence[StackResource]) -> Report:
        violations: list[Violation] = []
        for r in resources:
            response = self._stub.Analyze(analyzer_pb2.AnalyzeRequest(**_described(r)), timeout=self._timeout)
            violations += self._violations(response, r.urn)
        stack = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    **_described(r),
                    parent=r.parent or "",
                    dependencies=list(r.dependencies),
                    propertyDependencies={
                        k: analyzer_pb2.AnalyzerPropertyDependencies(urns=list(v)) for k, v in r.property_dependencies.items() if v
                    },
                )
                for r in resources
            ]
        )
        violations += self._violations(self._stub.AnalyzeStack(stack, timeout=self._timeout), "")
        return Report(self.pack, self.project, self.stack, tuple(violations))

    def _violations(self, response: analyzer_pb2.AnalyzeResponse, urn: str) -> list[Violation]:
        return [
            Violation(
                policy_pack=d.policyPackName,
                policy_pack_version=self.pack.version or d.policyPackVersion,
                policy_name=d.policyName,
                description=d.description,
                enforcement_level=analyzer_pb2.EnforcementLevel.Name(d.enforcementLevel).lower(),
                severity=analyzer_pb2.PolicySeverity.Name(d.severity).removeprefix("POLICY_SEVERITY_").lower().replace("unspecified", ""),
                message=d.message,
                # Analyze reports against the resource it was given; the engine fills the URN in.
                urn=d.urn or urn,
            )
            for d in response.diagnostics
        ]


# The pack asks Linux to kill it when the thread that started it dies without stopping it (start and
# use a pack from one long-lived thread), then runs as `python -m pulumi.policy` would. Asking from
# the child's own interpreter keeps Popen on vfork: a preexec_fn makes it fork, and gRPC's fork
# handlers then restart a poller that aborts the child before it execs (grpc/grpc#43055).
_DIE_WITH_PARENT = (
    "import ctypes, os, runpy, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv.pop(1)):  # the parent died before the request\n"
    "    sys.exit(1)\n"
    "runpy.run_module('pulumi.policy', run_name='__main__', alter_sys=True)\n"
)


def _pack_command() -> list[str]:
    if sys.platform == "linux":
        return [sys.executable, "-u", "-c", _DIE_WITH_PARENT, str(os.getpid()), NO_ENGINE, "."]
    return [sys.executable, "-u", "-m", "pulumi.policy", NO_ENGINE, "."]


class PolicyPackProcess:
    """The pack's analyzer as a child process, started like the engine starts it and always stopped."""

    def __init__(self, policy_pack: Path, env: Mapping[str, str], start_timeout: float) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str | None] = collections.deque(maxlen=40)
        self._process = subprocess.Popen(
            _pack_command(),
            cwd=policy_pack,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        readers = [
            threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
            for stream, sink in ((self._process.stdout, self._lines.put), (self._process.stderr, self._stderr.append))
        ]
        for reader in readers:
            reader.start()
        self._stderr_reader = readers[1]
        try:
            self.port = self._read_port(start_timeout)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _drain(stream: IO[str], sink: Any) -> None:
        """Keeps reading so that a chatty pack never blocks on a full pipe; None marks the end."""
        for line in stream:
            sink(line.rstrip("\n"))
        sink(None)

    def _read_port(self, timeout: float) -> int:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise PolicyPackError(f"the policy pack printed no port within {timeout:g} s{self.stderr_tail()}") from None
        if line is None:
            self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
            # stdout can close before the last of stderr is read: the error is in that last part.
            self._stderr_reader.join(timeout=STOP_TIMEOUT_SECONDS)
            raise PolicyPackError(f"the policy pack exited with {self._process.returncode} before serving{self.stderr_tail()}")
        if not line.strip().isdigit():
            raise PolicyPackError(f"the policy pack printed {line!r} where its port belongs (a policy module prints at import?)")
        return int(line)

    def stderr_tail(self) -> str:
        lines = [line for line in self._stderr if line]
        return ":\n" + "\n".join(lines) if lines else ""

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


@contextmanager
def start_policy_pack(
    policy_pack: Path = POLICY_PACK,
    *,
    project: str,
    stack: str,
    organization: str = "organization",
    dry_run: bool = True,
    start_timeout: float = START_TIMEOUT_SECONDS,
    rpc_timeout: float = RPC_TIMEOUT_SECONDS,
) -> Iterator[PolicyPackSession]:
    """A session with the pack running as a subprocess; the process is stopped when the block ends."""
    env = {"PULUMI_PROJECT": project, "PULUMI_STACK": stack, "PULUMI_ORGANIZATION": organization, "PULUMI_DRY_RUN": str(dry_run).lower()}
    process = PolicyPackProcess(policy_pack, env, start_timeout)
    limits = [("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.max_send_message_length", _MAX_MESSAGE)]
    channel = grpc.insecure_channel(f"127.0.0.1:{process.port}", options=limits)
    try:
        grpc.channel_ready_future(channel).result(timeout=start_timeout)
        yield PolicyPackSession(
            analyzer_pb2_grpc.AnalyzerStub(channel),
            project=project,
            stack=stack,
            pack_version=_pack_version(policy_pack),
            organization=organization,
            dry_run=dry_run,
            rpc_timeout=rpc_timeout,
        )
    except grpc.FutureTimeoutError:
        raise PolicyPackError(f"the policy pack on port {process.port} did not accept a connection within {start_timeout:g} s") from None
    except grpc.RpcError as err:
        details = f"{err.code().name}: {err.details()}" if isinstance(err, grpc.Call) else str(err)
        raise PolicyPackError(f"the policy pack failed a call ({details}){process.stderr_tail()}") from None
    finally:
        channel.close()
        process.stop()


def analyze(
    resources: Sequence[StackResource],
    policy_config: Path | str | Mapping[str, Any] | None = None,
    *,
    project: str,
    stack: str,
    policy_pack: Path = POLICY_PACK,
) -> Report:
    """Run the pack once over a stack's resources with a policy config, as a preview would."""
    with start_policy_pack(policy_pack, project=project, stack=stack) as session:
        session.configure(policy_config)
        return session.analyze(resources)
