"""The one error a stack's config can raise, and the masking every printed or written value goes through."""

from __future__ import annotations

import os
import re
from typing import Any

import pulumi

# What a pasted secret looks like: a Hugging Face token (hf_ and 34 letters and digits) or an
# OpenAI-style API key (sk-, sk-proj-, sk-ant-...). A value of this shape outside a `secure:` key
# is refused, and masked wherever it would be printed or written.
SECRET_SHAPES = re.compile(r"hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,}")
MASKED = "[masked]"
# Secret values this process was handed (PLAN_SECRET_<KEY>): masked too, wherever they appear.
_known_secrets: set[str] = set()
# The Makefile exports this, so errors name the make variable (MAX_MODEL_LEN) the user typed, not
# the Python flag (--max-model-len) make passed on.
FROM_MAKE_ENV = "TPU_SERVING_FROM_MAKE"


def register_secret(value: str) -> None:
    """A secret's real value, masked from now on in every message and file (short values would
    mask ordinary text, so only those of 8 characters or more)."""
    if len(value) >= 8:
        _known_secrets.add(value)


def secret_shape(text: str) -> str | None:
    """What a secret-shaped text looks like, or None."""
    match = SECRET_SHAPES.search(text)
    if match is None:
        return None
    return "a Hugging Face token (hf_...)" if match.group(0).startswith("hf_") else "an API key (sk-...)"


def mask(text: str) -> str:
    for secret in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(secret, MASKED)
    return SECRET_SHAPES.sub(lambda m: m.group(0)[:3] + MASKED, text)


def for_user(message: str) -> str:
    """Under make, `--max-model-len` becomes MAX_MODEL_LEN and `--config-json PATH` CONFIG_JSON=PATH:
    every flag's make variable is its name in capitals with '_' for '-'."""
    if not os.environ.get(FROM_MAKE_ENV):
        return message

    def variable(match: re.Match[str]) -> str:
        name = match.group(1).upper().replace("-", "_")
        return f"{name}={match.group(2)}" if match.group(2) else name

    return re.sub(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?: ([A-Z][A-Z_]*)\b)?", variable, message)


class _Hidden:
    """Stands in for a value that must not be echoed (an unknown key's: it may be a mistyped secret)."""

    def __repr__(self) -> str:
        return "<value not shown>"


HIDDEN: Any = _Hidden()


class ConfigError(pulumi.RunError):
    """A config value that the stack cannot build. RunError makes Pulumi print the one line and
    exit non-zero without a traceback."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(mask(_one_line(f"config error: {key} = {_shown(value)}: {allowed}")))


class StackFileError(ConfigError):
    """A stack file that cannot be read as config at all: one line naming file, line and column."""

    def __init__(self, file: str, line: int | None, column: int | None, problem: str) -> None:
        self.key, self.value, self.allowed = file, HIDDEN, problem
        where = f"{file}:{line}:{column}" if line is not None else file
        pulumi.RunError.__init__(self, mask(_one_line(f"{where}: config error: {problem}")))


SHOWN_CHARACTERS = 120


def _shown(value: Any) -> str:
    """The bad value as the user wrote it, but short: repr() refuses ints past 4300 digits. Masked
    before it is cut, so no part of a secret survives the cut."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        return f"<a {len(str(abs(value))) if value.bit_length() < 14000 else 'huge'}-digit number>"
    shown = mask(repr(value))
    return shown if len(shown) <= SHOWN_CHARACTERS else shown[: SHOWN_CHARACTERS - 3] + "..."


def _one_line(message: str) -> str:
    """Keys come from the user's YAML too: a line break in one must not split the error."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
