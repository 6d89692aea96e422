"""The second `pulumi up` must change nothing. This runs the program as a first update, hands each
resource back the state a real provider would read after it (the inputs plus what GKE and Cloud
Storage fill in themselves, from facts.PROVIDER_FIELDS), runs the program again on that state and
lists every input the engine would diff, the way the Terraform bridge does: a field the program
sets and the service changed, or a field the service filled that the provider does not treat as
computed, unless the resource ignores it. A difference on a ForceNew field is a replacement.

What it cannot see: fields the service fills that facts do not record yet. Each one found on a real
project belongs in facts, and this check then keeps it fixed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from components import facts
from offline_plan import sdk
from offline_plan.harness import PlanMocks, ProgramRun, Registration, run_program


@dataclass(frozen=True)
class Change:
    urn: str
    path: str  # an input path, camelCase and dotted; "" for a resource created or deleted
    before: Any
    after: Any
    op: str  # "update", "replace", "create" or "delete"

    @property
    def replace(self) -> bool:
        return self.op == "replace"

    def describe(self) -> str:
        name = self.urn.rsplit("::", 1)[-1]
        kind = self.urn.split("::")[-2].rsplit("$", 1)[-1]
        if not self.path:
            return f"{self.op} {kind} {name}"
        return f"{self.op} {kind} {name}: {self.path}: {_show(self.before)} -> {_show(self.after)}"


@dataclass(frozen=True)
class SecondApply:
    changes: list[Change]

    @property
    def replacements(self) -> list[Change]:
        return [c for c in self.changes if c.replace]

    def lines(self) -> list[str]:
        if not self.changes:
            return ["second apply: no changes"]
        return [f"second apply: {len(self.changes)} change(s), {len(self.replacements)} replacement(s)"] + [
            f"    {c.describe()}" for c in self.changes
        ]


def _show(value: Any) -> str:
    return "(unset)" if value is None else repr(value)


def read_back(token: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The state a provider reads after creating a resource from these inputs: the inputs, with the
    fields the service fills set to what it reports."""
    state = copy.deepcopy(dict(inputs))
    fields = facts.provider_fields(token)
    for filled in fields.server_filled if fields else ():
        if filled.applies_to(inputs):
            _put(state, filled.path, copy.deepcopy(filled.value))
    return state


class ReadBackMocks(PlanMocks):
    """After a first update: new resources get the read-back state; with `prior`, resources that
    already exist get exactly what the previous update left (id and state), as a refresh would."""

    def __init__(self, prior: Mapping[tuple[str, str], tuple[str | None, dict[str, Any]]] | None = None) -> None:
        self.prior = prior or {}

    def new_resource(self, args: sdk.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        known = self.prior.get((args.typ, args.name))
        if known is not None:
            return known
        resource_id, state = super().new_resource(args)
        return resource_id, {**state, **read_back(args.typ, args.inputs)}


def check(stack: str, config: dict[str, str] | None = None, secret_keys: list[str] | None = None, **run_options: Any) -> SecondApply:
    """Two updates of the same program and config; the second one's diff against the first's state."""
    first = run_program(stack, config, secret_keys, plan_mocks=ReadBackMocks(), preview=False, **run_options)
    prior = _by_type_and_name(first)
    second = run_program(stack, config, secret_keys, plan_mocks=ReadBackMocks(prior), preview=False, **run_options)
    return SecondApply(diff_runs(first, second))


def _by_type_and_name(run: ProgramRun) -> dict[tuple[str, str], tuple[str | None, dict[str, Any]]]:
    prior: dict[tuple[str, str], tuple[str | None, dict[str, Any]]] = {}
    for registration in run.registrations:
        key = (registration.type, registration.name)
        if key in prior:
            raise ValueError(f"two resources of type {key[0]} are named {key[1]}: the second-apply check keys state by type and name")
        prior[key] = (registration.id or None, registration.state)
    return prior


def diff_runs(first: ProgramRun, second: ProgramRun) -> list[Change]:
    before = {r.urn: r for r in first.registrations if r.custom}
    after = {r.urn: r for r in second.registrations if r.custom}
    changes = [Change(urn, "", None, None, "create") for urn in sorted(after.keys() - before.keys())]
    changes += [Change(urn, "", None, None, "delete") for urn in sorted(before.keys() - after.keys())]
    for urn in sorted(before.keys() & after.keys()):
        changes += diff_resource(after[urn], before[urn].state)
    return changes


def diff_resource(registration: Registration, state: Mapping[str, Any]) -> list[Change]:
    """The fields the engine would diff between this registration's inputs and the read state."""
    fields = facts.provider_fields(registration.type) or facts.ProviderFields(source="unknown type", reads_state=False)
    inputs = registration.inputs
    if not fields.reads_state:
        state = {k: v for k, v in state.items() if k in inputs}  # the provider diffs inputs against inputs
    changes = []
    for path, old, new in _leaf_diffs(state, inputs):
        if _under(path, registration.ignore_changes) or any(
            _under(path, [c]) and facts.input_at(inputs, c) is None for c in fields.computed
        ):
            continue
        replace = _under(path, fields.force_new) or any(
            _under(path, [block]) and (facts.input_at(inputs, block) is None) != (facts.input_at(state, block) is None)
            for block in fields.force_new_blocks
        )
        changes.append(Change(registration.urn, path, old, new, "replace" if replace else "update"))
    return changes


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def _leaf_diffs(old: Any, new: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every leaf that differs; a map on one side and nothing on the other is walked as an empty map."""
    sides = (old, new)
    if any(isinstance(v, Mapping) for v in sides) and all(v is None or isinstance(v, Mapping) for v in sides):
        old_map, new_map = old or {}, new or {}
        for key in sorted(old_map.keys() | new_map.keys()):
            yield from _leaf_diffs(old_map.get(key), new_map.get(key), f"{path}.{key}" if path else key)
    elif old != new:
        yield path, old, new


def _put(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
