"""Numbers from stack config, which may arrive as YAML numbers or as the strings that
`pulumi config set key 3` stores. None means "not a number of that kind"."""

from __future__ import annotations

import math
import re
from typing import Any

# Far beyond any count the stack takes, and short of int()'s 4300-digit refusal.
_WHOLE = re.compile(r"[+-]?[0-9]{1,30}")


def whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    # Only ASCII digits: str.isdigit() also accepts '²', which int() refuses.
    if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        return int(value)
    return None


def real_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
