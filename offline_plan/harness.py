"""Runs the real program (`__main__.py` with a stack's config) under the Pulumi SDK's mock
monitor and records every registration the engine would receive: type, name, parent,
provider, inputs, dependencies and property dependencies.

Invokes and values only the cloud could compute (project number, cluster endpoint and CA,
service account emails, load balancer addresses) are answered with strings that start with
PLACEHOLDER, so no output can pass one off as real.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import runpy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

import tool_cli
from components import tokens
from components.errors import StackFileError, register_secret
from offline_plan import sdk
from policy_runner.session import StackResource

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "__main__.py"
PLACEHOLDER = "PLACEHOLDER"
SECRET_MARKER = "[secret: not decrypted offline]"
# A local run may supply a secret's real value as an env var: PLAN_SECRET_<KEY>, e.g. PLAN_SECRET_HFTOKEN.
SECRET_ENV_PREFIX = "PLAN_SECRET_"
# The program's secrets: with no value in the stack file, PLAN_SECRET_<KEY> or a marker stands in
# for hfToken; apiKey is only needed for an external model.
STACK_SECRETS = ("hfToken", "apiKey")
# A stack file is a few hundred values; these bounds refuse an alias bomb or a runaway file quickly.
MAX_STACK_FILE_BYTES = 1 << 20
MAX_YAML_VALUES = 10_000
MAX_YAML_DEPTH = 64
# The YAML types a stack file may hold: what the CLI turns into config strings or JSON.
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}


def placeholder(what: str) -> str:
    return f"{PLACEHOLDER}-{what}"


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    provider: str
    inputs: dict[str, Any]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    protect: bool
    retain_on_delete: bool
    ignore_changes: list[str] = field(default_factory=list)
    id: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    # The URNs this resource declares it was once known by (its own aliases; the engine adds those
    # inherited from its parent's).
    aliases: list[str] = field(default_factory=list)


@dataclass
class ProgramRun:
    stack: str
    project: str
    registrations: list[Registration]
    outputs: dict[str, Any]
    notes: list[str]

    def policy_resources(self) -> list[StackResource]:
        """The registrations as the engine hands them to a policy pack."""
        return [
            StackResource(
                urn=r.urn,
                type=r.type,
                name=r.name,
                properties=r.inputs,
                parent=r.parent or None,
                dependencies=tuple(r.dependencies),
                property_dependencies=r.property_dependencies,
                provider=r.provider or None,
            )
            for r in self.registrations
        ]


class PlanMocks(sdk.Mocks):
    """Answers what a provider would compute, with plainly marked placeholders."""

    def new_resource(self, args: sdk.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        token = args.typ
        if token == tokens.CLUSTER:
            state.setdefault("endpoint", placeholder("cluster-endpoint"))
            state["masterAuth"] = {**state.get("masterAuth", {}), "clusterCaCertificate": placeholder("cluster-ca-certificate")}
        elif token == tokens.SERVICE_ACCOUNT:
            email = f"{args.inputs['accountId']}@{args.inputs.get('project', 'project')}.iam.gserviceaccount.com"
            state.update(email=email, member=f"serviceAccount:{email}")
        elif token == tokens.K8S_SERVICE:
            state["status"] = {"loadBalancer": {"ingress": [{"ip": placeholder("load-balancer-ip")}]}}
        name = args.inputs.get("name") or (args.inputs.get("metadata") or {}).get("name") or args.name
        return (f"{PLACEHOLDER}-id-{name}" if args.custom else None), state

    def call(self, args: sdk.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == tokens.GET_PROJECT:
            project = args.args.get("projectId", "project")
            return {"projectId": project, "number": placeholder("project-number"), "name": project}, []
        return {}, []


class RecordingMonitor(sdk.MockMonitor):
    def __init__(self, plan_mocks: sdk.Mocks) -> None:
        super().__init__(plan_mocks)
        self.registrations: list[Registration] = []

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """The URN as the engine makes it: the parent's whole qualified type chain before the type,
        the stack left out. The SDK's mock keeps the stack and only the nearest parent's type, which
        shortens the URN of anything nested twice (a Bucket in a ModelCacheBucket in a ServedModel)."""
        qualified = parent.split("::")[2] if parent else ""
        if qualified and qualified != tokens.STACK:
            type_ = f"{qualified}${type_}"
        return super().make_urn("", type_, name)

    def _alias_urn(self, request: Any, alias: Any) -> str:
        """An alias as the engine resolves it: a URN, or a spec whose unset parts are the resource's own."""
        if alias.urn:
            return str(alias.urn)
        spec = alias.spec
        parent = "" if spec.noParent else (spec.parentUrn or request.parent)
        return self.make_urn(parent, spec.type or request.type, spec.name or request.name)

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != tokens.STACK:
            registered = self.resources[response.urn]
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    custom=request.custom,
                    parent=request.parent,
                    provider=request.provider,
                    inputs=_plain(sdk.deserialize_properties(request.object)),
                    dependencies=list(request.dependencies),
                    property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                    protect=request.protect,
                    retain_on_delete=request.retainOnDelete,
                    ignore_changes=list(request.ignoreChanges),
                    id=registered.id or "",
                    state=_plain(registered.state),
                    aliases=[self._alias_urn(request, alias) for alias in request.aliases] + list(request.aliasURNs),
                )
            )
        return response


def _is_secret(value: Any) -> bool:
    return sdk.is_secret(value)


def _masked(value: Any) -> Any:
    """A secret's value with its shape kept (a Secret's stringData keeps its keys) and every leaf
    the marker, so the object is still valid Kubernetes and no value is written."""
    if _is_secret(value):
        return _masked(value.get("value"))
    if isinstance(value, Mapping):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return SECRET_MARKER


def _plain(value: Any) -> Any:
    """Deserialized properties as JSON-ready values: secrets masked leaf by leaf (the marker)."""
    if isinstance(value, Mapping):
        if _is_secret(value):
            return _masked(value)
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if sdk.is_unknown(value):
        return placeholder("unknown")
    # The wire format carries every number as a double; Kubernetes rejects 1.0 where it wants an int.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def read_project_name(root: Path) -> str:
    return str(yaml.safe_load((root / "Pulumi.yaml").read_text())["name"])


class StackLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter: load_stack_file checks the composed document first."""


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _check_nodes(path: Path, root: yaml.Node) -> None:
    """Refuses what a stack file cannot mean: a key given twice (YAML would keep the last one
    silently), tags beyond plain scalars, lists and maps (!!python/..., !!binary, timestamps), and
    anchors and aliases that expand past MAX_YAML_VALUES (an alias bomb) or into themselves."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def fail(node: yaml.Node, problem: str) -> StackFileError:
        return StackFileError(path.name, *_mark(node), problem)

    def size(node: yaml.Node, depth: int) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in in_progress:
            raise fail(node, "an alias refers to the node that contains it; write the values out")
        if depth > MAX_YAML_DEPTH:
            raise fail(node, f"nested deeper than {MAX_YAML_DEPTH} levels")
        if node.tag not in _PLAIN_TAGS and node.tag != "tag:yaml.org,2002:merge":
            raise fail(
                node,
                f"YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed: only strings, numbers, booleans, lists and maps",
            )
        in_progress.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if (key.tag, key.value) in seen:
                        line, _ = _mark(seen[(key.tag, key.value)])
                        raise fail(key, f"duplicate key {key.value!r} (first on line {line}); YAML would keep only the last")
                    seen[(key.tag, key.value)] = key
                total += size(key, depth + 1) + size(value, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item, depth + 1) for item in node.value)
        in_progress.discard(id(node))
        if total > MAX_YAML_VALUES:
            raise fail(node, f"anchors and aliases expand to more than {MAX_YAML_VALUES} values here; write the values out")
        sizes[id(node)] = total
        return total

    size(root, 0)


def _load_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """The stack file's document and its composed node tree, or one StackFileError naming file,
    line and column: not UTF-8, a syntax error, a duplicate key, a tag, an alias bomb."""
    data = path.read_bytes()
    if len(data) > MAX_STACK_FILE_BYTES:
        raise StackFileError(path.name, None, None, f"{len(data)} bytes; a stack file is at most {MAX_STACK_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise StackFileError(path.name, line, column, f"not UTF-8 (byte 0x{data[error.start]:02x}); save the file as UTF-8") from None
    loader: StackLoader | None = None
    try:
        loader = StackLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_nodes(path, node)
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = " ".join(p for p in (error.context, error.problem) if p)
        raise StackFileError(path.name, mark.line + 1 if mark else None, mark.column + 1 if mark else None, f"YAML: {problem}") from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        raise StackFileError(path.name, line, column, f"YAML: character U+{error.character:04X} is not allowed in a YAML file") from None
    except yaml.YAMLError as error:
        raise StackFileError(path.name, None, None, f"YAML: {error}") from None
    except RecursionError:
        raise StackFileError(path.name, None, None, f"YAML nested deeper than {MAX_YAML_DEPTH} levels") from None
    finally:
        if loader is not None:
            loader.dispose()


def _config_node(path: Path, document: Any, node: yaml.Node | None) -> tuple[dict[Any, Any], yaml.Node | None]:
    """The `config:` mapping and its node, or one error at the line and column that is wrong."""
    if document is None:
        return {}, None
    if not isinstance(document, Mapping) or not isinstance(node, yaml.MappingNode):
        line, column = _mark(node) if node is not None else (None, None)
        raise StackFileError(path.name, line, column, "the top level must be a mapping with a `config:` mapping in it")
    config_value = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == "config"), None)
    config = document.get("config")
    if config is None:
        return {}, None
    if not isinstance(config, Mapping) or not isinstance(config_value, yaml.MappingNode):
        line, column = _mark(config_value) if config_value is not None else (None, None)
        raise StackFileError(path.name, line, column, "`config:` must be a mapping of key: value lines")
    return dict(config), config_value


def stack_file(stack: str, root: Path = ROOT) -> Path:
    path = tool_cli.stack_file(stack, root)
    if not path.is_file():
        raise FileNotFoundError(f"no stack file {path.name}; stacks here: {', '.join(tool_cli.stack_names(root))}")
    return path


def read_stack_config(stack: str, root: Path = ROOT) -> tuple[str, dict[str, str], list[str], list[str]]:
    """Pulumi.<stack>.yaml as the CLI hands it to the program: a flat map of `ns:key` to string
    (objects as JSON). Encrypted (`secure:`) values cannot be read offline; they become a
    marker unless PLAN_SECRET_<KEY> supplies a value, which also stands in for a secret the file
    lacks. A file that is not a stack's config raises one StackFileError (file:line:column).
    Returns (project, config, secret keys, notes)."""
    project = read_project_name(root)
    path = stack_file(stack, root)
    document, node = _load_yaml(path)
    raw, config_node = _config_node(path, document, node)
    positions = _key_positions(config_node)
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    notes: list[str] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not re.fullmatch(r"([A-Za-z0-9_.-]+:)?[A-Za-z0-9_.-]+", key):
            line, column = positions.get(str(key), (None, None))
            raise StackFileError(path.name, line, column, "a config key is `namespace:name` or `name` of letters, digits, '-', '_', '.'")
        full = key if ":" in key else f"{project}:{key}"
        if full in config:
            line, column = positions.get(key, (None, None))
            raise StackFileError(path.name, line, column, f"{full} is set twice (with and without its namespace)")
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            secret_keys.append(full)
            env = SECRET_ENV_PREFIX + full.split(":", 1)[1].upper()
            if os.environ.get(env):
                config[full] = os.environ[env]
                register_secret(config[full])
                notes.append(f"{full}: secret value taken from ${env}")
            else:
                config[full] = SECRET_MARKER
                notes.append(f"{full}: encrypted in {path.name}; cannot decrypt offline, using a marker (set ${env} to supply it)")
        else:
            config[full] = value if isinstance(value, str) else json.dumps(value)
    for secret in STACK_SECRETS:
        full = f"{project}:{secret}"
        env = SECRET_ENV_PREFIX + secret.upper()
        if full in config:
            continue
        if os.environ.get(env):
            secret_keys.append(full)
            config[full] = os.environ[env]
            register_secret(config[full])
            notes.append(f"{full}: not set in {path.name}; secret value taken from ${env}")
        elif secret == "hfToken":
            secret_keys.append(full)
            config[full] = SECRET_MARKER
            notes.append(
                f"{full}: not set in {path.name}; `pulumi up` needs `pulumi config set --secret {secret}`;"
                f" the plan uses a marker (set ${env} to supply it)"
            )
    return project, config, secret_keys, notes


def _key_positions(config_node: yaml.Node | None) -> dict[str, tuple[int, int]]:
    """Line and column of each top-level config key (as written)."""
    if not isinstance(config_node, yaml.MappingNode):
        return {}
    return {str(k.value): _mark(k) for k, _ in config_node.value if isinstance(k, yaml.ScalarNode)}


def _walk_positions(node: yaml.Node, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], yaml.Node]]:
    yield path, node
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield from _walk_positions(value, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _walk_positions(item, (*path, index))


def config_position(stack: str, key: str, root: Path = ROOT) -> tuple[str, int, int] | None:
    """Where in Pulumi.<stack>.yaml a ConfigError's key (models[0].imageTag, cluster.zones[1],
    gcp:project, hfToken) was written: the value's line and column, or the nearest enclosing
    value's when the key itself is missing. None when the file does not mention it."""
    try:
        project = read_project_name(root)
        path = stack_file(stack, root)
        _, node = _load_yaml(path)
    except (OSError, StackFileError, KeyError, TypeError, yaml.YAMLError):
        return None
    config_node = next(
        (
            v
            for k, v in (node.value if isinstance(node, yaml.MappingNode) else [])
            if isinstance(k, yaml.ScalarNode) and k.value == "config"
        ),
        None,
    )
    if not isinstance(config_node, yaml.MappingNode):
        return None
    head = re.match(r"[^.\[]*", key)
    first = head.group(0) if head else key
    full = first if ":" in first else f"{project}:{first}"
    rest: list[str | int] = [int(i) if i else n for n, i in re.findall(r"\.([^.\[]+)|\[(\d+)\]", key[len(first) :])]
    nodes: dict[tuple[str | int, ...], yaml.Node] = {}
    for name, value in config_node.value:
        if isinstance(name, yaml.ScalarNode) and (name.value if ":" in name.value else f"{project}:{name.value}") == full:
            nodes.update(_walk_positions(value, (full,)))
    wanted: tuple[str | int, ...] = (full, *rest)
    for length in range(len(wanted), 0, -1):
        if wanted[:length] in nodes:
            return (path.name, *_mark(nodes[wanted[:length]]))
    return None


def run_program(
    stack: str,
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    *,
    project: str | None = None,
    program: Path = PROGRAM,
    plan_mocks: sdk.Mocks | None = None,
    monitor: RecordingMonitor | None = None,
    preview: bool = True,
) -> ProgramRun:
    """Runs the program once, as a preview or (preview=False) as an update. Without `config`, the
    stack file's config is used. Raises what the
    program raises (a ConfigError for bad config) after the registrations it made are counted."""
    notes: list[str] = []
    if config is None:
        project, config, secret_keys, notes = read_stack_config(stack, program.parent)
    project = project or read_project_name(program.parent)
    monitor = monitor or RecordingMonitor(plan_mocks or PlanMocks())
    asyncio.set_event_loop(asyncio.new_event_loop())
    root = sdk.start_mocked_run(monitor, config=config, secret_keys=secret_keys or [], project=project, stack=stack, preview=preview)
    outputs: dict[str, Any] = {}

    def program_body() -> None:
        runpy.run_path(str(program), run_name="__main__")

    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(sdk.run_program_body(program_body))
        if root is not None:
            outputs = loop.run_until_complete(_resolve(getattr(root, "outputs", {})))
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    return ProgramRun(stack, project, monitor.registrations, outputs, notes)


async def _resolve(outputs: Mapping[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in outputs.items():
        output = pulumi.Output.from_input(value)
        secret = await output.is_secret()
        resolved[key] = SECRET_MARKER if secret else _plain(await output.future(with_unknowns=True))
    return resolved


__all__ = [
    "PLACEHOLDER",
    "SECRET_MARKER",
    "PlanMocks",
    "ProgramRun",
    "Registration",
    "config_position",
    "read_stack_config",
    "run_program",
    "stack_file",
]
