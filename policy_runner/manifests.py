"""Plain Kubernetes YAML as the resources a Pulumi program would register for it, so the same
Kubernetes policies judge `make check` files and this program's objects alike."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from policy_runner.session import StackResource

PROJECT = "manifests"
STACK = "check"


class ManifestError(Exception):
    """A file that is not readable Kubernetes YAML."""


def type_token(api_version: str, kind: str) -> str:
    """apps/v1 Deployment -> kubernetes:apps/v1:Deployment; v1 Service -> kubernetes:core/v1:Service."""
    group, _, version = api_version.rpartition("/")
    return f"kubernetes:{group or 'core'}/{version}:{kind}"


def _objects(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        # libyaml reads like kubectl's go-yaml: it accepts the trailing tab in the seed's Service,
        # which the pure-Python loader rejects.
        documents = list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    except yaml.MarkedYAMLError as err:
        line = f" at line {err.problem_mark.line + 1}" if err.problem_mark else ""
        raise ManifestError(f"{path}: invalid YAML{line}: {err.problem}") from None
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: invalid YAML: {err}") from None
    objects = []
    for number, document in enumerate(documents, start=1):
        if document is None:
            continue
        items = document.get("items") if isinstance(document, dict) and document.get("kind") == "List" else [document]
        for obj in items if isinstance(items, list) else [items]:
            if not (
                isinstance(obj, dict)
                and isinstance(obj.get("apiVersion"), str)
                and isinstance(obj.get("kind"), str)
                and isinstance((obj.get("metadata") or {}).get("name"), str)
            ):
                raise ManifestError(f"{path}: document {number} is not a Kubernetes object (apiVersion, kind, metadata.name)")
            objects.append(obj)
    return objects


def load_manifests(paths: Sequence[Path]) -> list[StackResource]:
    resources: dict[str, StackResource] = {}
    for path in paths:
        for obj in _objects(path):
            token = type_token(obj["apiVersion"], obj["kind"])
            namespace = (obj.get("metadata") or {}).get("namespace")
            name = f"{namespace}/{obj['metadata']['name']}" if namespace else obj["metadata"]["name"]
            urn = f"urn:pulumi:{STACK}::{PROJECT}::{token}::{name}"
            if urn in resources:
                raise ManifestError(f"{path}: {obj['kind']} {name} appears twice in the files given")
            resources[urn] = StackResource(urn=urn, type=token, name=name, properties=obj)
    return list(resources.values())
