"""Violations printed the way `pulumi preview --policy-pack` prints its "Policies:" section:
per pack a pass/warn/fail mark, then each violation as `- [level]  policy  (type: name)` with the
message below it, advisory before mandatory, then by policy and resource."""

from __future__ import annotations

from collections.abc import Sequence

from components import tokens
from policy_runner.session import Report

MARKS = {"mandatory": "❌", "advisory": "⚠️"}


def _type_and_name(urn: str, report: Report) -> tuple[str, str]:
    if not urn:
        return tokens.STACK, f"{report.project}-{report.stack}"
    _, _, qualified, name = urn.split("::", 3)
    return qualified.rsplit("$", 1)[-1], name


def render(report: Report, local_path: str = "policies", notes: Sequence[str] = ()) -> str:
    """`notes`: what the pack could not judge (objects not checked, templates), under the pack's line."""
    mark = MARKS["mandatory"] if report.mandatory else MARKS["advisory"] if report.violations else "✅"
    lines = ["Policies:", f"    {mark} {report.pack.name}@v{report.pack.version} (local: {local_path})"]
    lines.extend(f"        ~ {note}" for note in notes)
    for v in sorted(report.violations, key=lambda v: (v.enforcement_level, v.policy_name, v.urn)):
        kind, name = _type_and_name(v.urn, report)
        lines.append(f"        - [{v.enforcement_level}]  {v.policy_name}  ({kind}: {name})")
        lines.extend(f"          {line}" for line in v.message.rstrip("\n").split("\n"))
    return "\n".join(lines) + "\n"
