"""A selective parser for the Prometheus text exposition format (0.0.4).

An engine page has hundreds of lines (histogram buckets, Python runtime, HTTP
middleware) of which we need a couple of dozen. The generic parser in
prometheus_client builds objects for every line; this one skips unwanted lines
with a prefix check and only parses the samples whose metric name we asked
for, which keeps an 8-engine node's scrape cost negligible.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

Labels = dict[str, str]


class ExpositionError(ValueError):
    """A wanted sample line could not be parsed."""


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float


_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE_RE = re.compile(r'\\[\\"n]')


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value)


def _parse_value(text: str, line: str) -> float:
    token = text.split(None, 1)[0] if text else ""
    try:
        value = float(token)
    except ValueError:
        raise ExpositionError(f"bad sample value in line: {line[:120]!r}") from None
    if math.isnan(value) and token not in ("NaN", "nan"):
        raise ExpositionError(f"bad sample value in line: {line[:120]!r}")
    return value


def _parse_labels(line: str, start: int) -> tuple[Labels, int]:
    """Parse `{a="b",...}` starting at the brace; return labels and the index after `}`."""
    labels: Labels = {}
    pos = start + 1
    if line.startswith("}", pos):
        return labels, pos + 1
    length = len(line)
    while pos < length:
        match = _LABEL_RE.match(line, pos)
        if match is None:
            raise ExpositionError(f"bad label set in line: {line[:120]!r}")
        labels[match.group(1)] = _unescape(match.group(2))
        pos = match.end()
        if match.group(3) == "}":
            return labels, pos
        if line.startswith("}", pos):
            return labels, pos + 1
    raise ExpositionError(f"unterminated label set in line: {line[:120]!r}")


def parse_selected(text: str, wanted: Iterable[str], prefix: str = "") -> dict[str, list[Sample]]:
    """Return the samples of the `wanted` metric names found in `text`.

    Lines not starting with `prefix` are skipped without further inspection.
    Comments, blank lines and unwanted names are ignored; a wanted line that
    is malformed raises ExpositionError, because a half-read page would give
    wrong token counts.
    """
    wanted_set = frozenset(wanted)
    found: dict[str, list[Sample]] = {}
    for line in text.splitlines():
        if not line.startswith(prefix) or line.startswith("#"):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            if name not in wanted_set:
                continue
            labels, end = _parse_labels(line, brace)
            value = _parse_value(line[end:].strip(), line)
        else:
            name = line[:space] if space != -1 else line
            if name not in wanted_set:
                continue
            if space == -1:
                raise ExpositionError(f"sample without value: {line[:120]!r}")
            labels = {}
            value = _parse_value(line[space + 1 :].strip(), line)
        found.setdefault(name, []).append(Sample(labels, value))
    return found
