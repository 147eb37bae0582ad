"""The 0.0.4 text format of `/metrics`, with each series' line prefix kept between renders.

prometheus_client's `generate_latest` checks, sorts and escapes every label of every
sample on every render, though a node's series barely change from one cycle to the
next. `TextPage` writes the same bytes, but keeps what depends only on a family (its
`# HELP`/`# TYPE` header) and on a series' name and labels (`name{a="b"} `), so a cycle
formats values only. The cache holds what the last render used and nothing more:
series of models and pods that are gone are dropped at the next render.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import Metric, Sample

# Names as generate_latest writes them (its default escaping, "underscores"): a name
# outside the classic character set has each character outside it replaced by `_`.
# The patterns are prometheus_client's own, `$` and all.
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABEL_NAME = re.compile(r"^__.*$")

_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
"""OpenMetrics type -> what the 0.0.4 format calls it, where it differs."""
_NAME_SUFFIXES = {"counter": "_total", "info": "_info"}
"""OpenMetrics type -> what the 0.0.4 format appends to the family's name."""
_TRAILING = ("_created", "_gsum", "_gcount")
"""Samples generate_latest moves to a gauge family of their own after the family."""

_SPECIAL_FLOATS = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}

_FamilyKey = tuple[str, str, str]
_SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
_Series = tuple[str, str]
"""A series' line up to its value (`name{a="b"} `), and the trailing family it goes
in: "" for the family itself, else "_created", "_gsum" or "_gcount"."""


def go_float(value: Any) -> str:
    """A sample value as prometheus_client's `floatToGoString` writes it, with fewer
    steps: Go's notation, which switches to an exponent sooner than Python's repr."""
    number = float(value)
    text = repr(number)
    if text[-1] > "9":  # Only inf, -inf and nan end in a letter.
        return _SPECIAL_FLOATS[text]
    # floatToGoString rewrites a positive repr with more than 6 digits before the point:
    # those of [1e6, 1e16), below which repr has fewer and from which it has an exponent.
    if 1e6 <= number < 1e16:
        dot = text.find(".")
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _rune_escaped(name: str, metric: bool) -> str:
    """Each character outside the classic set replaced by `_` (a digit is fine after the
    first character; `:` in metric names only)."""
    return "".join(
        char
        if "a" <= char <= "z"
        or "A" <= char <= "Z"
        or char == "_"
        or ("0" <= char <= "9" and index > 0)
        or (metric and char == ":")
        else "_"
        for index, char in enumerate(name)
    )


def metric_name(name: str) -> str:
    """A metric name as generate_latest writes it."""
    if not name or _METRIC_NAME.match(name):
        return name
    return _rune_escaped(name, metric=True)


def label_name(name: str) -> str:
    """A label name as generate_latest writes it."""
    if not name or (_LABEL_NAME.match(name) and not _RESERVED_LABEL_NAME.match(name)):
        return name
    return _rune_escaped(name, metric=False)


def label_value(value: str) -> str:
    """A label value escaped: backslash, newline and double quote."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str, documentation: str, kind: str) -> str:
    """The `# HELP` and `# TYPE` lines of a family."""
    name = metric_name(name)
    documentation = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {documentation}\n# TYPE {name} {kind}\n"


class _FamilyText:
    """What one family's text keeps between renders: its header and its series' prefixes.

    `series` is filled by the render under way; `kept` is what the previous render left,
    read on a miss and let go of when the render ends."""

    __slots__ = ("name", "documentation", "header", "trailing_headers", "series", "kept")
    header: str
    trailing_headers: dict[str, str]
    series: dict[_SeriesKey, _Series]
    kept: dict[_SeriesKey, _Series]

    def __init__(self, metric: Metric, previous: _FamilyText | None) -> None:
        self.name = metric.name
        self.documentation = metric.documentation
        self.series = {}
        if previous is not None:
            self.header = previous.header
            self.trailing_headers = previous.trailing_headers
            self.kept = previous.series
        else:
            kind = metric.type
            self.header = _header(
                metric.name + _NAME_SUFFIXES.get(kind, ""),
                metric.documentation,
                _TYPES.get(kind, kind),
            )
            self.trailing_headers = {}
            self.kept = {}

    def prefix(self, sample: Sample) -> _Series:
        """The series' line up to its value, and the family it goes in."""
        labels = ",".join(
            f'{label_name(name)}="{label_value(value)}"'
            for name, value in sorted(sample.labels.items())
        )
        text = metric_name(sample.name) + (f"{{{labels}}} " if labels else " ")
        trailing = next((s for s in _TRAILING if sample.name == self.name + s), "")
        return text, trailing

    def trailing_header(self, suffix: str) -> str:
        """The header of the gauge family generate_latest moves `_created` (and `_gsum`,
        `_gcount`) samples to."""
        header = self.trailing_headers.get(suffix)
        if header is None:
            header = _header(self.name + suffix, self.documentation, "gauge")
            self.trailing_headers[suffix] = header
        return header


class TextPage:
    """Renders families in the 0.0.4 text format, byte for byte as `generate_latest`
    does, keeping the headers and line prefixes of the last render for the next."""

    def __init__(self) -> None:
        self._families: dict[_FamilyKey, _FamilyText] = {}

    @property
    def cached_families(self) -> int:
        """How many family headers are kept: the distinct families of the last render."""
        return len(self._families)

    @property
    def cached_series(self) -> int:
        """How many line prefixes are kept: the distinct series of the last render."""
        return sum(len(family.series) for family in self._families.values())

    def render(self, families: Iterable[Metric]) -> bytes:
        """The page of these families; what they do not use is dropped from the cache."""
        previous = self._families
        current: dict[_FamilyKey, _FamilyText] = {}
        out: list[str] = []
        append = out.append
        for metric in families:
            key = (metric.name, metric.type, metric.documentation)
            family = current.get(key)
            if family is None:
                family = current[key] = _FamilyText(metric, previous.get(key))
            append(family.header)
            series = family.series
            kept = family.kept
            trailing: dict[str, list[str]] = {}
            for sample in metric.samples:
                series_key = (sample.name, tuple(sample.labels.items()))
                cached = series.get(series_key)
                if cached is None:
                    cached = kept.get(series_key) or family.prefix(sample)
                    series[series_key] = cached
                prefix, suffix = cached
                if sample.timestamp is None:
                    line = f"{prefix}{go_float(sample.value)}\n"
                else:
                    milliseconds = int(float(sample.timestamp) * 1000)
                    line = f"{prefix}{go_float(sample.value)} {milliseconds:d}\n"
                if suffix:
                    trailing.setdefault(suffix, []).append(line)
                else:
                    append(line)
            for suffix in sorted(trailing):
                append(family.trailing_header(suffix))
                out.extend(trailing[suffix])
        for family in current.values():
            family.kept = {}
        self._families = current
        return "".join(out).encode("utf-8")
