"""The data points of OTLP metrics requests, flattened into plain Python values.

An ExportMetricsServiceRequest nests resource, scope, metric and point; a test
asserts on one series at a time, so each point here carries everything above it
(resource attributes, scope, metric name, unit, kind, monotonicity, temporality)
and its attributes and value as Python values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

Attributes = dict[str, Any]
SeriesKey = tuple[str, tuple[tuple[str, Any], ...]]
"""(metric name, sorted attribute items): one series, as `latest` keys it."""


@dataclass(frozen=True)
class Point:
    """One data point with its metric, scope and resource."""

    resource: Attributes
    scope_name: str
    scope_version: str
    name: str
    description: str
    unit: str
    kind: str
    """The Metric's `data` field: "gauge", "sum", "histogram", "exponential_histogram"
    or "summary"."""
    is_monotonic: bool | None
    """A sum's; None for other kinds."""
    aggregation_temporality: str | None
    """The enum's name, e.g. "AGGREGATION_TEMPORALITY_CUMULATIVE"; None for a gauge."""
    attributes: Attributes
    value: float | int | None
    """`as_double` or `as_int` of a gauge or sum point; None for other kinds."""
    start_time_unix_nano: int
    time_unix_nano: int

    @property
    def key(self) -> SeriesKey:
        return series_key(self.name, self.attributes)


def series_key(name: str, attributes: Mapping[str, Any]) -> SeriesKey:
    """The `latest` key of the series `name` with `attributes`."""
    return name, tuple(sorted((k, _hashable(v)) for k, v in attributes.items()))


def any_value(value: AnyValue) -> Any:
    """An AnyValue as Python: str, bool, int, float, bytes, list, dict, or None if unset."""
    field = value.WhichOneof("value")
    if field is None:
        return None
    if field == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if field == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, field)


def attributes(pairs: Iterable[KeyValue]) -> Attributes:
    return {pair.key: any_value(pair.value) for pair in pairs}


def points(request: ExportMetricsServiceRequest) -> Iterator[Point]:
    """Every data point of `request`, in the order it holds them."""
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(metric, kind)
                temporality = (
                    metrics_pb2.AggregationTemporality.Name(data.aggregation_temporality)
                    if data.DESCRIPTOR.fields_by_name.get("aggregation_temporality")
                    else None
                )
                monotonic = data.is_monotonic if kind == "sum" else None
                for point in data.data_points:
                    yield Point(
                        resource=resource,
                        scope_name=scope.name,
                        scope_version=scope.version,
                        name=metric.name,
                        description=metric.description,
                        unit=metric.unit,
                        kind=kind,
                        is_monotonic=monotonic,
                        aggregation_temporality=temporality,
                        attributes=attributes(point.attributes),
                        value=_number(point),
                        start_time_unix_nano=point.start_time_unix_nano,
                        time_unix_nano=point.time_unix_nano,
                    )


def latest(all_points: Iterable[Point]) -> dict[SeriesKey, Point]:
    """The newest point (by time_unix_nano; the later one on a tie) of each series."""
    newest: dict[SeriesKey, Point] = {}
    for point in all_points:
        seen = newest.get(point.key)
        if seen is None or point.time_unix_nano >= seen.time_unix_nano:
            newest[point.key] = point
    return newest


def _number(point: Any) -> float | int | None:
    if not isinstance(point, metrics_pb2.NumberDataPoint):
        return None
    field = point.WhichOneof("value")
    return None if field is None else getattr(point, field)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value
