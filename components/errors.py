"""The one error a stack's config can raise."""

from __future__ import annotations

from typing import Any

import pulumi


class ConfigError(pulumi.RunError):
    """A config value that the stack cannot build. RunError makes Pulumi print the one line and
    exit non-zero without a traceback."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(_one_line(f"config error: {key} = {value!r}: {allowed}"))


def _one_line(message: str) -> str:
    """Keys come from the user's YAML too: a line break in one must not split the error."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
