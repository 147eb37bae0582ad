"""Our metric families as one OTLP export: a pure translation, no I/O, no clock.

Counters become cumulative monotonic sums and gauges gauges, named as on
`/metrics` without `_total` and with our label names as attributes, so that a
backend translating OTLP back into Prometheus (the Collector's Prometheus
exporters, Prometheus's or Mimir's OTLP receiver) arrives at the series
`/metrics` shows. A sum's start time is when its count began: the node's
counting start, kept in the state file across restarts, or the process's start
for the few counters that restart with it; a backend that turns cumulative sums
into deltas then never mistakes an exporter restart for a reset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.core import Metric as Family

from llm_cost_exporter import __version__

SCOPE = InstrumentationScope("llm_cost_exporter", __version__)

GEN_AI_TOKEN_TYPES = {"prompt": "input", "cached_prompt": "input", "generation": "output"}
"""Our token kinds as `gen_ai.token.type`: cached prompt tokens are input tokens too."""


@dataclass(frozen=True)
class Stamps:
    """The times of one export, in nanoseconds since the epoch."""

    time: int
    """When the cycle that computed the families ended."""
    counting_since: int
    """When the node's counters (kept in the state file) began."""
    process_start: int
    """When this process started: the start of the counters that restart with it."""


def _gen_ai(attributes: dict[str, str]) -> dict[str, str]:
    """OpenTelemetry's GenAI names for the same things, beside ours."""
    extra = {}
    if "model" in attributes:
        extra["gen_ai.request.model"] = attributes["model"]
    if attributes.get("kind") in GEN_AI_TOKEN_TYPES:
        extra["gen_ai.token.type"] = GEN_AI_TOKEN_TYPES[attributes["kind"]]
    return {**attributes, **extra}


def _metric(family: Family, stamps: Stamps, gen_ai: bool) -> Metric | None:
    """One family as an OTLP metric; None when it has no series (OTLP has no empty one)
    or is of a kind we never export."""
    if family.type == "counter":
        wanted = family.name + "_total"
        start = (
            stamps.process_start if getattr(family, "per_process", True) else stamps.counting_since
        )
    elif family.type == "gauge":
        wanted, start = family.name, 0
    else:
        return None
    points = [
        NumberDataPoint(
            attributes=_gen_ai(sample.labels) if gen_ai else dict(sample.labels),
            start_time_unix_nano=start,
            time_unix_nano=stamps.time,
            value=float(sample.value),
        )
        for sample in family.samples
        if sample.name == wanted
    ]
    if not points:
        return None
    data: Sum | Gauge
    if family.type == "counter":
        data = Sum(points, AggregationTemporality.CUMULATIVE, is_monotonic=True)
    else:
        data = Gauge(points)
    return Metric(family.name, family.documentation, getattr(family, "ucum", ""), data)


def to_export(
    families: Sequence[Family],
    resource: Mapping[str, str],
    stamps: Stamps,
    gen_ai: bool = False,
) -> MetricsData:
    """One export of every family with a series, under one resource and scope."""
    metrics = [m for m in (_metric(f, stamps, gen_ai) for f in families) if m is not None]
    return MetricsData(
        [
            ResourceMetrics(
                Resource(dict(resource)),
                [ScopeMetrics(SCOPE, metrics, schema_url="")],
                schema_url="",
            )
        ]
    )
