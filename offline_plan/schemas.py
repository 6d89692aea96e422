"""Validates Kubernetes manifests before any cluster sees them: built-in kinds against the
OpenAPI schema of the cluster's Kubernetes version (kubernetes-validate, strict: an unknown
field is an error, as with `kubectl apply --validate=strict`), custom resources against the
JSON schemas under `offline_plan/schemas/`, named `<kind>-<group>-<version>.json`. A custom
resource that embeds built-in objects (a LeaderWorkerSet's leader and worker pod templates) refers
to them in the same strict Kubernetes definitions kubernetes-validate uses, so a misspelt field in
an embedded pod template fails as it would in a Deployment; the problem says so in its `schema`.

Values the plan cannot know (a secret's marker, a PLACEHOLDER- string for what the cloud
computes) are stood in for by a value of the type the schema asks for, so an undecrypted secret
does not fail its manifest; everything else about the object is still checked.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jsonschema
import kubernetes_validate
import referencing
from kubernetes_validate import utils as kv_utils

from components import tokens
from offline_plan.harness import PLACEHOLDER, SECRET_MARKER, Registration

# kubernetes-validate re-reads and re-parses its 1.4 MB definitions file for every object it
# checks; the files are package data that cannot change during a run, so read each one once.
kv_utils.schema_contents = functools.cache(kv_utils.schema_contents)

# The oldest minor GKE's STABLE and REGULAR channels run at the time of writing (no shipped stack
# pins a version: pins age out of the channels); a stack's own `cluster.version` overrides it
# through `k8s_version_of`.
DEFAULT_K8S_VERSION = "1.33"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
Severity = Literal["error", "warning"]
# Stand-ins for unknown values, by the JSON type the schema expects there.
_STAND_INS: Mapping[str, Any] = {"object": {}, "array": [], "string": "", "integer": 0, "number": 0, "boolean": False}
MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class SchemaProblem:
    api_version: str
    kind: str
    # namespace/name, or name for cluster-scoped objects
    name: str
    # Where in the manifest, e.g. spec.template.spec.containers[0].ports[0].containerPort
    path: str
    message: str
    # What it was checked against: "kubernetes 1.33 (strict)" or a file under offline_plan/schemas
    schema: str
    severity: Severity = "error"

    def describe(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{self.severity}: {self.kind} {self.name}{where}: {self.message} [{self.schema}]"


def supported_versions() -> tuple[str, ...]:
    """The Kubernetes minor versions whose schemas kubernetes-validate ships."""
    minors = {kv_utils.major_minor(v) for v in kv_utils.all_versions()}
    return tuple(sorted(minors, key=_minor_key))


def _minor_key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def k8s_version_of(cluster_version: str | None) -> str:
    """The Kubernetes minor of a GKE version such as 1.33.5-gke.1080000; the default without one."""
    if not cluster_version:
        return DEFAULT_K8S_VERSION
    match = re.match(r"^v?(\d+)\.(\d+)", cluster_version)
    if match is None:
        raise ValueError(f"not a Kubernetes or GKE version: {cluster_version!r}")
    return f"{match.group(1)}.{match.group(2)}"


def _checked_version(k8s_version: str) -> str:
    version = k8s_version_of(k8s_version)
    supported = supported_versions()
    if version not in supported:
        raise ValueError(
            f"kubernetes-validate {kubernetes_validate.__version__} has schemas for {supported[0]} to {supported[-1]}, not {version}"
        )
    return version


def custom_schema_path(api_version: str, kind: str) -> Path:
    group, _, version = api_version.rpartition("/")
    return SCHEMA_DIR / f"{kind.lower()}-{group or 'core'}-{version}.json"


def _is_builtin(api_version: str) -> bool:
    """Built-in groups are the core group and *.k8s.io (apps, rbac.authorization.k8s.io, ...);
    a CRD's group is a domain its author owns."""
    group = api_version.rpartition("/")[0]
    return not group or "." not in group or group.endswith(".k8s.io")


@functools.cache
def _definitions(version: str) -> referencing.Resource[Any]:
    """The version's shared definitions (ObjectMeta, ...), loaded once for every custom schema."""
    full = next(v for v in kv_utils.all_versions() if kv_utils.major_minor(v) == version)
    contents = kv_utils.schema_contents(f"kubernetes-json-schema/v{full}-local-strict/_definitions.json", version)
    return referencing.Resource.from_contents(contents)


@functools.cache
def _definition_ids(version: str) -> frozenset[int]:
    """The identities of every schema inside the version's shared definitions: an error whose
    schema is one of them was found in an embedded built-in object (a pod template)."""
    found: set[int] = set()
    stack: list[Any] = [_definitions(version).contents]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            found.add(id(value))
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return frozenset(found)


@functools.cache
def _custom_validator(schema_file: Path, version: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    registry: referencing.Registry[Any] = _definitions(version) @ referencing.Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _is_unknown(value: Any) -> bool:
    return isinstance(value, str) and (value == SECRET_MARKER or value.startswith(PLACEHOLDER))


def _stand_in(error: jsonschema.ValidationError) -> tuple[bool, Any]:
    """A value that satisfies what `error` asked of an unknown value, if one can be named."""
    if error.validator == "type":
        wanted = [error.validator_value] if isinstance(error.validator_value, str) else list(error.validator_value)
        for name in wanted:
            if name in _STAND_INS:
                return True, copy.deepcopy(_STAND_INS[name])
    if error.validator == "enum" and error.validator_value:
        return True, error.validator_value[0]
    return False, None


def _replace(document: Any, path: Sequence[str | int], value: Any) -> None:
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


def _path(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: jsonschema.ValidationError) -> str:
    message = error.message
    # A "not" rule's own text ("{...} should not be valid under {...}") says nothing: its description does.
    if (
        error.validator == "not"
        and isinstance(error.validator_value, Mapping)
        and isinstance(error.validator_value.get("description"), str)
    ):
        message = f"{error.validator_value['description']} (got {error.instance!r})"
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 1] + "…"


def _check(
    document: Any, errors_of: Callable[[Any], list[jsonschema.ValidationError]]
) -> tuple[list[jsonschema.ValidationError], list[jsonschema.ValidationError]]:
    """(errors, unknown values that could not be checked), after standing in for every unknown
    value the schema rejects. Each round replaces at least one unknown value, so it ends."""
    while True:
        errors = errors_of(document)
        unknown = [e for e in errors if _is_unknown(e.instance) and e.absolute_path]
        stand_ins = [(e, _stand_in(e)) for e in unknown]
        if not any(ok for _, (ok, _) in stand_ins):
            return [e for e in errors if e not in unknown], unknown
        for error, (ok, value) in stand_ins:
            if ok:
                _replace(document, list(error.absolute_path), value)


def _builtin_errors(version: str) -> Callable[[Any], list[jsonschema.ValidationError]]:
    def errors_of(document: Any) -> list[jsonschema.ValidationError]:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            return [error]
        return []

    return errors_of


def _custom_errors(validator: jsonschema.protocols.Validator) -> Callable[[Any], list[jsonschema.ValidationError]]:
    def errors_of(document: Any) -> list[jsonschema.ValidationError]:
        return sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])

    return errors_of


def _source_of(error: jsonschema.ValidationError, source: str, version: str) -> str:
    """What found the error: the custom resource's schema, or the Kubernetes definitions it embeds."""
    if source.startswith("kubernetes ") or id(error.schema) not in _definition_ids(version):
        return source
    return f"kubernetes {version} (strict) via {source}"


def validate_manifest(obj: Mapping[str, Any], k8s_version: str = DEFAULT_K8S_VERSION) -> list[SchemaProblem]:
    """Problems of one manifest; an empty list when it validates. Raises ValueError for a
    Kubernetes version kubernetes-validate has no schemas for."""
    version = _checked_version(k8s_version)
    api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        metadata = {}
    name = "/".join(str(metadata[k]) for k in ("namespace", "name") if metadata.get(k)) or "(unnamed)"

    def problem(path: str, message: str, schema: str, severity: Severity = "error") -> SchemaProblem:
        return SchemaProblem(api_version, kind, name, path, message, schema, severity)

    if not api_version or not kind:
        return [problem("", "a manifest needs apiVersion and kind", "manifest")]
    schema_file = custom_schema_path(api_version, kind)
    if schema_file.exists():
        source = str(schema_file.relative_to(SCHEMA_DIR.parent.parent))
        errors_of = _custom_errors(_custom_validator(schema_file, version))
    elif _is_builtin(api_version):
        source = f"kubernetes {version} (strict)"
        errors_of = _builtin_errors(version)
    else:
        message = f"no schema for this custom resource: add {schema_file.relative_to(SCHEMA_DIR.parent.parent)}"
        return [problem("", message, "none", "warning")]
    try:
        errors, unchecked = _check(copy.deepcopy(dict(obj)), errors_of)
    except kubernetes_validate.SchemaNotFoundError as error:
        return [problem("", f"{error.message} (not a kind of this Kubernetes version)", source)]
    found = [problem(_path(e.absolute_path), _message(e), _source_of(e, source, version)) for e in errors]
    found += [problem(_path(e.absolute_path), f"not known offline, so not checked ({e.validator})", source, "warning") for e in unchecked]
    return found


def validate_all(objs: Iterable[Mapping[str, Any]], k8s_version: str = DEFAULT_K8S_VERSION) -> list[SchemaProblem]:
    return [problem for obj in objs for problem in validate_manifest(obj, k8s_version)]


def kubernetes_manifests(registrations: Iterable[Registration]) -> list[dict[str, Any]]:
    """The manifests of a program run: the inputs of its Kubernetes objects (custom resources
    whose type is kubernetes:<group>/<version>:<Kind>; providers and components are not objects)."""
    return [r.inputs for r in registrations if r.custom and r.type.startswith(tokens.KUBERNETES_PREFIX)]


__all__ = [
    "DEFAULT_K8S_VERSION",
    "SchemaProblem",
    "custom_schema_path",
    "k8s_version_of",
    "kubernetes_manifests",
    "supported_versions",
    "validate_all",
    "validate_manifest",
]
