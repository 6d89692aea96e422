"""Writing the recommended ``autoscalingMetric`` / ``autoscalingTarget`` into ``Pulumi.<stack>.yaml``.

The file is edited with ruamel.yaml's round-trip mode so comments, quoting and layout survive,
and then checked twice before anything is written: the new text must parse (PyYAML) to exactly
the old configuration with the two keys of one model set, and a line diff must show nothing but
those keys' lines, not preceded by a comment line. Anything else (a layout ruamel would
rewrite, a flow-style model, an alias shared with another model, ...) is refused with the reason,
and the file is left as it was. The write itself is atomic (a temporary file renamed over it).
"""

from __future__ import annotations

import copy
import difflib
import io
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import tool_cli

METRIC_KEY = "autoscalingMetric"
TARGET_KEY = "autoscalingTarget"
_STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_OUR_LINE = re.compile(rf"^\s*({METRIC_KEY}|{TARGET_KEY})\s*:")
# (mapping, sequence, offset) indentations tried, in order, for an exact round trip.
_INDENTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0), (2, 2, 2))


class StackEditError(Exception):
    """The stack file was not changed; the message says why."""


@dataclass(frozen=True)
class StackEdit:
    path: Path
    model: str
    old_text: str
    new_text: str
    diff: str
    max_replicas: int | None

    @property
    def changed(self) -> bool:
        return self.old_text != self.new_text


def stack_path(stack: str, directory: Path) -> Path:
    if not _STACK_NAME.fullmatch(stack) or ".." in stack:
        raise StackEditError(f"--write-stack {stack!r} is not a stack name like dev or prod")
    return tool_cli.stack_file(stack, directory)


def _round_trip_yaml(indent: tuple[int, int, int]) -> Any:
    try:
        from ruamel.yaml import YAML
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise StackEditError("editing a stack file needs ruamel.yaml, which is not installed in this environment") from exc
    handler = YAML()
    handler.preserve_quotes = True
    handler.width = 4096
    mapping, sequence, offset = indent
    handler.indent(mapping=mapping, sequence=sequence, offset=offset)
    return handler


def _dump(handler: Any, data: Any) -> str:
    out = io.StringIO()
    handler.dump(data, out)
    return out.getvalue()


def _models_key(config: Any) -> str:
    keys = [key for key in config if isinstance(key, str) and key.endswith(":models")]
    if len(keys) != 1:
        raise StackEditError("the stack's config has no single '<project>:models' list")
    return keys[0]


def _find_model(models: Sequence[Any], wanted: Sequence[str], stack_model: str | None) -> int:
    """Index of the model entry: by ``name`` when ``stack_model`` is given, else by name or hfId."""
    entries = [(i, m) for i, m in enumerate(models) if isinstance(m, dict)]
    if stack_model is not None:
        hits = [i for i, m in entries if m.get("name") == stack_model]
        label = f"named {stack_model!r}"
    else:
        hits = [i for i, m in entries if m.get("name") in wanted or m.get("hfId") in wanted]
        label = f"serving {' / '.join(repr(w) for w in wanted)} (by name or hfId)"
    names = ", ".join(str(m.get("name")) for _, m in entries) or "none"
    choose = "choose one with --stack-model NAME (make: STACK_MODEL=NAME)"
    if not hits:
        raise StackEditError(f"no model {label} in the stack (its models: {names}); {choose}")
    if len(hits) > 1:
        raise StackEditError(f"{len(hits)} models {label} in the stack ({names}); {choose}")
    return hits[0]


def _check_diff(old_lines: list[str], new_lines: list[str]) -> str | None:
    """Why the line diff is not just the two keys' lines, or ``None`` when it is."""
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        touched = old_lines[a1:a2] + new_lines[b1:b2]
        if not all(_OUR_LINE.match(line) for line in touched):
            return "the edit would also change other lines"
        if tag == "insert" and b1 > 0 and (not new_lines[b1 - 1].strip() or new_lines[b1 - 1].lstrip().startswith("#")):
            return "the new keys would land after a comment that belongs to something else"
    return None


def _load(path: Path) -> tuple[str, dict[str, Any], str, list[Any]]:
    if path.is_symlink() or not path.is_file():
        raise StackEditError(f"{path} is not a regular file (is the stack name right?)")
    if not os.access(path, os.W_OK):
        raise StackEditError(f"{path} is not writable")
    try:
        old_text = path.read_text(encoding="utf-8")
        plain = yaml.safe_load(old_text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise StackEditError(f"cannot read {path}: {type(exc).__name__}") from exc
    if not isinstance(plain, dict) or not isinstance(plain.get("config"), dict):
        raise StackEditError(f"{path} has no 'config' mapping")
    models_key = _models_key(plain["config"])
    models = plain["config"][models_key]
    if not isinstance(models, list):
        raise StackEditError(f"{models_key} in {path} is not a list")
    return old_text, plain, models_key, models


def _handler_for(path: Path, text: str) -> Any:
    handler = next((h for h in map(_round_trip_yaml, _INDENTS) if _round_trips(h, text)), None)
    if handler is None:
        raise StackEditError(f"{path} would be reformatted by a YAML round trip, so it is not edited automatically")
    return handler


def precheck(path: Path, served_models: Sequence[str], stack_model: str | None) -> str | None:
    """Refuse before the load test what would be refused after it; return the model's current
    ``autoscalingMetric`` when the model can already be identified (``None`` otherwise)."""
    old_text, _, _, models = _load(path)
    _handler_for(path, old_text)
    if stack_model is None and not served_models:
        return None
    entry = models[_find_model(models, served_models, stack_model)]
    current = entry.get(METRIC_KEY)
    return current if isinstance(current, str) else None


def plan_edit(
    path: Path,
    served_models: Sequence[str],
    metric: str,
    target: float,
    stack_model: str | None = None,
) -> StackEdit:
    """The edit that sets ``metric``/``target`` for the model, checked but not yet written."""
    old_text, plain, models_key, models = _load(path)
    index = _find_model(models, served_models, stack_model)
    entry = models[index]
    name = str(entry.get("name"))
    expected = copy.deepcopy(plain)
    expected["config"][models_key][index][METRIC_KEY] = metric
    expected["config"][models_key][index][TARGET_KEY] = target
    max_replicas = entry.get("maxReplicas", entry.get("minReplicas", 1))

    handler = _handler_for(path, old_text)

    def edit(position: Callable[[list[str]], int]) -> str:
        data = handler.load(old_text)
        model = data["config"][models_key][index]
        if METRIC_KEY in model:
            model[METRIC_KEY] = metric
        elif TARGET_KEY in model:
            model.insert(list(model).index(TARGET_KEY), METRIC_KEY, metric)
        else:
            model.insert(position(list(model)), METRIC_KEY, metric)
        if TARGET_KEY in model:
            model[TARGET_KEY] = target
        else:
            model.insert(list(model).index(METRIC_KEY) + 1, TARGET_KEY, target)
        return _dump(handler, data)

    new_text = ""
    problems: list[str] = []
    for position in _positions():
        try:
            candidate = edit(position)
        except (KeyError, IndexError) as exc:
            problems.append(f"no {exc} key")
            continue
        problem = _verify(candidate, old_text, expected)
        if problem is None:
            new_text = candidate
            break
        problems.append(problem)
    if not new_text:
        raise StackEditError(
            f"cannot edit model {name!r} in {path} safely ({problems[-1] if problems else 'no place for the keys'}); "
            f"set {METRIC_KEY}: {metric} and {TARGET_KEY}: {target:g} by hand"
        )
    diff = "".join(difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True), str(path), str(path)))
    return StackEdit(path, name, old_text, new_text, diff, max_replicas if isinstance(max_replicas, int) else None)


def _round_trips(handler: Any, text: str) -> bool:
    try:
        return bool(_dump(handler, handler.load(text)) == text)
    except Exception:  # any ruamel failure means: do not edit
        return False


def _positions() -> list[Callable[[list[str]], int]]:
    """Where a missing key may go, in order of preference; each is checked by :func:`_verify`."""

    def after(*names: str) -> Callable[[list[str]], int]:
        def position(keys: list[str]) -> int:
            for name in names:
                if name in keys:
                    return keys.index(name) + 1
            raise KeyError(names)

        return position

    def from_end(back: int) -> Callable[[list[str]], int]:
        def position(keys: list[str]) -> int:
            if back >= len(keys):
                raise IndexError(back)
            return len(keys) - back

        return position

    return [
        after("maxReplicas"),
        after("minReplicas"),
        *(from_end(back) for back in range(0, 8)),
        after("name"),
    ]


def _verify(candidate: str, old_text: str, expected: Any) -> str | None:
    try:
        if yaml.safe_load(candidate) != expected:
            return "the result would not parse to the intended configuration"
    except yaml.YAMLError:
        return "the result would not parse"
    return _check_diff(old_text.splitlines(keepends=True), candidate.splitlines(keepends=True))


def write_edit(edit: StackEdit) -> None:
    """Replace the file atomically, unless it changed since it was read."""
    if not edit.changed:
        return
    if edit.path.read_text(encoding="utf-8") != edit.old_text:
        raise StackEditError(f"{edit.path} changed while the load test ran; nothing written, rerun to edit it")
    mode = edit.path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=f".{edit.path.name}.", dir=edit.path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(edit.new_text)
        os.chmod(tmp, mode)
        os.replace(tmp, edit.path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
