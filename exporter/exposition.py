"""The node state as Prometheus metrics, rendered once per collection cycle.

Rendering happens in the collection loop, not on scrape: `/metrics` hands
out the bytes of the last cycle, so any number of scrapers costs no I/O and
almost no CPU, and every scraper of one cycle sees the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.costmodel import TOKEN_KINDS
from exporter.node import NodeState

PREFIX = "llmcost_"
# The 0.0.4 text format: all our names are classic ones, so it is exact and
# every Prometheus release reads it (the simulator serves it too, as vLLM does).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exporter_version() -> str:
    try:
        return version("llm-cost-exporter")
    except PackageNotFoundError:
        return "0+unknown"


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, labels=list(labels))


def _finite_or_inf(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


class NodeMetrics(Collector):
    """prometheus_client collector over a NodeState."""

    def __init__(self, state: NodeState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        yield from self._info()
        yield from self._cost()
        yield from self._tokens()
        yield from self._windows()
        yield from self._collectors()

    def _info(self) -> Iterator[Metric]:
        state = self.state
        build = _gauge("build_info", "Exporter version; always 1.", ("version",))
        build.add_metric([exporter_version()], 1)
        yield build
        pricing = _gauge(
            "pricing_info",
            "Currency every money figure of this exporter is in; always 1.",
            ("currency",),
        )
        pricing.add_metric([state.config.currency], 1)
        yield pricing
        projection = state.config.projection
        for name, value, doc in (
            (
                "projected_utilization_ratio",
                projection.utilization,
                "Utilization the self-hosting decision assumed (0-1).",
            ),
            (
                "projected_tokens_per_month",
                projection.tokens_per_month,
                "Tokens per month the self-hosting decision assumed.",
            ),
            (
                "projected_cost_per_million_tokens",
                projection.cost_per_million_tokens,
                "Cost per 1M tokens the self-hosting decision assumed.",
            ),
        ):
            if value is not None:
                gauge = _gauge(name, doc)
                gauge.add_metric([], value)
                yield gauge

    def _cost(self) -> Iterator[Metric]:
        state = self.state
        hourly = _gauge(
            "hourly_cost",
            "Loaded cost of this node per hour, by component (gpu, node_extra, overhead, fixed).",
            ("component",),
        )
        spend = _counter(
            "cost",
            "Money spent on this node since the exporter started, by component; "
            "accrues with wall time whether or not tokens flow.",
            ("component",),
        )
        for component, value in state.hourly.items():
            hourly.add_metric([component], value)
            spend.add_metric([component], state.spend[component])
        yield hourly
        yield spend
        capacity = _gauge(
            "capacity_tokens_per_second",
            "Tokens per second this node serves at 100% load (configured, or learned "
            "from sustained peak throughput).",
            ("source",),
        )
        if state.config.capacity.tokens_per_second:
            capacity.add_metric(["configured"], state.config.capacity.tokens_per_second)
        if state.learned is not None and state.learned.peak:
            capacity.add_metric(["learned"], state.learned.peak)
        yield capacity

    def _tokens(self) -> Iterator[Metric]:
        state = self.state
        tokens = _counter(
            "tokens",
            "Tokens served, by model and kind (prompt = computed prompt tokens, "
            "cached_prompt = served from the prefix cache, generation); monotonic "
            "across engine restarts.",
            ("model", "kind"),
        )
        api = _counter(
            "api_equivalent_cost",
            "What the same tokens would have cost on the configured API, by model.",
            ("model",),
        )
        prices = _gauge(
            "api_price_per_million_tokens",
            "API price per 1M tokens used for the comparison, by model and token kind.",
            ("model", "kind"),
        )
        missing = _gauge(
            "api_price_missing",
            "1 for a served model that has no API price: its API-equivalent cost is "
            "not counted and the comparisons are withheld.",
            ("model",),
        )
        for model, totals in sorted(state.models.items()):
            for kind in TOKEN_KINDS:
                tokens.add_metric([model, kind], totals.tokens[kind])
            price = state.price_for(model)
            if price is None:
                missing.add_metric([model], 1)
                continue
            api.add_metric([model], totals.api_equivalent)
            for kind in TOKEN_KINDS:
                prices.add_metric([model, kind], price.for_kind(kind))
        yield from (tokens, api, prices, missing)
        live = {
            "tokens_in_flight": (
                "kv_tokens",
                "Tokens resident in the KV cache of running requests (KV usage x KV capacity).",
            ),
            "kv_cache_capacity_tokens": ("kv_capacity", "Tokens the KV cache can hold."),
            "requests_running": ("running", "Requests in the engines' running batches."),
            "requests_waiting": ("waiting", "Requests queued in the engines."),
        }
        by_model = state.in_flight_by_model()
        for name, (key, doc) in live.items():
            gauge = _gauge(name, doc, ("model",))
            for model, values in sorted(by_model.items()):
                if key in values:
                    gauge.add_metric([model], values[key])
            yield gauge

    def _windows(self) -> Iterator[Metric]:
        state = self.state
        families = {
            "throughput_tokens_per_second": (
                "tokens_per_second",
                "Tokens served per second over the window.",
            ),
            "effective_cost_per_million_tokens": (
                "effective_cost_per_million",
                "Spend over tokens served in the window, per 1M tokens; +Inf when no "
                "token was served.",
            ),
            "api_equivalent_cost_per_million_tokens": (
                "api_cost_per_million",
                "API-equivalent cost per 1M tokens of the window's token mix.",
            ),
            "cost_ratio": (
                "cost_ratio",
                "Spend over API-equivalent cost in the window; above 1 the API would "
                "have been cheaper (+Inf with no traffic).",
            ),
            "throughput_utilization_ratio": (
                "utilization",
                "Throughput over capacity in the window (0-1).",
            ),
            "breakeven_utilization_ratio": (
                "breakeven_utilization",
                "Utilization at which self-hosting costs what the API would; above 1 "
                "the node can never beat the API.",
            ),
        }
        figures = {name: state.window(seconds) for name, seconds in state.windows.items()}
        for metric, (attr, doc) in families.items():
            gauge = _gauge(metric, doc, ("window",))
            for window, figure in figures.items():
                value = getattr(figure, attr) if figure is not None else None
                if _finite_or_inf(value):
                    gauge.add_metric([window], value)
            yield gauge

    def _collectors(self) -> Iterator[Metric]:
        up = _gauge(
            "collector_up", "1 if the target answered the last cycle.", ("collector", "target")
        )
        duration = _gauge(
            "collector_duration_seconds",
            "Time the last collection of the target took.",
            ("collector", "target"),
        )
        errors = _counter(
            "collector_errors",
            "Failed collections, by reason.",
            ("collector", "target", "reason"),
        )
        restarts = _counter(
            "engine_restarts",
            "Engine restarts detected (counters went down or _created changed).",
            ("collector", "target"),
        )
        for (collector, target), status in sorted(self.state.targets.items()):
            up.add_metric([collector, target], 1 if status.up else 0)
            duration.add_metric([collector, target], status.duration_seconds)
            for reason, count in sorted(status.errors.items()):
                errors.add_metric([collector, target, reason], count)
            if collector == "vllm":
                restarts.add_metric([collector, target], status.restarts)
        yield from (up, duration, errors, restarts)


class Exposition:
    """Renders the node's metrics page; called once per collection cycle."""

    def __init__(self, state: NodeState) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeMetrics(state))
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
