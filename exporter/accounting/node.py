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

from llm_cost_exporter.accounting import costmodel
from llm_cost_exporter.accounting.capacity import LearnedCapacity
from llm_cost_exporter.accounting.costmodel import COST_COMPONENTS, TOKEN_KINDS, ApiPrices
from llm_cost_exporter.accounting.counters import EngineCounters, split_prompt_tokens
from llm_cost_exporter.accounting.gpu_fleet import GpuFleet
from llm_cost_exporter.accounting.gpu_inventory import (
    UNCLAIMED,
    BilledGpu,
    build_inventory,
    resolve_claims,
)
from llm_cost_exporter.accounting.history import History, Totals
from llm_cost_exporter.accounting.windows import (
    WindowFigures,
    blended_api_cost_per_million,
    window_figures,
)
from llm_cost_exporter.collectors.base import REASONS
from llm_cost_exporter.collectors.nvml import NvmlSnapshot
from llm_cost_exporter.collectors.vllm import EngineReading
from llm_cost_exporter.config import Config

log = logging.getLogger(__name__)


@dataclass
class TargetStatus:
    """Health of one collector target, as `llmcost_collector_*` reports it."""

    collector: str
    target: str
    up: bool = False
    duration_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    """Failed collections by reason, every reason from 0 so that Prometheus's
    increase() sees the first failure too."""
    restarts: int = 0
    last_error: str = ""
    readings: list[EngineReading] = field(default_factory=list)
    models: tuple[str, ...] = ()
    """Models the target served when it last answered: the owners of its GPUs."""

    @property
    def ever_failed(self) -> bool:
        return any(self.errors.values())


@dataclass
class ModelTotals:
    """Accumulated, restart-proof totals for one served model."""

    tokens: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0.0))
    prompt_all: float = 0.0
    prompt_cached: float = 0.0
    api_equivalent: float = 0.0


class NodeState:
    """Everything the exporter knows about its node, updated once per cycle."""

    def __init__(
        self,
        config: Config,
        model_prices: Mapping[str, ApiPrices],
        default_price: ApiPrices | None,
        wall_clock: Callable[[], float] = time.time,
        gpus: list[BilledGpu] | None = None,
    ) -> None:
        """`gpus` is the inventory to bill; by default the GPUs declared in cost.gpus."""
        self.config = config
        self.model_prices = dict(model_prices)
        self.default_price = default_price
        declared = [(g.model, g.count) for g in config.cost.gpus]
        hourly_by_key = config.cost.gpu_hourly_by_key
        if gpus is None:
            gpus = build_inventory([], declared, hourly_by_key, nvml_available=False)
        self.fleet = GpuFleet(gpus, hourly_by_key, declared)
        self.components = tuple(
            c for c in COST_COMPONENTS if c != "energy" or config.cost.owned is not None
        )
        self.spend = dict.fromkeys(self.components, 0.0)
        self.hourly = dict.fromkeys(self.components, 0.0)
        self.owner_spend: dict[str, float] = {}
        self.owner_hourly: dict[str, float] = {}
        self.models: dict[str, ModelTotals] = {}
        self.unpriced_models: set[str] = set()
        self.targets: dict[tuple[str, str], TargetStatus] = {}
        self._engines: dict[tuple[str, str, str], EngineCounters] = {}
        self._wall_clock = wall_clock
        self.started_wall = wall_clock()
        self._last_time: float | None = None
        windows = config.window_seconds()
        self.windows = dict(sorted(windows.items(), key=lambda item: item[1]))
        self._retention = max([*windows.values(), config.capacity.learn_window])
        self.history = History(self._retention)
        self.model_history: dict[str, History] = {}
        self.learned = (
            LearnedCapacity(config.capacity.learn_window, config.state_file)
            if config.capacity.learn
            else None
        )
        self._day = self._utc_day()
        self.spend_at_day_start = 0.0
        self.day_started_wall = self.started_wall
        self.per_model_split = len(config.engines) == 1 or set(config.engine_gpus) == set(
            config.engines
        )
        """Per-model cost is meaningful: one engine, or every engine names its GPUs."""
        if not self.per_model_split:
            log.warning(
                "%d engines and not every one lists its GPUs (engines[].gpus): "
                "per-model cost is not computed, the node's GPUs count as unclaimed",
                len(config.engines),
            )
        self._claims: dict[str, str] = {}
        self._resolve_claims()
        self.gpu_owners: dict[str, tuple[str, ...]] = self.owners()
        """Who each GPU's cost went to in the last cycle (see `owners`)."""

    def _resolve_claims(self) -> None:
        """Which engine target owns each GPU of the inventory."""
        inventory = self.fleet.inventory()
        if len(self.config.engines) == 1 and not self.config.engine_gpus:
            self._claims = {g.key: self.config.engines[0] for g in inventory}
            return
        self._claims, problems = resolve_claims(self.config.engine_gpus, inventory)
        for problem in problems:
            log.error("%s: its cost is not attributed to it", problem)

    @property
    def hourly_total(self) -> float:
        return sum(self.hourly.values())

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
        if status.up or not status.ever_failed:
            log.warning("%s target %s is down (%s): %s", collector, target, reason, message)
        status.up = False
        status.duration_seconds = duration
        status.errors[reason] = status.errors.get(reason, 0) + 1
        status.last_error = f"{reason}: {message}"
        status.readings = []

    def record_gpu_snapshot(self, snapshot: NvmlSnapshot, duration: float, now: float) -> None:
        status = self.status("nvml", "local")
        if not status.up and status.ever_failed:
            log.info("NVML answers again")
        status.up = True
        status.duration_seconds = duration
        status.last_error = ""
        if self.fleet.observe(snapshot.gpus, now):
            self._resolve_claims()

    def record_engine_readings(
        self, target: str, readings: list[EngineReading], duration: float
    ) -> None:
        status = self.status("vllm", target)
        if not status.up and status.ever_failed:
            log.info("vllm target %s is up again", target)
        status.up = True
        status.duration_seconds = duration
        status.last_error = ""
        status.readings = readings
        models = tuple(sorted({r.model for r in readings}))
        if models:
            status.models = models
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

    def owners(self) -> dict[str, tuple[str, ...]]:
        """Models each GPU's cost goes to; unclaimed GPUs go to UNCLAIMED."""
        owners = {}
        for key in self.fleet.gpus:
            target = self._claims.get(key) if self.per_model_split else None
            status = self.targets.get(("vllm", target)) if target else None
            owners[key] = (status.models if status else ()) or (UNCLAIMED,)
        return owners

    def _cost_shares(
        self,
        seconds: float,
        energy_by_gpu: Mapping[str, float],
        gpu_owners: Mapping[str, tuple[str, ...]],
    ) -> dict[str, dict[str, float]]:
        """The node's cost over `seconds` by owner and component."""
        gpu_hourly: dict[str, float] = {}
        energy: dict[str, float] = {}
        for key, owners in gpu_owners.items():
            share = 1.0 / len(owners)
            for owner in owners:
                gpu_hourly[owner] = (
                    gpu_hourly.get(owner, 0.0) + self.fleet.gpus[key].gpu.hourly * share
                )
                energy[owner] = energy.get(owner, 0.0) + energy_by_gpu.get(key, 0.0) * share
        if not gpu_hourly:
            served = {m for s in self.targets.values() for m in s.models}
            owners = served if self.per_model_split and served else {UNCLAIMED}
            gpu_hourly = dict.fromkeys(sorted(owners), 0.0)
        cost = self.config.cost
        return costmodel.allocate_cost(
            seconds,
            gpu_hourly,
            energy,
            cost.node_extra_per_hour,
            cost.overhead_ratio,
            cost.fixed_per_month,
        )

    def _energy_costs(self) -> tuple[dict[str, float], dict[str, float]]:
        """Energy cost per GPU since the last accrual, and its current hourly rate."""
        owned = self.config.cost.owned
        spent: dict[str, float] = {}
        hourly: dict[str, float] = {}
        for key, status in self.fleet.gpus.items():
            joules = status.take_unbilled_energy()
            if owned is None:
                continue
            spent[key] = costmodel.energy_cost(joules, owned.energy_price_per_kwh, owned.pue)
            power = status.reading.power_watts if status.reading is not None else None
            if power is not None and status.healthy:
                hourly[key] = costmodel.energy_cost(
                    power * costmodel.SECONDS_PER_HOUR, owned.energy_price_per_kwh, owned.pue
                )
        return spent, hourly

    def advance(self, now: float) -> None:
        """Accrue spend up to `now` (monotonic seconds) and record the totals."""
        energy_spent, energy_hourly = self._energy_costs()
        elapsed = max(now - self._last_time, 0.0) if self._last_time is not None else 0.0
        self._last_time = now
        self.gpu_owners = self.owners()
        for owner, parts in self._cost_shares(elapsed, energy_spent, self.gpu_owners).items():
            for component in self.components:
                self.spend[component] += parts[component]
            self.owner_spend[owner] = self.owner_spend.get(owner, 0.0) + sum(parts.values())
        self.hourly = dict.fromkeys(self.components, 0.0)
        self.owner_hourly = {}
        hourly_shares = self._cost_shares(
            costmodel.SECONDS_PER_HOUR, energy_hourly, self.gpu_owners
        )
        for owner, parts in hourly_shares.items():
            for component in self.components:
                self.hourly[component] += parts[component]
            self.owner_hourly[owner] = sum(parts.values())
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
                energy_spend=self.spend.get("energy", 0.0),
            )
        )
        if self.per_model_split:
            for model, totals in self.models.items():
                tokens = sum(totals.tokens.values())
                history = self.model_history.setdefault(model, History(self._retention))
                history.append(
                    Totals(
                        time=now,
                        spend=self.owner_spend.get(model, 0.0),
                        tokens=tokens,
                        api_equivalent=totals.api_equivalent,
                        unpriced_tokens=tokens if model in self.unpriced_models else 0.0,
                    )
                )
                if self.learned is not None:
                    self.learned.observe_model(model, history)
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

    def window(self, seconds: float) -> WindowFigures | None:
        delta = self.history.delta(seconds)
        if delta is None:
            return None
        capacity = self.capacity
        return window_figures(
            delta,
            capacity[0] if capacity else None,
            blended_api_cost_per_million(self.history.latest()),
        )

    def model_capacity(self, model: str) -> tuple[float, str] | None:
        """A model's capacity and its source: the node's when it is the only model, else
        its engines' configured capacities, else its own learned sustained peak."""
        if len(self.models) == 1 and model in self.models:
            return self.capacity
        urls = [s.target for s in self.targets.values() if model in s.models]
        if urls and all(u in self.config.engine_capacity for u in urls):
            return sum(self.config.engine_capacity[u] for u in urls), "configured"
        if self.learned is not None and self.learned.model_peaks.get(model):
            return self.learned.model_peaks[model], "learned"
        return None

    def model_window(self, model: str, seconds: float) -> WindowFigures | None:
        history = self.model_history.get(model)
        delta = history.delta(seconds) if history is not None else None
        if delta is None:
            return None
        capacity = self.model_capacity(model)
        return window_figures(
            delta,
            capacity[0] if capacity else None,
            blended_api_cost_per_million(history.latest()),
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
