"""The node's live state: what collectors read, turned into money counters.

The collection loop is the only writer; outputs and the HTTP server only read
what the last cycle left behind. The node ties the parts together: token
accounting (`tokens`), cost accrual (`accrual`), which engine owns which GPU,
the running totals behind the windowed figures, and learned capacity.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from llm_cost_exporter.accounting import costmodel
from llm_cost_exporter.accounting.accrual import CostAccrual, Downtime, PodOwner
from llm_cost_exporter.accounting.capacity import LearnedCapacity
from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.gpu_fleet import GpuFleet
from llm_cost_exporter.accounting.gpu_inventory import (
    UNCLAIMED,
    BilledGpu,
    build_inventory,
    resolve_claims,
)
from llm_cost_exporter.accounting.history import History, Totals
from llm_cost_exporter.accounting.model_limits import OVERFLOW, ModelLimits
from llm_cost_exporter.accounting.pod_attribution import GpuPods, PodAttribution, PodKey
from llm_cost_exporter.accounting.tokens import TokenLedger
from llm_cost_exporter.accounting.windows import (
    WindowFigures,
    blended_api_cost_per_million,
    window_figures,
)
from llm_cost_exporter.collectors.base import REASONS
from llm_cost_exporter.collectors.readings import (
    REJECT_REASONS,
    EngineReading,
    EngineReadings,
    GpuSnapshot,
    PodDevices,
)
from llm_cost_exporter.collectors.registry import ENGINE_TYPES
from llm_cost_exporter.config import Config

log = logging.getLogger(__name__)

MAX_POD_SERIES = 512
"""(model, namespace, pod) spend series kept at most: beyond, those of the pods gone
longest leave first (pods holding GPUs now never do)."""


@dataclass(frozen=True)
class EnginePod:
    """Who a discovered engine target is: its pod, and when its engine started."""

    namespace: str
    pod: str
    started_at: float | None = None
    """Wall time its engine's container started, where the pod says."""


@dataclass
class TargetStatus:
    """Health of one collector target, as `llmcost_collector_*` reports it."""

    collector: str
    target: str
    engine: bool
    """An engine (its readings are tokens), not the GPU collector."""
    up: bool = False
    duration_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    """Failed collections by reason, every reason from 0 so that Prometheus's
    increase() sees the first failure too."""
    restarts: int = 0
    dips: int = 0
    """Readings whose counters stepped back without evidence of a restart (ignored)."""
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))
    """Series of the engine's pages left out, by reason (an engine's only)."""
    rejecting: bool = False
    """The last page had rejected series (logged once until it has none)."""
    last_error: str = ""
    readings: list[EngineReading] = field(default_factory=list)
    models: tuple[str, ...] = ()
    """Models the target served when it last answered: the owners of its GPUs."""
    folded: set[tuple[str, str]] = field(default_factory=set)
    """(rank, model) of its last reading counted as OVERFLOW (see model_limits)."""
    pod: EnginePod | None = None
    """The pod of a discovered engine target (kubernetes.discovery)."""

    @property
    def ever_failed(self) -> bool:
        return any(self.errors.values())

    def to_state(self) -> dict[str, object]:
        return {
            "collector": self.collector,
            "target": self.target,
            "errors": dict(self.errors),
            "restarts": self.restarts,
            "dips": self.dips,
            "rejected": dict(self.rejected),
            "models": list(self.models),
        }

    def restore(self, saved: TargetStatus) -> None:
        """Resume the counters (and GPU owners) of a target seen before a restart."""
        self.errors.update(saved.errors)
        self.rejected.update(saved.rejected)
        self.restarts, self.dips, self.models = saved.restarts, saved.dips, saved.models


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
        declared = [(g.model, g.count) for g in config.cost.gpus]
        hourly_by_key = config.cost.gpu_hourly_by_key
        if gpus is None:
            gpus = build_inventory([], declared, hourly_by_key, nvml_available=False)
        self.fleet = GpuFleet(gpus, hourly_by_key, declared)
        self._wall_clock = wall_clock
        self.started_wall = wall_clock()
        self.tokens = TokenLedger(model_prices, default_price, self.started_wall)
        self.accrual = CostAccrual(config.cost, self.fleet)
        self.targets: dict[tuple[str, str], TargetStatus] = {}
        self._last_time: float | None = None
        windows = config.window_seconds()
        self.windows = dict(sorted(windows.items(), key=lambda item: item[1]))
        self._retention = max([*windows.values(), config.capacity.learn_window])
        self.history = History(self._retention)
        self.model_history: dict[str, History] = {}
        limits = config.limits
        self.model_limits = ModelLimits(
            limits.models_per_engine, limits.models_per_node, model_prices.keys()
        )
        self.model_seen: dict[str, float] = {}
        """Live models: those an engine served within limits.model_idle_timeout, by when
        (monotonic) one last did. Only they have per-model gauges and history."""
        self.learned = (
            LearnedCapacity(config.capacity.learn_window) if config.capacity.learn else None
        )
        self.downtime: Downtime | None = None
        """Set when resumed from a state file: billed by the first cycle."""
        self.downtime_billed_seconds = 0.0
        self.downtime_billed_cost = 0.0
        self.resumed_targets: dict[tuple[str, str], TargetStatus] = {}
        """Counters of targets saved before a restart, resumed when each reports."""
        self.engine_pods: dict[str, EnginePod] = {}
        """The pod of each discovered engine target (see track_engines)."""
        self.discovery_skipped: dict[str, int] | None = None
        """Candidate engine pods not read, by reason; None without discovery."""
        self.day = self._utc_day()
        """The UTC day `spend_at_day_start` belongs to."""
        self.spend_at_day_start = 0.0
        self.day_started_wall = self.started_wall
        engines = config.engines
        self._engine_capacity = {
            e.url: e.capacity_tokens_per_second
            for e in engines
            if e.capacity_tokens_per_second is not None
        }
        """Configured capacity of the engines that have one, by target URL."""
        self.discovering = config.kubernetes.discovery.enabled
        self.per_model_split = (len(engines) == 1 and not self.discovering) or all(
            e.gpus is not None for e in engines
        )
        """Per-model cost is meaningful: one engine (and no others to discover), or every
        configured engine names its GPUs (discovered ones are known by their pods)."""
        if not self.per_model_split:
            log.warning(
                "%d engines and not every one lists its GPUs (engines[].gpus): "
                "per-model cost is not computed, the node's GPUs count as unclaimed",
                len(engines),
            )
        self._claims: dict[str, str] = {}
        self._resolve_claims()
        self.gpu_owners: dict[str, tuple[str, ...]] = self.owners()
        """Who each GPU's cost went to in the last cycle (see `owners`)."""
        self.pods = PodAttribution()
        self.gpu_pods: dict[str, GpuPods] | None = None
        """Which pods held each GPU in the last cycle; None while the kubelet never answered."""
        self.pod_seen: dict[PodOwner, float] = {}
        """When (monotonic) each (model, namespace, pod) last held GPUs: its spend series
        ends limits.model_idle_timeout later."""
        self.accrual.reprice(self.gpu_owners, self._idle_owners())

    def _resolve_claims(self) -> None:
        """Which engine target owns each GPU of the inventory."""
        inventory = self.fleet.inventory()
        engines = self.config.engines
        if len(engines) == 1 and engines[0].gpus is None and not self.discovering:
            self._claims = {g.key: engines[0].url for g in inventory}
            return
        claims = {e.url: e.gpus for e in engines if e.gpus is not None}
        self._claims, problems = resolve_claims(claims, inventory)
        for problem in problems:
            log.error("%s: its cost is not attributed to it", problem)

    # --- collector results ----------------------------------------------------

    def status(self, collector: str, target: str, engine: bool) -> TargetStatus:
        key = (collector, target)
        if key not in self.targets:
            self.targets[key] = TargetStatus(collector, target, engine)
            self.targets[key].pod = self.engine_pods.get(target) if engine else None
            if key in self.resumed_targets:
                self.targets[key].restore(self.resumed_targets.pop(key))
        return self.targets[key]

    def _engine_status(self, target: str) -> TargetStatus | None:
        return next((s for s in self.targets.values() if s.engine and s.target == target), None)

    def record_failure(
        self,
        collector: str,
        target: str,
        reason: str,
        message: str,
        duration: float,
        *,
        engine: bool,
    ) -> None:
        status = self.status(collector, target, engine)
        if status.up or not status.ever_failed:
            log.warning("%s target %s is down (%s): %s", collector, target, reason, message)
        status.up = False
        status.duration_seconds = duration
        status.errors[reason] = status.errors.get(reason, 0) + 1
        status.last_error = f"{reason}: {message}"
        status.readings = []

    def record_source_up(self, collector: str, target: str, duration: float) -> None:
        """A source other than an engine or the GPUs (the pod watch, the kubelet) answers."""
        status = self.status(collector, target, engine=False)
        if not status.up and status.ever_failed:
            log.info("%s target %s answers again", collector, target)
        status.up = True
        status.duration_seconds = duration
        status.last_error = ""

    def track_engines(
        self,
        live: Collection[tuple[str, str]],
        pods: Mapping[str, EnginePod],
        complete: bool,
    ) -> None:
        """The engine targets read this cycle, (collector, target), and the pods of the
        discovered ones. A target no longer read is forgotten: its series go, its raw
        counters are dropped (its tokens stay in the per-model totals). `complete` says
        `live` is the whole set (the pod watch has listed): then what a state file
        resumed for targets that are not live is dropped too."""
        self.engine_pods = dict(pods)
        targets = {target for _, target in live}
        for key, status in list(self.targets.items()):
            if not status.engine:
                continue
            if key not in live:
                del self.targets[key]
                if status.target not in targets:
                    self._forget_engine(status.target)
            else:
                status.pod = self.engine_pods.get(status.target)
        if not complete:
            return
        for key in [k for k in self.resumed_targets if k[0] in ENGINE_TYPES]:
            if key[1] not in targets:
                del self.resumed_targets[key]
        for target in self.tokens.targets() - targets:
            self._forget_engine(target)

    def _forget_engine(self, target: str) -> None:
        self.tokens.forget_target(target, self._wall_clock())
        self.model_limits.forget(target)

    def record_gpu_snapshot(
        self, collector: str, target: str, snapshot: GpuSnapshot, duration: float, now: float
    ) -> None:
        status = self.status(collector, target, engine=False)
        if not status.up and status.ever_failed:
            log.info("%s answers again", collector)
        status.up = True
        status.duration_seconds = duration
        status.last_error = ""
        if self.fleet.observe(snapshot.gpus, now):
            self._resolve_claims()

    def record_pod_devices(
        self, collector: str, target: str, devices: PodDevices, duration: float, now: float
    ) -> None:
        """The kubelet's answer: which pods hold which GPUs from now on."""
        self.record_source_up(collector, target, duration)
        self.pods.observe(devices, now)

    def record_engine_readings(
        self, collector: str, target: str, readings: list[EngineReading], duration: float
    ) -> None:
        """`readings` may be EngineReadings: its rejected series are counted too."""
        status = self.status(collector, target, engine=True)
        if not status.up and status.ever_failed:
            log.info("%s target %s is up again", collector, target)
        if isinstance(readings, EngineReadings):
            self._count_rejected(status, readings)
        status.up = True
        status.duration_seconds = duration
        status.last_error = ""
        exported = self.model_limits.names(target, (r.model for r in readings), self.tokens.models)
        folded = {(r.engine, r.model) for r in readings if exported[r.model] == OVERFLOW}
        self.tokens.forget(target, status.folded - folded)
        status.folded = folded
        status.readings = [
            r if exported[r.model] == r.model else replace(r, model=exported[r.model])
            for r in readings
        ]
        models = tuple(sorted(set(exported.values())))
        if models:
            status.models = models
        wall = self._wall_clock()
        restarted: set[str] = set()
        dipped: set[str] = set()
        pod = self.engine_pods.get(target)
        started_hint = pod.started_at if pod is not None else None
        for reading in readings:
            observation = self.tokens.add(
                target, reading, exported[reading.model], wall, started_hint
            )
            if observation.restarted:
                restarted.add(reading.engine)
            if observation.anomaly:
                dipped.add(reading.engine)
        for rank in sorted(restarted):
            status.restarts += 1
            log.info("engine %s (rank %r) restarted: counters reset", target, rank)
        for rank in sorted(dipped):
            if not status.dips:
                log.warning(
                    "engine %s (rank %r): a token counter stepped back without a restart "
                    "signal; ignored, and counted in llmcost_engine_dips_total from now on",
                    target,
                    rank,
                )
            status.dips += 1

    @staticmethod
    def _count_rejected(status: TargetStatus, readings: EngineReadings) -> None:
        """Count the series a page had rejected; log when that starts and when it stops."""
        if readings.rejected and not status.rejecting:
            log.warning(
                "%s target %s: %d series rejected, e.g. %s",
                status.collector,
                status.target,
                sum(readings.rejected.values()),
                readings.first_rejected,
            )
        elif status.rejecting and not readings.rejected:
            log.info("%s target %s: no series rejected any more", status.collector, status.target)
        status.rejecting = bool(readings.rejected)
        for reason, count in readings.rejected.items():
            status.rejected[reason] += count

    # --- time -----------------------------------------------------------------

    @staticmethod
    def _utc_day(when: float | None = None) -> str:
        return datetime.fromtimestamp(when or time.time(), timezone.utc).strftime("%Y-%m-%d")

    def wall_now(self) -> float:
        """Wall time on the node's clock (the state file's saved_at uses it too)."""
        return self._wall_clock()

    def owners(
        self, by_pod: Mapping[str, Mapping[PodKey, tuple[str, ...]]] | None = None
    ) -> dict[str, tuple[str, ...]]:
        """Models each GPU's cost goes to: those of the engine that engines[].gpus says
        runs on it, else those of the engine pods `by_pod` (pod_claims) says hold it;
        unclaimed GPUs go to UNCLAIMED."""
        owners = {}
        for key in self.fleet.gpus:
            target = self._claims.get(key) if self.per_model_split else None
            status = self._engine_status(target) if target else None
            if status is None and by_pod and key in by_pod:
                owners[key] = tuple(dict.fromkeys(m for ms in by_pod[key].values() for m in ms))
            else:
                owners[key] = (status.models if status else ()) or (UNCLAIMED,)
        return owners

    def pod_claims(self) -> dict[str, dict[PodKey, tuple[str, ...]]]:
        """GPUs that no configured engine claims but the kubelet says a discovered
        engine's pod holds: for each pod holding one, the models its engines serve
        (UNCLAIMED for a pod that runs no engine, or none that answered)."""
        if not self.gpu_pods or not self.engine_pods:
            return {}
        served: dict[PodKey, list[str]] = {}
        for target, pod in self.engine_pods.items():
            status = self._engine_status(target)
            served.setdefault((pod.namespace, pod.pod), []).extend(status.models if status else ())
        claims = {}
        for key, held in self.gpu_pods.items():
            if self.per_model_split and key in self._claims:
                continue
            if any(pod in served for pod in held.shares):
                claims[key] = {
                    pod: tuple(dict.fromkeys(served.get(pod, ()))) or (UNCLAIMED,)
                    for pod in held.shares
                }
        return claims

    def _models_on_unknown_gpus(self) -> set[str]:
        """Models only discovered engines serve, while the kubelet names no pod's GPUs:
        which GPUs they run on is unknown, so their spend would read $0 and they get no
        window figures (their tokens still count)."""
        if not self.discovering or self.gpu_pods is not None:
            return set()
        claiming = set(self._claims.values()) if self.per_model_split else set()
        served: dict[bool, set[str]] = {True: set(), False: set()}
        for status in self.targets.values():
            if status.engine:
                served[status.target in claiming].update(status.models)
        return served[False] - served[True]

    def _idle_owners(self) -> list[str]:
        """Who carries the node's cost when there is no GPU to split it by."""
        served = {m for s in self.targets.values() for m in s.models}
        return sorted(served if self.per_model_split and served else {UNCLAIMED})

    def _track_live_models(self, now: float) -> None:
        """Mark the models engines serve as seen; drop the live state of idle ones."""
        for status in self.targets.values():
            for model in status.models:
                self.model_seen[model] = now
        timeout = self.config.limits.model_idle_timeout
        for model in [m for m, seen in self.model_seen.items() if now - seen >= timeout]:
            del self.model_seen[model]
            self.model_history.pop(model, None)

    def _track_pods(self, now: float) -> None:
        """Mark the pods holding GPUs as seen; end the spend series of pods gone for
        limits.model_idle_timeout (or the oldest gone beyond MAX_POD_SERIES)."""
        current = self.accrual.pod_hourly
        for owner in current:
            self.pod_seen[owner] = now
        for owner in self.accrual.pod_spend:
            self.pod_seen.setdefault(owner, now)  # resumed from the state file
        timeout = self.config.limits.model_idle_timeout
        gone = [
            o for o, seen in self.pod_seen.items() if o not in current and now - seen >= timeout
        ]
        excess = len(self.pod_seen) - len(gone) - MAX_POD_SERIES
        if excess > 0:
            idle = sorted(
                (seen, owner)
                for owner, seen in self.pod_seen.items()
                if owner not in current and owner not in gone
            )
            gone += [owner for _, owner in idle[:excess]]
        for owner in gone:
            del self.pod_seen[owner]
        self.accrual.forget_pods(gone)

    def advance(self, now: float) -> None:
        """Accrue spend up to `now` (monotonic seconds) and record the totals."""
        elapsed = max(now - self._last_time, 0.0) if self._last_time is not None else 0.0
        self._last_time = now
        wall = self._wall_clock()
        if self.downtime is not None:
            self._bill_downtime(self.downtime, wall)
            self.downtime = None
        self.gpu_pods = self.pods.split(self.fleet.gpus, now)
        pod_claims = self.pod_claims()
        self.gpu_owners = self.owners(pod_claims)
        self._track_live_models(now)
        shares = None
        if self.gpu_pods is not None:
            shares = {key: pods.shares for key, pods in self.gpu_pods.items()}
        self.accrual.advance(elapsed, self.gpu_owners, self._idle_owners(), shares, pod_claims)
        self._track_pods(now)
        day = self._utc_day(wall)
        if day != self.day:
            self.day = day
            self.spend_at_day_start = self.accrual.spend_total
            self.day_started_wall = wall
        tokens = self.tokens
        self.history.append(
            Totals(
                time=now,
                spend=self.accrual.spend_total,
                tokens=tokens.tokens_total,
                api_equivalent=tokens.api_equivalent_total,
                unpriced_tokens=tokens.unpriced_tokens,
                energy_spend=self.accrual.spend.get("energy", 0.0),
            )
        )
        if self.per_model_split:
            unknown = self._models_on_unknown_gpus()
            for model in self.model_seen:
                totals = tokens.models.get(model)
                if totals is None:
                    continue
                if model in unknown:
                    self.model_history.pop(model, None)
                    continue
                history = self.model_history.setdefault(model, History(self._retention))
                history.append(
                    Totals(
                        time=now,
                        spend=self.accrual.owner_spend.get(model, 0.0),
                        tokens=totals.tokens_total,
                        api_equivalent=totals.api_equivalent,
                        unpriced_tokens=totals.tokens_total if model in tokens.unpriced else 0.0,
                    )
                )
                if self.learned is not None:
                    self.learned.observe_model(model, history)
        if self.learned is not None:
            self.learned.observe(self.history)

    def _bill_downtime(self, downtime: Downtime, wall: float) -> None:
        """Bill the time the exporter was down at the rates it last saw, in one log line."""
        max_gap = self.config.state_max_gap
        gap = wall - downtime.saved_at
        seconds = costmodel.downtime_seconds(downtime.saved_at, wall, max_gap)
        cost = self.accrual.bill_downtime(
            seconds, downtime.hourly, downtime.owner_hourly, downtime.pod_hourly
        )
        self.downtime_billed_seconds += seconds
        self.downtime_billed_cost += cost
        currency = self.config.currency
        billed = (
            f"billed {seconds:.1f}s of downtime at {downtime.hourly_total:.4f} {currency}/h: "
            f"{cost:.4f} {currency}"
        )
        if gap < 0:
            log.warning(
                "resumed the counters of a state file saved %.1fs in the future (the clock "
                "went back): no downtime billed",
                -gap,
            )
        elif gap > max_gap:
            log.warning(
                "resumed the counters of a state file saved %.0fs ago, more than state_max_gap "
                "(%.0fs): %s; engines' tokens served meanwhile are counted",
                gap,
                max_gap,
                billed,
            )
        else:
            log.info(
                "resumed the counters of the state file saved %.1fs ago: %s; engines' tokens "
                "served meanwhile are counted",
                gap,
                billed,
            )

    # --- derived figures ------------------------------------------------------

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
        if len(self.model_seen) == 1 and model in self.model_seen:
            return self.capacity
        configured = self._engine_capacity
        urls = [s.target for s in self.targets.values() if s.engine and model in s.models]
        if urls and all(u in configured for u in urls):
            return sum(configured[u] for u in urls), "configured"
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
