"""`python -m e2e.compare_preview build/<stack>/plan.json preview.json`: does the offline plan
still describe what the real program asks for?

Compares the resources (by URN, which holds the type, the name and the parent chain) and their
inputs. Exit 0 when they agree, 1 on a difference (one line each, naming the URN and the input
path), 2 when a file cannot be read.

The plan side is offline_plan/render.py's `plan_document`: `steps[]` of `{op, urn, newState: {type,
urn, inputs, ...}}`. The preview side is assumed to be what `pulumi preview --json --show-sames`
prints, modelled on the CLI's JSON preview digest (pkg/backend/display/json.go), NOT checked
against a real CLI here (none is installed):

- `steps[]` of `{op, urn, newState: {type, inputs, ...}, oldState}`; without `--show-sames` the
  unchanged resources of an existing stack are left out, so the workflow passes it;
- a step whose op removes a resource (delete, discard, ...) has no desired state and is skipped;
  a replacement lists one URN more than once, and any of its steps with a newState stands for it;
- secret values are the string `[secret]` (or a Pulumi secret object, `{"4dabf1...": "1b4706..."}`);
- values the engine cannot know yet (outputs of other resources, on a create) are the unknown
  sentinel `04da6b54-80e4-46f7-96ec-b56ff0331ba9`;
- providers' `__defaults` list the inputs they filled in themselves, and the engine adds `version`
  (and `pluginDownloadURL`) to provider resources' inputs; the engine's default providers
  (`pulumi:providers:<pkg>::default...`) are not registered by the program at all.

Ignored, on either side: the plan's `PLACEHOLDER-*` values (also inside a string: the cloud computes
them), its `[secret: not decrypted offline]` marker, the preview's secrets and unknowns (also for an
input the plan lacks), and the provider- and engine-added inputs above. Everything else must be
equal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tool_cli
from offline_plan.harness import PLACEHOLDER, SECRET_MARKER

PROG = "compare_preview"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
PREVIEW_SECRET = "[secret]"
SECRET_SIGNATURE = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")
REMOVING_OPS = {"delete", "delete-replaced", "discard", "discard-replaced", "remove-pending-replace", "read-discard"}
ENGINE_PROVIDER_INPUTS = {"version", "pluginDownloadURL"}
DEFAULTS_KEY = "__defaults"
# A difference line shows at most this much of each value.
SHOWN = 80


class InputError(tool_cli.BadInput):
    """A file that is not a preview document; exit 2."""


def _Parser(**kwargs: Any) -> tool_cli.ArgumentParser:
    return tool_cli.ArgumentParser(error_prog=PROG, **kwargs)


def declared(document: Any, source: str) -> dict[str, dict[str, Any]]:
    """URN -> newState of every resource the program declares in a preview-shaped document."""
    steps = document.get("steps") if isinstance(document, dict) else None
    if not isinstance(steps, list):
        raise InputError(f"{source}: no steps[] (expected `pulumi preview --json` output)")
    resources: dict[str, dict[str, Any]] = {}
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("urn"), str):
            raise InputError(f"{source}: steps[{index}] has no urn")
        state = step.get("newState")
        if step.get("op") in REMOVING_OPS or not isinstance(state, dict):
            continue
        if _is_default_provider(step["urn"]):
            continue
        resources[step["urn"]] = state
    return resources


def _is_default_provider(urn: str) -> bool:
    kind, _, name = urn.rpartition("::")
    # urn:pulumi:STACK::PROJECT::[ParentType$]Type::name
    return kind.rpartition("::")[2].rpartition("$")[2].startswith("pulumi:providers:") and name.startswith("default")


def _is_secret(value: Any) -> bool:
    return value in (PREVIEW_SECRET, SECRET_MARKER) or (isinstance(value, dict) and value.get(SECRET_SIGNATURE[0]) == SECRET_SIGNATURE[1])


def _ignored(planned: Any, previewed: Any) -> bool:
    """Values one side cannot know: computed by the cloud, unknown until apply, or secret."""
    if isinstance(planned, str) and f"{PLACEHOLDER}-" in planned:
        return True
    return previewed == UNKNOWN or _is_secret(planned) or _is_secret(previewed)


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def value_differences(path: str, planned: Any, previewed: Any, provider: bool) -> Iterator[str]:
    """`path: what differs` for every differing leaf, depth first."""
    if _ignored(planned, previewed):
        return
    if isinstance(planned, dict) and isinstance(previewed, dict):
        filled = set(previewed.get(DEFAULTS_KEY) or []) | {DEFAULTS_KEY} | (ENGINE_PROVIDER_INPUTS if provider and not path else set())
        for key in sorted(set(planned) | set(previewed)):
            where = f"{path}.{key}" if path else key
            if key not in previewed:
                yield f"{where}: in the plan ({_show(planned[key])}), not in the preview"
            elif key not in planned:
                if key not in filled and previewed[key] != UNKNOWN:
                    yield f"{where}: in the preview ({_show(previewed[key])}), not in the plan"
            else:
                yield from value_differences(where, planned[key], previewed[key], provider)
    elif isinstance(planned, list) and isinstance(previewed, list):
        if len(planned) != len(previewed):
            yield f"{path}: {len(planned)} items in the plan, {len(previewed)} in the preview"
        for index, (a, b) in enumerate(zip(planned, previewed, strict=False)):
            yield from value_differences(f"{path}[{index}]", a, b, provider)
    elif planned != previewed:
        yield f"{path or '(inputs)'}: plan {_show(planned)}, preview {_show(previewed)}"


def compare(plan: Any, preview: Any) -> list[str]:
    """Every difference, one line each; empty when the plan matches the preview."""
    planned, previewed = declared(plan, "plan"), declared(preview, "preview")
    lines = [f"only in the plan: {urn}" for urn in sorted(set(planned) - set(previewed))]
    lines += [f"only in the preview: {urn}" for urn in sorted(set(previewed) - set(planned))]
    for urn in sorted(set(planned) & set(previewed)):
        provider = str(planned[urn].get("type", "")).startswith("pulumi:providers:")
        differences = value_differences("", planned[urn].get("inputs") or {}, previewed[urn].get("inputs") or {}, provider)
        lines += [f"changed input: {urn}: {difference}" for difference in differences]
    return lines


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {type(error).__name__}") from error
    except json.JSONDecodeError as error:
        raise InputError(f"{path} is not JSON (line {error.lineno}: {error.msg})") from error


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m e2e.compare_preview", description="Compare the offline plan with a real `pulumi preview --json --show-sames`."
    )
    parser.add_argument("plan", type=Path, help="build/<stack>/plan.json from `make plan`")
    parser.add_argument("preview", type=Path, help="the output of `pulumi preview --json --show-sames`")
    args = parser.parse_args(argv)
    try:
        differences = compare(_load(args.plan), _load(args.preview))
    except InputError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return tool_cli.EXIT_BAD_INPUT
    for line in differences:
        print(line)
    if differences:
        print(f"{PROG}: {len(differences)} difference(s) between {args.plan} and {args.preview}", file=sys.stderr)
        return tool_cli.EXIT_FINDING
    print(f"{PROG}: {args.plan} matches {args.preview}")
    return tool_cli.EXIT_OK


if __name__ == "__main__":
    tool_cli.run(main, PROG)
