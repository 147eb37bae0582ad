"""promtool's unit-test notation, read without promtool.

`promtool test rules` files describe input series as `name{labels}` and a
value string in the expanding notation (`0+0.06x10`, `1x5`, `_x3`, `stale`),
and times as Prometheus durations. Reading them here lets the same scenarios
run on another engine (VictoriaMetrics) and be compared with the same
expectations.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "STALE",
    "Sample",
    "Stale",
    "expand_values",
    "parse_duration",
    "parse_series",
    "samples",
]


class Stale:
    """A staleness marker: the series ends here (Prometheus writes one when a target or
    series disappears)."""

    def __repr__(self) -> str:
        return "STALE"


STALE = Stale()
Value = float | None | Stale
"""A sample value, `None` for a missing sample (`_`), or :data:`STALE`."""

_NUMBER = r"[-+]?(?:Inf|NaN|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_SERIES_ITEM = re.compile(
    rf"^(?P<start>{_NUMBER})(?:(?P<op>[-+])(?P<step>{_NUMBER}))?x(?P<n>[0-9]+)$"
)
_BLANKS = re.compile(r"^_x(?P<n>[0-9]+)$")
_NUMBER_ONLY = re.compile(rf"^{_NUMBER}$")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_UNITS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}
_SELECTOR = re.compile(
    r"^\s*(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(?P<labels>.*)\})?\s*$", re.S
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def _number(text: str) -> float:
    return float(text.replace("Inf", "inf").replace("NaN", "nan"))


def expand_values(text: str) -> list[Value]:
    """One value per step: `a+bxn` and `a-bxn` are the n+1 values a, a±b, ..., a±n*b;
    `axn` is a repeated n+1 times; `_` is a missing sample and `_xn` n of them."""
    values: list[Value] = []
    for item in text.split():
        if item == "_":
            values.append(None)
        elif item == "stale":
            values.append(STALE)
        elif blanks := _BLANKS.match(item):
            values.extend([None] * int(blanks["n"]))
        elif _NUMBER_ONLY.match(item):
            values.append(_number(item))
        elif series := _SERIES_ITEM.match(item):
            start = _number(series["start"])
            step = _number(series["step"]) if series["step"] else 0.0
            if series["op"] == "-":
                step = -step
            values.extend(start + k * step for k in range(int(series["n"]) + 1))
        else:
            raise ValueError(f"{item!r}: not promtool's series notation")
    return values


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as `1440m` or `1h30m`."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r}: not a Prometheus duration")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def parse_series(text: str) -> tuple[str, dict[str, str]]:
    """`name{a="b",...}` as the metric name ('' if none) and its labels, unescaped."""
    match = _SELECTOR.match(text)
    if not match:
        raise ValueError(f"{text!r}: not a series selector")
    labels: dict[str, str] = {}
    body = (match["labels"] or "").strip()
    position = 0
    while position < len(body):
        label = _LABEL.match(body, position)
        if not label:
            raise ValueError(f"{text!r}: bad label at {body[position:]!r}")
        labels[label[1]] = re.sub(r"\\(.)", r"\1", label[2].replace("\\n", "\n"))
        position = label.end()
    return match["name"] or "", labels


@dataclass(frozen=True)
class Sample:
    seconds: float
    """Seconds from the test's start (promtool's t=0)."""
    value: float | Stale


def samples(values: str, interval: float) -> Iterator[Sample]:
    """The samples of a value string, one every `interval` seconds from t=0; missing
    ones (`_`) are left out."""
    for index, value in enumerate(expand_values(values)):
        if value is not None:
            yield Sample(index * interval, value)
