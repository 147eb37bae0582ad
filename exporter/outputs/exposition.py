"""The 0.0.4 text format of `/metrics`, with each series' line prefix kept between renders.

prometheus_client's `generate_latest` checks, sorts and escapes every label of every
sample on every render, though a node's series barely change from one cycle to the
next. `TextPage` writes the same bytes, but keeps what depends only on a family (its
`# HELP`/`# TYPE` header) and on a series' name and labels (`name{a="b"} `), so a cycle
formats values only, and only those that changed: a price, an info series' 1 or a GPU's
memory size is written as it was written last time (the float-to-text conversion is
the largest part of a render). The cache holds what the last render used and nothing
more: series of models and pods that are gone are dropped at the next render.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
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


class _Series:
    """What one series' lines keep between renders: the line up to its value
    (`name{a="b"} `), the trailing family it goes in ("" for the family itself, else
    "_created", "_gsum" or "_gcount"), and its last value with that value's text."""

    __slots__ = ("prefix", "trailing", "value", "text")

    def __init__(self, prefix: str, trailing: str) -> None:
        self.prefix = prefix
        self.trailing = trailing
        self.value: Any = None
        self.text = ""


_Row = tuple[str, Mapping[str, str], _Series]
"""A sample of the last render: its name, its labels and its series."""


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
    """What one family's text keeps between renders: its header, and its samples' series
    in the order of the last render.

    A family's samples come in the same order cycle after cycle, so a sample is first
    compared with the one at its place in the last render (its name and labels, no key
    built or hashed); only where they differ is the last render looked up by key."""

    __slots__ = ("name", "documentation", "header", "trailing_headers", "rows", "last", "index")
    rows: list[_Row]
    """The samples of the render under way."""
    last: list[_Row]
    """The samples of the previous render, let go of when this one ends."""
    index: dict[_SeriesKey, _Series] | None
    """`last` by key, built at the first sample not at its place."""

    def __init__(self, metric: Metric) -> None:
        self.name = metric.name
        self.documentation = metric.documentation
        kind = metric.type
        self.header = _header(
            metric.name + _NAME_SUFFIXES.get(kind, ""), metric.documentation, _TYPES.get(kind, kind)
        )
        self.trailing_headers: dict[str, str] = {}
        self.rows = []
        self.last = []
        self.index = None

    def begin(self) -> None:
        """A render starts using the family: the samples it renders become the last."""
        self.last, self.rows, self.index = self.rows, [], None

    def row(self, sample: Sample) -> _Row:
        """The row of a sample not at its place in the last render."""
        key = (sample.name, tuple(sample.labels.items()))
        if self.index is None:
            self.index = {(name, tuple(labels.items())): s for name, labels, s in self.last}
        series = self.index.get(key)
        if series is None:
            series = self.index[key] = _Series(*self.prefix(sample))
        return sample.name, sample.labels, series

    def prefix(self, sample: Sample) -> tuple[str, str]:
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
        return sum(
            len({(name, tuple(sorted(labels.items()))) for name, labels, _ in family.rows})
            for family in self._families.values()
        )

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
                family = current[key] = previous.get(key) or _FamilyText(metric)
                family.begin()
            append(family.header)
            rows, last = family.rows, family.last
            trailing: dict[str, list[str]] = {}
            for sample in metric.samples:
                place = len(rows)
                row = last[place] if place < len(last) else None
                if row is None or row[1] != sample.labels or row[0] != sample.name:
                    row = family.row(sample)
                rows.append(row)
                series = row[2]
                # A value as it was last time has the same text; not 0, whose sign the
                # comparison cannot see (0.0 == -0.0).
                value = sample.value
                if value == series.value and value:
                    text = series.text
                else:
                    text = series.text = go_float(value)
                    series.value = value
                if sample.timestamp is None:
                    line = f"{series.prefix}{text}\n"
                else:
                    milliseconds = int(float(sample.timestamp) * 1000)
                    line = f"{series.prefix}{text} {milliseconds:d}\n"
                if series.trailing:
                    trailing.setdefault(series.trailing, []).append(line)
                else:
                    append(line)
            if trailing:
                for suffix in sorted(trailing):
                    append(family.trailing_header(suffix))
                    out.extend(trailing[suffix])
        for family in current.values():
            family.last, family.index = [], None
        self._families = current
        return "".join(out).encode("utf-8")
