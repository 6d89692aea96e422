"""The one number parser: stack config, the policy pack and `make recommend` all read numbers here.

Numbers arrive as YAML numbers, as the strings `pulumi config set key 3` stores, as command-line
text, or as the doubles of Pulumi's wire format. Only ASCII digits count: str.isdigit() and float()
also accept '²', '٣' or '1_000', which either crash int() or slip past every grammar a reader of the
stack file would assume. None means "not a number of that kind"; bounds are the caller's.
"""

from __future__ import annotations

import math
import re
from typing import Any

# Far beyond any count the stack takes, and short of int()'s 4300-digit refusal.
_WHOLE = re.compile(r"[+-]?[0-9]{1,30}")
# A decimal number as YAML and JSON write it: 3, -0.5, .5, 1e3, 2.5E-2 (no '_', no hex, no nan/inf).
_REAL = re.compile(r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,4})?")


def whole_number(value: Any, *, integral_floats: bool = False) -> int | None:
    """An int, or ASCII digits with an optional sign and surrounding spaces (" 3 ", "+5", "-0").
    Never a bool, "3.0", "1e3", "²" or "٣". With integral_floats, 3.0 is 3 too: Pulumi's wire format
    carries every number as a double (the policy pack reads those)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if integral_floats and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if _WHOLE.fullmatch(text):
            return int(text)
    return None


def real_number(value: Any) -> float | None:
    """A finite int or float (never a bool), or ASCII decimal text ("0.9", " 1e3 "); not "nan",
    "inf", "1_000", Arabic-Indic digits or a number past a float's range."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not _REAL.fullmatch(text):
            return None
        value = text
    elif not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
