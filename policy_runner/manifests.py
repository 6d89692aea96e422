"""Plain Kubernetes YAML as the resources a Pulumi program would register for it, so the same
Kubernetes policies judge `make check` files and this program's objects alike."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from policy_runner.session import StackResource

PROJECT = "manifests"
STACK = "check"
STDIN = Path("-")
YAML_SUFFIXES = (".yaml", ".yml")
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class ManifestError(Exception):
    """A file that is not readable Kubernetes YAML."""


def type_token(api_version: str, kind: str) -> str:
    """apps/v1 Deployment -> kubernetes:apps/v1:Deployment; v1 Service -> kubernetes:core/v1:Service."""
    group, _, version = api_version.rpartition("/")
    return f"kubernetes:{group or 'core'}/{version}:{kind}"


def _kustomize(where: Path) -> ManifestError:
    return ManifestError(
        f"{where} is a kustomization, not Kubernetes objects: run `kustomize build {where.parent if where.is_file() else where} "
        f"> built.yaml` (or `kubectl kustomize`) first and check built.yaml"
    )


def manifest_files(paths: Sequence[Path]) -> list[Path]:
    """The files to read: each file as given, a directory as its *.yaml and *.yml files (not its
    subdirectories), `-` as standard input. A kustomization is refused with the command to build it."""
    files: list[Path] = []
    for path in paths:
        if path == STDIN:
            files.append(path)
        elif path.is_dir():
            kustomization = next((path / name for name in KUSTOMIZATION_FILES if (path / name).is_file()), None)
            if kustomization is not None:
                raise _kustomize(kustomization)
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in YAML_SUFFIXES)
            if not found:
                raise ManifestError(f"{path}: a directory with no .yaml or .yml file")
            files.extend(found)
        elif path.name in KUSTOMIZATION_FILES:
            raise _kustomize(path)
        else:
            files.append(path)
    return files


def _objects(path: Path) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if path == STDIN else path.read_text(encoding="utf-8")
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
        if isinstance(document, dict) and (
            document.get("kind") == "Kustomization" or ("kind" not in document and {"resources", "patches", "bases"} & set(document))
        ):
            raise _kustomize(path)
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
    if not objects:
        raise ManifestError(f"{path}: no Kubernetes object (the file is empty or holds only `---`); nothing to check")
    return objects


def load_manifests(paths: Sequence[Path]) -> list[StackResource]:
    resources: dict[str, StackResource] = {}
    for path in manifest_files(paths):
        for obj in _objects(path):
            token = type_token(obj["apiVersion"], obj["kind"])
            namespace = (obj.get("metadata") or {}).get("namespace")
            name = f"{namespace}/{obj['metadata']['name']}" if namespace else obj["metadata"]["name"]
            urn = f"urn:pulumi:{STACK}::{PROJECT}::{token}::{name}"
            if urn in resources:
                raise ManifestError(f"{path}: {obj['kind']} {name} appears twice in the files given")
            resources[urn] = StackResource(urn=urn, type=token, name=name, properties=obj)
    return list(resources.values())
