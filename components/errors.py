"""The one error a stack's config can raise."""

from __future__ import annotations

from typing import Any

import pulumi


class ConfigError(pulumi.RunError):
    """A config value that the stack cannot build. RunError makes Pulumi print the one line and
    exit non-zero without a traceback."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"config error: {key} = {value!r}: {allowed}")
