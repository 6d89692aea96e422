"""The one error a stack's config can raise."""

from __future__ import annotations

from typing import Any

import pulumi


class ConfigError(pulumi.RunError):
    """A config value that the stack cannot build. RunError makes Pulumi print the one line and
    exit non-zero without a traceback."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(_one_line(f"config error: {key} = {_shown(value)}: {allowed}"))


SHOWN_CHARACTERS = 120


def _shown(value: Any) -> str:
    """The bad value as the user wrote it, but short: repr() refuses ints past 4300 digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        return f"<a {len(str(abs(value))) if value.bit_length() < 14000 else 'huge'}-digit number>"
    shown = repr(value)
    return shown if len(shown) <= SHOWN_CHARACTERS else shown[: SHOWN_CHARACTERS - 3] + "..."


def _one_line(message: str) -> str:
    """Keys come from the user's YAML too: a line break in one must not split the error."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
