"""Prompt sets: a small built-in one and a loader for user files."""

from __future__ import annotations

import json
from pathlib import Path

BUILTIN_PROMPTS: tuple[str, ...] = (
    "Explain in two sentences what a Kubernetes Horizontal Pod Autoscaler does.",
    "Write a haiku about tensor processing units.",
    "List three differences between TCP and UDP.",
    "Summarize the plot of Romeo and Juliet in one paragraph.",
    "What is the capital of Australia, and why was that city chosen?",
    "Write a short Python function that reverses a string, with a docstring.",
    "Describe how a hash map handles collisions.",
    "Translate 'Good morning, how are you?' into French, Spanish and German.",
)

JSONL_SUFFIXES = (".jsonl", ".ndjson")


class PromptFileError(ValueError):
    """The prompt file is unreadable, malformed or empty."""


def load_prompts(path: Path) -> tuple[str, ...]:
    """Read prompts from ``path``.

    Files ending in ``.jsonl`` or ``.ndjson`` hold one JSON object per line with a string
    ``"prompt"`` field; any other file holds one prompt per line. Blank lines are skipped in
    both. The format is chosen by suffix rather than sniffed so that a plain-text prompt that
    happens to look like JSON is still sent verbatim.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptFileError(f"cannot read prompts file {path}: {exc}") from exc
    jsonl = path.suffix.lower() in JSONL_SUFFIXES
    prompts: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not jsonl:
            prompts.append(line.strip())
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptFileError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        prompt = record.get("prompt") if isinstance(record, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptFileError(f'{path}:{number}: expected an object with a non-empty string "prompt"')
        prompts.append(prompt)
    if not prompts:
        raise PromptFileError(f"{path}: no prompts found")
    return tuple(prompts)
