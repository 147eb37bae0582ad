"""Reading numbers back from a saved state: a value that could break a counter is refused.

A state file is read once at start. Anything in it that is not a finite,
non-negative number where a counter or a price goes (a hand edit, a disk
error that still parses) makes the whole state unusable: StateError, and the
exporter starts from zero rather than export a NaN or a counter that went down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class StateError(ValueError):
    """The saved state is not one this exporter wrote."""


def section(data: Any, key: str) -> Mapping[str, Any]:
    """`data[key]`, which must be a mapping."""
    value = mapping(data).get(key)
    if not isinstance(value, Mapping):
        raise StateError(f"{key}: expected a mapping")
    return value


def mapping(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise StateError("expected a mapping")
    return data


def items(data: Any, key: str) -> list[Mapping[str, Any]]:
    """`data[key]`, a list of mappings."""
    value = mapping(data).get(key)
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise StateError(f"{key}: expected a list of mappings")
    return value


def amount(value: Any, where: str = "value") -> float:
    """A finite, non-negative number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StateError(f"{where}: {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise StateError(f"{where}: {value!r} is not a finite non-negative number")
    return number


def optional_amount(value: Any, where: str = "value") -> float | None:
    return None if value is None else amount(value, where)


def amounts(value: Any, where: str) -> dict[str, float]:
    """A mapping of names to finite, non-negative numbers."""
    if not isinstance(value, Mapping):
        raise StateError(f"{where}: expected a mapping")
    return {text(k, where): amount(v, f"{where}.{k}") for k, v in value.items()}


def whole(value: Any, where: str = "value") -> int:
    """A non-negative whole number (a count)."""
    number = amount(value, where)
    if not number.is_integer():
        raise StateError(f"{where}: {value!r} is not a whole number")
    return int(number)


def text(value: Any, where: str = "value") -> str:
    if not isinstance(value, str):
        raise StateError(f"{where}: {value!r} is not text")
    return value
