"""The node's live state: what collectors read, turned into money counters.

The collection loop is the only writer; the HTTP server only reads what the
last cycle left behind. All arithmetic is delegated to `costmodel`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from collectors.vllm import EngineReading
from exporter import costmodel
from exporter.capacity import LearnedCapacity
from exporter.config import Config
from exporter.costmodel import TOKEN_KINDS, ApiPrices
from exporter.counters import EngineCounters, split_prompt_tokens
from exporter.history import History, Totals

log = logging.getLogger(__name__)


@dataclass
class TargetStatus:
    """Health of one collector target, as `llmcost_collector_*` reports it."""

    collector: str
    target: str
    up: bool = False
    duration_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    last_error: str = ""
    readings: list[EngineReading] = field(default_factory=list)


@dataclass
class ModelTotals:
    """Accumulated, restart-proof totals for one served model."""

    tokens: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0.0))
    prompt_all: float = 0.0
    prompt_cached: float = 0.0
    api_equivalent: float = 0.0


@dataclass(frozen=True)
class WindowFigures:
    """The live figures over one window, all from counter deltas."""

    seconds: float
    tokens_per_second: float
    effective_cost_per_million: float
    api_cost_per_million: float | None
    cost_ratio: float | None
    utilization: float | None
    breakeven_utilization: float | None


class NodeState:
    """Everything the exporter knows about its node, updated once per cycle."""

    def __init__(
        self,
        config: Config,
        model_prices: Mapping[str, ApiPrices],
        default_price: ApiPrices | None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.model_prices = dict(model_prices)
        self.default_price = default_price
        self.hourly = costmodel.hourly_cost_by_component(
            config.cost.gpu_per_hour,
            config.cost.node_extra_per_hour,
            config.cost.overhead_ratio,
            config.cost.fixed_per_month,
        )
        self.hourly_total = sum(self.hourly.values())
        self.spend = dict.fromkeys(self.hourly, 0.0)
        self.models: dict[str, ModelTotals] = {}
        self.unpriced_models: set[str] = set()
        self.targets: dict[tuple[str, str], TargetStatus] = {}
        self._engines: dict[tuple[str, str, str], EngineCounters] = {}
        self._wall_clock = wall_clock
        self.started_wall = wall_clock()
        self._last_time: float | None = None
        windows = config.window_seconds()
        self.windows = dict(sorted(windows.items(), key=lambda item: item[1]))
        retention = max([*windows.values(), config.capacity.learn_window])
        self.history = History(retention)
        self.learned = (
            LearnedCapacity(config.capacity.learn_window, config.state_file)
            if config.capacity.learn
            else None
        )
        self._day = self._utc_day()
        self.spend_at_day_start = 0.0
        self.day_started_wall = self.started_wall

    # --- prices ---------------------------------------------------------------

    def price_for(self, model: str) -> ApiPrices | None:
        """The model's API price: its own, else the default, else None."""
        return self.model_prices.get(model, self.default_price)

    def _price_or_flag(self, model: str) -> ApiPrices | None:
        price = self.price_for(model)
        if price is None and model not in self.unpriced_models:
            self.unpriced_models.add(model)
            log.error(
                "no API price for served model %r: add it under api_prices.models "
                "(or set api_prices.default); its API-equivalent cost is not counted",
                model,
            )
        return price

    # --- collector results ----------------------------------------------------

    def status(self, collector: str, target: str) -> TargetStatus:
        key = (collector, target)
        if key not in self.targets:
            self.targets[key] = TargetStatus(collector, target)
        return self.targets[key]

    def record_failure(
        self, collector: str, target: str, reason: str, message: str, duration: float
    ) -> None:
        status = self.status(collector, target)
        if status.up or not status.errors:
            log.warning("%s target %s is down (%s): %s", collector, target, reason, message)
        status.up = False
        status.duration_seconds = duration
        status.errors[reason] = status.errors.get(reason, 0) + 1
        status.last_error = f"{reason}: {message}"
        status.readings = []

    def record_engine_readings(
        self, target: str, readings: list[EngineReading], duration: float
    ) -> None:
        status = self.status("vllm", target)
        if not status.up and status.errors:
            log.info("vllm target %s is up again", target)
        status.up = True
        status.duration_seconds = duration
        status.last_error = ""
        status.readings = readings
        for reading in readings:
            self._add_engine_counters(status, reading)

    def _add_engine_counters(self, status: TargetStatus, reading: EngineReading) -> None:
        key = (status.target, reading.engine, reading.model)
        engine = self._engines.setdefault(key, EngineCounters())
        started_after_us = reading.started_at is not None and reading.started_at > self.started_wall
        increases, restarted = engine.increases(
            {
                "prompt": reading.prompt_tokens,
                "cached": reading.cached_prompt_tokens,
                "generation": reading.generation_tokens,
            },
            reading.started_at,
            count_from_zero=started_after_us,
        )
        if restarted:
            status.restarts += 1
            log.info("engine %s (rank %r) restarted: counters reset", status.target, reading.engine)
        totals = self.models.setdefault(reading.model, ModelTotals())
        totals.prompt_all += increases["prompt"]
        totals.prompt_cached += increases["cached"]
        uncached, cached = split_prompt_tokens(
            totals.prompt_all,
            totals.prompt_cached,
            totals.tokens["prompt"],
            totals.tokens["cached_prompt"],
        )
        added = {
            "prompt": uncached - totals.tokens["prompt"],
            "cached_prompt": cached - totals.tokens["cached_prompt"],
            "generation": increases["generation"],
        }
        for kind, count in added.items():
            totals.tokens[kind] += count
        price = self._price_or_flag(reading.model)
        if price is not None:
            totals.api_equivalent += costmodel.api_equivalent_cost(added, price)

    # --- time -----------------------------------------------------------------

    @staticmethod
    def _utc_day(when: float | None = None) -> str:
        return datetime.fromtimestamp(when or time.time(), timezone.utc).strftime("%Y-%m-%d")

    def advance(self, now: float) -> None:
        """Accrue spend up to `now` (monotonic seconds) and record the totals."""
        if self._last_time is not None:
            elapsed = max(now - self._last_time, 0.0)
            for component, hourly in self.hourly.items():
                self.spend[component] += costmodel.accrued_cost(hourly, elapsed)
        self._last_time = now
        wall = self._wall_clock()
        day = self._utc_day(wall)
        if day != self._day:
            self._day = day
            self.spend_at_day_start = self.spend_total
            self.day_started_wall = wall
        self.history.append(
            Totals(
                time=now,
                spend=self.spend_total,
                tokens=self.tokens_total,
                api_equivalent=sum(m.api_equivalent for m in self.models.values()),
                unpriced_tokens=sum(
                    sum(self.models[m].tokens.values()) for m in self.unpriced_models
                ),
            )
        )
        if self.learned is not None:
            self.learned.observe(self.history)

    # --- derived figures ------------------------------------------------------

    @property
    def spend_total(self) -> float:
        return sum(self.spend.values())

    @property
    def tokens_total(self) -> float:
        return sum(sum(m.tokens.values()) for m in self.models.values())

    @property
    def capacity(self) -> tuple[float, str] | None:
        """Capacity used for utilization: configured, else learned."""
        if self.config.capacity.tokens_per_second:
            return self.config.capacity.tokens_per_second, "configured"
        if self.learned is not None and self.learned.peak:
            return self.learned.peak, "learned"
        return None

    def _fallback_api_cost_per_million(self) -> float | None:
        """Blended API price of all traffic seen, for windows without any."""
        latest = self.history.latest()
        if latest is None or latest.tokens <= 0 or latest.unpriced_tokens > 0:
            return None
        return latest.api_equivalent / latest.tokens * costmodel.MILLION

    def window(self, seconds: float) -> WindowFigures | None:
        delta = self.history.delta(seconds)
        if delta is None or delta.time <= 0:
            return None
        priced = delta.unpriced_tokens == 0
        if delta.tokens > 0:
            api_per_million = delta.api_equivalent / delta.tokens * costmodel.MILLION
        else:
            api_per_million = self._fallback_api_cost_per_million()
        capacity = self.capacity
        utilization = breakeven = None
        if capacity is not None:
            utilization = costmodel.throughput_utilization(delta.tokens, delta.time, capacity[0])
            if priced and api_per_million is not None:
                breakeven = costmodel.breakeven_utilization(
                    self.hourly_total, capacity[0], api_per_million
                )
        return WindowFigures(
            seconds=delta.time,
            tokens_per_second=delta.tokens / delta.time,
            effective_cost_per_million=costmodel.cost_per_million(delta.spend, delta.tokens),
            api_cost_per_million=api_per_million if priced else None,
            cost_ratio=costmodel.cost_ratio(delta.spend, delta.api_equivalent) if priced else None,
            utilization=utilization,
            breakeven_utilization=breakeven,
        )

    def in_flight_by_model(self) -> dict[str, dict[str, float]]:
        """Live gauges per model, from targets that answered in the last cycle."""
        result: dict[str, dict[str, float]] = {}
        for status in self.targets.values():
            for reading in status.readings:
                gauges = result.setdefault(reading.model, {})
                for name, value in (
                    ("running", reading.running),
                    ("waiting", reading.waiting),
                    ("kv_tokens", reading.kv_tokens),
                    ("kv_capacity", reading.kv_capacity_tokens),
                ):
                    if value is not None and not math.isnan(value):
                        gauges[name] = gauges.get(name, 0.0) + value
        return result
