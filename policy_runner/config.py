"""Policy pack config resolved the way the Pulumi CLI resolves `--policy-pack-config`: each
policy's own enforcement level and schema defaults, then "all", then the policy's own entry,
then validation against the policy's schema (the SDK applies none of this itself).

One deliberate difference: an entry that names no policy of the pack is an error here, where the
CLI ignores it, so a misspelt policy name cannot leave that policy at its default unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

LEVELS = ("advisory", "mandatory", "remediate", "disabled")
ALL = "all"


class PolicyConfigError(Exception):
    """A policy config that the CLI would refuse too (or that names no policy of the pack)."""


@dataclass(frozen=True)
class PolicyInfo:
    name: str
    description: str
    enforcement_level: str
    schema: Mapping[str, Any] = field(default_factory=dict)  # {"properties": {...}, "required": [...]}


@dataclass(frozen=True)
class PolicyConfig:
    enforcement_level: str
    properties: Mapping[str, Any] = field(default_factory=dict)


def load_policy_config(source: Path | str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The raw config: a JSON file like policies/config/prod.json, a mapping, or None for none."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    try:
        raw = json.loads(Path(source).read_text(encoding="utf-8"))
    except OSError as err:
        raise PolicyConfigError(f"{source}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise PolicyConfigError(f"{source}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(raw, dict):
        raise PolicyConfigError(f"{source}: must be a JSON object of policy names")
    return raw


def _entry(name: str, value: Any) -> tuple[str | None, dict[str, Any]]:
    if isinstance(value, str):
        level, properties = value, {}
    elif isinstance(value, Mapping):
        properties = dict(value)
        level = properties.pop("enforcementLevel", None)
    else:
        raise PolicyConfigError(f"{name}: {value!r} must be an enforcement level or an object")
    if level is not None and level not in LEVELS:
        raise PolicyConfigError(f"{name}: enforcement level {level!r} is not one of {', '.join(LEVELS)}")
    return level, properties


def reconcile(policies: Sequence[PolicyInfo], raw: Mapping[str, Any]) -> dict[str, PolicyConfig]:
    result = {
        p.name: PolicyConfig(
            p.enforcement_level,
            {k: v["default"] for k, v in p.schema.get("properties", {}).items() if isinstance(v, Mapping) and "default" in v},
        )
        for p in policies
    }
    entries = {name: _entry(name, value) for name, value in raw.items()}
    unknown = sorted(set(entries) - set(result) - {ALL})
    if unknown:
        raise PolicyConfigError(f"{', '.join(unknown)}: no such policy in the pack; policies: {', '.join(sorted(result))}")
    all_level, all_properties = entries.pop(ALL, (None, {}))
    if all_properties:
        raise PolicyConfigError(f"{ALL}: takes an enforcement level only, not {', '.join(all_properties)}")
    if all_level is not None:
        result = {name: PolicyConfig(all_level, config.properties) for name, config in result.items()}
    for name, (level, properties) in entries.items():
        current = result[name]
        result[name] = PolicyConfig(level or current.enforcement_level, {**current.properties, **properties})
    problems = []
    for policy in policies:
        schema = {"type": "object", **{k: v for k, v in policy.schema.items() if k in ("properties", "required")}}
        validator = jsonschema.Draft7Validator(schema)
        problems += [f"{policy.name}: {error.message}" for error in validator.iter_errors(dict(result[policy.name].properties))]
    if problems:
        raise PolicyConfigError("; ".join(problems))
    return result
