"""A fake of the OTLP-to-Prometheus naming that backends apply on receipt.

Prometheus's and Mimir's OTLP receivers and the OpenTelemetry Collector's
Prometheus exporters name a series after the OTLP metric, its unit and its type,
as OpenTelemetry's "Prometheus and OpenMetrics Compatibility" specification
says; none of them can run here, so this is those rules, written from the
specification and the translators' documented cases, for the two translation
strategies that add suffixes:

- `escaped` (UnderscoreEscapingWithSuffixes, Prometheus's default): the name is
  split into words; the unit's word is appended unless the name has that word,
  the per-unit's (`per_second`) unless the name has it as one word, which it
  never has; `total` (monotonic sums) and `ratio` (gauges in unit `1`) are
  moved to the end.
- `utf8` (NoUTF8EscapingWithSuffixes): suffixes are compared with the end of
  the name instead.

In both, a unit part in braces (`{token}`) names nothing and adds no suffix.
"""

from __future__ import annotations

import re

UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month"}


def unit_suffixes(unit: str) -> tuple[str, str]:
    """(unit word, `per_<word>`) of a UCUM unit; empty where a part is in braces."""
    main, _, per = (part.strip() for part in unit.partition("/"))
    main_word = "" if not main or "{" in main or "}" in main else UNITS.get(main, main)
    per_word = "" if not per or "{" in per or "}" in per else PER_UNITS.get(per, per)
    return _clean(main_word), _clean(f"per_{per_word}") if per_word else ""


def _clean(word: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9:]", "_", word)).lstrip("_")


def escaped(name: str, unit: str, kind: str) -> str:
    """The Prometheus name under UnderscoreEscapingWithSuffixes; `kind` is `counter`
    (a cumulative monotonic sum) or `gauge`."""
    words = [word for word in re.split(r"[^a-zA-Z0-9:]+", name) if word]
    main, per = unit_suffixes(unit)
    if main in words:
        main = ""
    if per in words:
        per = ""
    words += [suffix for suffix in (main, per) if suffix]
    if kind == "counter":
        words = [word for word in words if word != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        words = [word for word in words if word != "ratio"] + ["ratio"]
    return "_".join(words)


def _trimmed(name: str, suffix: str) -> str:
    if name.endswith(suffix) and len(name) > len(suffix) + 1:
        return name[: -(len(suffix) + 1)]
    return name


def utf8(name: str, unit: str, kind: str) -> str:
    """The Prometheus name under NoUTF8EscapingWithSuffixes."""
    tail = []
    if unit == "1" and kind == "gauge":
        name, tail = _trimmed(name, "ratio"), ["ratio"]
    if kind == "counter":
        name, tail = _trimmed(name, "total"), ["total", *tail]
    main, per = unit_suffixes(unit)
    if per:
        name, tail = _trimmed(name, per), [per, *tail]
    if main and not name.endswith(main):
        name = f"{name}_{main}"
    return "_".join([name, *tail])


STRATEGIES = {"UnderscoreEscapingWithSuffixes": escaped, "NoUTF8EscapingWithSuffixes": utf8}
