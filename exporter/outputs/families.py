"""Building blocks of our metric families: the prefix and the two kinds we export."""

from __future__ import annotations

import math

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PREFIX = "llmcost_"


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, labels=list(labels))


def known(value: float | None) -> bool:
    """A value we can export: +Inf is a real answer, None and NaN mean unknown."""
    return value is not None and not math.isnan(value)
