"""Building blocks of our metric families: the prefix, the two kinds we export, units.

Every family declares its unit in UCUM, which the OTLP output sends and `/metrics`
leaves out (the name already says it). A compound unit is written as one annotation,
`{token/s}` rather than `{token}/s`: backends that turn OTLP into Prometheus names
append a `_per_second` for a `/s` even to a name that ends in `_per_second`.
"""

from __future__ import annotations

import functools
import math

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.samples import Sample

PREFIX = "llmcost_"

NO_UNIT = ""
"""Info series, 0/1 flags and shares whose names do not end in `_ratio`."""
RATIO = "1"
"""Only for names ending in `_ratio`: translators append `_ratio` to a gauge in `1`."""
SECONDS = "s"
BYTES = "By"
WATTS = "W"
JOULES = "J"
CELSIUS = "Cel"
HERTZ = "Hz"
TOKENS = "{token}"
TOKENS_PER_SECOND = "{token/s}"


def money(currency: str, per: str = "") -> str:
    """Money in the configured currency: `{USD}`, `{USD/h}` per hour, `{USD/Mtoken}` per 1M
    tokens. UCUM has no currencies; the annotation names the ISO code."""
    return "{" + currency + (f"/{per}" if per else "") + "}"


def count_of(things: str) -> str:
    """A count of things: `{request}`."""
    return "{" + things + "}"


@functools.lru_cache(maxsize=1024)
def _checked(name: str, kind: str) -> str:
    """`name` as prometheus_client names a family of `kind` (a counter's without its
    `_total`), checked by its constructor: once per name, not once per cycle."""
    return (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, "").name


class _Family:
    """What prometheus_client's family constructors set, less their name check (done
    once per name by _checked: every family is built again every cycle), and the
    family's UCUM unit."""

    def _start(self, kind: str, name: str, doc: str, labels: tuple[str, ...], unit: str) -> None:
        self.name = _checked(name, kind)
        self.documentation = doc
        self.unit = ""
        self.type = kind
        self.samples: list[Sample] = []
        self._labelnames = labels
        self.ucum = unit


class Gauge(_Family, GaugeMetricFamily):
    """A gauge family with its UCUM unit."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], unit: str) -> None:
        self._start("gauge", name, doc, labels, unit)


class Counter(_Family, CounterMetricFamily):
    """A counter family with its UCUM unit. Ours are kept in the state file, so they
    count from the node's counting start; `per_process` ones restart with the process."""

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...], unit: str, per_process: bool = False
    ) -> None:
        self._start("counter", name, doc, labels, unit)
        self.per_process = per_process


def gauge(name: str, doc: str, labels: tuple[str, ...] = (), *, unit: str) -> Gauge:
    return Gauge(PREFIX + name, doc, labels, unit)


def counter(
    name: str, doc: str, labels: tuple[str, ...] = (), *, unit: str, per_process: bool = False
) -> Counter:
    return Counter(PREFIX + name, doc, labels, unit, per_process)


def known(value: float | None) -> bool:
    """A value we can export: +Inf is a real answer, None and NaN mean unknown."""
    return value is not None and not math.isnan(value)
