"""A month of one exporter node's metrics, with the exact truth behind them.

Reports computed from Prometheus can only be checked against numbers known
independently of Prometheus. This module builds both from one source: every
series accrues at a rate that is constant within each hour, so the counters
are sums of the same hourly amounts the :class:`Truth` adds up, and any
disagreement a test finds is Prometheus's (or the report's), not rounding here.

The month contains what a real one does: an exporter restart (counters are
process-lifetime, so they fall back to 0), an exporter outage (no samples at
all, and the process that comes back starts from 0 too), an engine restart
(only ``llmcost_engine_restarts_total`` moves: the exporter keeps the money and
token counters monotonic) and a GPU price change, which the current-cost gauges
follow. Events sit on hour boundaries, and the step divides an hour, so every
hourly ``increase()`` window starts and ends on a sample. A restart at instant
``X`` shows in the counters from the sample after ``X``, so an ``increase()``
over ``[X, X + 1h]`` is the hour it belongs to; a gauge shows what is in force
at its sample time, the new GPU price from the change instant on. Pure and
deterministic: no clock, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

HOUR = 3600
HOURS_PER_MONTH = 730
"""The design's month (8760 h / 12): projections are per month of this length."""
KINDS = ("prompt", "cached_prompt", "generation")
COMPONENTS = ("gpu", "overhead")
ENGINE_TARGET = "http://127.0.0.1:8000/metrics"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class ModelSpec:
    """A served model: the GPUs it holds (its share of spend) and its share of traffic."""

    name: str
    gpus: int
    token_share: float
    # Fractions of the model's tokens that are prompt, cached prompt, generation.
    mix: tuple[float, float, float]


@dataclass(frozen=True)
class Scenario:
    """Everything that shapes the month; the defaults are the reference month."""

    start: datetime = _utc("2026-10-01T00:00:00")
    end: datetime = _utc("2026-11-01T00:00:00")
    step_seconds: int = 60
    job: str = "llm-cost"
    instance: str = "gpu-node-1:9478"
    version: str = "0.1.0"
    gpus: int = 8
    gpu_price_before: float = 2.00
    gpu_price_after: float = 1.60
    price_change_at: datetime = _utc("2026-10-16T00:00:00")
    overhead_ratio: float = 0.30
    # The exporter process running at the start of the month began this long before it,
    # so the counters do not start at 0 and a month cannot be read off a counter value.
    running_before_start: timedelta = timedelta(days=2)
    # Samples go on this long beyond both ends of the month, as a running exporter's do,
    # so an hourly window that straddles a month boundary finds data on both sides.
    margin: timedelta = timedelta(hours=2)
    # The old process is scraped at this instant for the last time; the new one counts
    # from it, so a restart itself loses nothing.
    restart_at: datetime = _utc("2026-10-09T15:00:00")
    # No samples strictly inside; the last old sample is at the start, the new process
    # counts from the end (a Wednesday, business hours: the data misses busy hours).
    outage_start: datetime = _utc("2026-10-21T10:00:00")
    outage_end: datetime = _utc("2026-10-21T14:00:00")
    # The engine behind the exporter restarts (a Tuesday night); the exporter process
    # counts it, and only that counter moves.
    engine_restart_at: datetime = _utc("2026-10-06T03:00:00")
    models: tuple[ModelSpec, ...] = (
        ModelSpec("llama-3.1-70b-instruct", gpus=6, token_share=0.75, mix=(0.60, 0.25, 0.15)),
        ModelSpec("qwen2.5-7b-instruct", gpus=2, token_share=0.25, mix=(0.70, 0.10, 0.20)),
    )
    # Node tokens in the busiest hour of a weekday, before the day-to-day variation.
    peak_tokens_per_hour: float = 40e6
    trough_ratio: float = 0.1
    api_prices: tuple[tuple[str, float], ...] = (
        ("prompt", 0.80),
        ("cached_prompt", 0.08),
        ("generation", 4.00),
    )
    capacity_tokens_per_second: float = 20000.0
    projected_utilization: float = 0.5
    # The token mix the plan assumed: the traffic above is prompt-heavier than this.
    projected_token_mix: tuple[tuple[str, float], ...] = (
        ("prompt", 0.55),
        ("cached_prompt", 0.15),
        ("generation", 0.30),
    )

    def __post_init__(self) -> None:
        if HOUR % self.step_seconds:
            raise ValueError("step_seconds must divide an hour")
        events = ("price_change_at", "restart_at", "outage_start", "outage_end")
        for name in ("start", "end", *events, "engine_restart_at"):
            if _epoch(getattr(self, name)) % HOUR:
                raise ValueError(f"{name} must be on an hour boundary")
        if not self.start < self.restart_at < self.outage_start < self.outage_end < self.end:
            raise ValueError("expected start < restart < outage start < outage end < end")
        if not self.start <= self.engine_restart_at < self.end:
            raise ValueError("engine_restart_at must be inside the period")
        if self.outage_start <= self.engine_restart_at < self.outage_end:
            # No exporter is running to see it (at outage_start itself, the last sample
            # of the old process is taken before it).
            raise ValueError("engine_restart_at must not be inside the outage")
        if sum(m.gpus for m in self.models) != self.gpus:
            raise ValueError("the models' GPUs must add up to the node's")
        mix = dict(self.projected_token_mix)
        if not set(mix) <= set(KINDS) or not all(0 <= v <= 1 for v in mix.values()):
            raise ValueError(f"projected_token_mix: shares of {', '.join(KINDS)} in [0, 1]")
        if abs(math.fsum(mix.values()) - 1.0) > 1e-9:
            raise ValueError("projected_token_mix: the shares must sum to 1")

    @property
    def price_of(self) -> dict[str, float]:
        return dict(self.api_prices)

    @property
    def token_mix(self) -> dict[str, float]:
        """The planned share of every kind, 0 for kinds the plan leaves out."""
        given = dict(self.projected_token_mix)
        return {kind: given.get(kind, 0.0) for kind in KINDS}

    def gpu_price(self, when: int) -> float:
        """The GPU price in force at ``when``: the new one from the change instant on."""
        return (
            self.gpu_price_before if when < _epoch(self.price_change_at) else self.gpu_price_after
        )

    def hourly_cost(self, when: int) -> dict[str, float]:
        """The node's cost per hour by component at ``when`` (``llmcost_hourly_cost``)."""
        gpu = self.gpus * self.gpu_price(when)
        return {"gpu": gpu, "overhead": gpu * self.overhead_ratio}

    def model_hourly_cost(self, when: int) -> dict[str, float]:
        """Each model's share of the node's hourly cost at ``when``, by its GPUs."""
        node = self.gpus * self.gpu_price(when) * (1.0 + self.overhead_ratio)
        return {m.name: node * m.gpus / self.gpus for m in self.models}

    def model_capacity_tokens_per_second(self) -> dict[str, float]:
        """Each model's configured capacity: the node's, split by GPUs held."""
        return {m.name: self.capacity_tokens_per_second * m.gpus / self.gpus for m in self.models}


def _epoch(when: datetime) -> int:
    return int(when.timestamp())


def diurnal_level(hour_start: int, trough: float) -> float:
    """Load relative to a weekday peak: B2B traffic, busy 9-18 on weekdays (UTC as local).

    A sine bump over 07:00-19:00 lifts the night trough to the peak on weekdays
    and only a little at weekends; a slow deterministic wobble varies the days.
    """
    when = datetime.fromtimestamp(hour_start, timezone.utc)
    mid = when.hour + 0.5
    bump = max(0.0, math.sin(math.pi * (mid - 7.0) / 12.0)) if 7.0 <= mid <= 19.0 else 0.0
    weekend = when.weekday() >= 5
    lift = (0.12 if weekend else 1.0) * bump**1.5
    wobble = 1.0 + 0.06 * math.sin(2.0 * math.pi * (hour_start // 86400) / 6.7)
    return (trough + (1.0 - trough) * lift) * wobble


@dataclass(frozen=True)
class HourTruth:
    """What one hour of the month really cost and served."""

    start: int
    spend_by_component: dict[str, float]
    spend_by_model: dict[str, float]
    tokens: dict[tuple[str, str], int]
    api_equivalent: dict[str, float]
    observed: bool  # False while the exporter was out: the data cannot show this hour
    capacity_tokens: float = 0.0  # what the node could have served in the hour
    capacity_tokens_by_model: dict[str, float] = field(default_factory=dict)

    @property
    def spend(self) -> float:
        """Also the node's hourly cost in this hour: prices change only on the hour."""
        return math.fsum(self.spend_by_component.values())

    @property
    def api_equivalent_total(self) -> float:
        return math.fsum(self.api_equivalent.values())

    @property
    def tokens_total(self) -> int:
        return sum(self.tokens.values())

    @property
    def below_breakeven(self) -> bool:
        """The hour cost more than the API would have charged for its tokens."""
        return self.spend > self.api_equivalent_total


@dataclass(frozen=True)
class Totals:
    """Sums over a set of hours (the whole month, or the hours the data can see)."""

    hours: int
    spend_by_component: dict[str, float]
    spend_by_model: dict[str, float]
    tokens: dict[tuple[str, str], int]
    api_equivalent: dict[str, float]
    hours_below_breakeven: int
    capacity_tokens: float = 0.0
    capacity_tokens_by_model: dict[str, float] = field(default_factory=dict)

    @property
    def spend(self) -> float:
        return math.fsum(self.spend_by_component.values())

    @property
    def average_hourly_cost(self) -> float:
        return self.spend / self.hours

    @property
    def tokens_total(self) -> int:
        return sum(self.tokens.values())

    @property
    def utilization(self) -> float:
        """Tokens served over what the node could have served in these hours."""
        return self.tokens_total / self.capacity_tokens

    def model_utilization(self) -> dict[str, float]:
        by_model = self.tokens_by_model()
        return {m: by_model[m] / c for m, c in self.capacity_tokens_by_model.items()}

    def token_share(self) -> dict[str, float]:
        """The realized mix: each kind's share of the tokens."""
        total = self.tokens_total
        return {kind: n / total for kind, n in self.tokens_by_kind().items()}

    def tokens_by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_, kind), n in self.tokens.items():
            out[kind] = out.get(kind, 0) + n
        return out

    def tokens_by_model(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (model, _), n in self.tokens.items():
            out[model] = out.get(model, 0) + n
        return out

    @property
    def api_equivalent_total(self) -> float:
        return math.fsum(self.api_equivalent.values())

    @property
    def cost_per_million_tokens(self) -> float:
        return self.spend / self.tokens_total * 1e6

    @property
    def api_equivalent_per_million_tokens(self) -> float:
        return self.api_equivalent_total / self.tokens_total * 1e6

    @classmethod
    def of(cls, hours: list[HourTruth]) -> Totals:
        def fsum_keys(attr: str) -> dict:
            keys = getattr(hours[0], attr).keys()
            return {k: math.fsum(getattr(h, attr)[k] for h in hours) for k in keys}

        return cls(
            hours=len(hours),
            spend_by_component=fsum_keys("spend_by_component"),
            spend_by_model=fsum_keys("spend_by_model"),
            tokens={k: sum(h.tokens[k] for h in hours) for k in hours[0].tokens},
            api_equivalent=fsum_keys("api_equivalent"),
            hours_below_breakeven=sum(h.below_breakeven for h in hours),
            capacity_tokens=math.fsum(h.capacity_tokens for h in hours),
            capacity_tokens_by_model=fsum_keys("capacity_tokens_by_model"),
        )


@dataclass(frozen=True)
class Plan:
    """What the self-hosting decision assumed, as the ``llmcost_projected_*`` gauges
    carry it: per design month of 730 hours, at the GPU price known at decision time."""

    utilization: float
    tokens_per_month: float
    spend_per_month: float
    token_mix: dict[str, float]
    api_prices: dict[str, float]

    @property
    def cost_per_million_tokens(self) -> float:
        return self.spend_per_month / self.tokens_per_month * 1e6

    @property
    def tokens_per_hour(self) -> float:
        return self.tokens_per_month / HOURS_PER_MONTH

    @property
    def hourly_cost(self) -> float:
        return self.spend_per_month / HOURS_PER_MONTH

    def tokens_for(self, hours: float) -> float:
        """Planned tokens over ``hours`` (e.g. the observable hours of the month)."""
        return self.tokens_per_hour * hours

    def spend_for(self, hours: float) -> float:
        return self.hourly_cost * hours

    @property
    def api_equivalent_per_million_tokens(self) -> float:
        """The planned mix at the scenario's API prices (the same for every model)."""
        return math.fsum(share * self.api_prices[k] for k, share in self.token_mix.items())


@dataclass(frozen=True)
class Truth:
    """Exact figures for the month, as spent (``true``) and as the data can show them."""

    scenario: Scenario
    hourly: tuple[HourTruth, ...]
    true: Totals
    observable: Totals
    outage: tuple[int, int]
    restart_at: int
    price_change_at: int
    engine_restart_at: int  # llmcost_engine_restarts_total rises by 1 in the hour it starts
    plan: Plan
    capacity_tokens_per_hour: float  # the node's, constant over the month
    unobserved_spend_estimate: float  # outage hours at the hourly cost last seen before it
    samples_per_series: int = field(default=0)

    @property
    def true_spend(self) -> float:
        return self.true.spend

    @property
    def observable_spend(self) -> float:
        return self.observable.spend

    @property
    def period_hours(self) -> int:
        return self.true.hours

    @property
    def observable_hours(self) -> int:
        return self.observable.hours

    @property
    def outage_hours(self) -> int:
        return (self.outage[1] - self.outage[0]) // HOUR

    def observable_by_day(self) -> dict[str, Totals]:
        """The observable hours of each UTC day (YYYY-MM-DD), as a daily table shows them."""
        days: dict[str, list[HourTruth]] = {}
        for h in self.hourly:
            if h.observed:
                day = datetime.fromtimestamp(h.start, timezone.utc).date().isoformat()
                days.setdefault(day, []).append(h)
        return {day: Totals.of(hours) for day, hours in days.items()}

    @property
    def start(self) -> int:
        return _epoch(self.scenario.start)

    @property
    def end(self) -> int:
        return _epoch(self.scenario.end)


def hour_truth(sc: Scenario, hour_start: int) -> HourTruth:
    """One hour's spend and traffic; tokens are whole numbers, as an engine counts them."""
    components = sc.hourly_cost(hour_start)
    by_model = sc.model_hourly_cost(hour_start)  # a constant rate: an hour costs its rate
    node_tokens = round(sc.peak_tokens_per_hour * diurnal_level(hour_start, sc.trough_ratio))
    prices = sc.price_of
    tokens: dict[tuple[str, str], int] = {}
    api: dict[str, float] = {}
    for m in sc.models:
        total = round(node_tokens * m.token_share)
        prompt = round(total * m.mix[0])
        cached = round(total * m.mix[1])
        split = {"prompt": prompt, "cached_prompt": cached, "generation": total - prompt - cached}
        for kind in KINDS:
            tokens[(m.name, kind)] = split[kind]
        api[m.name] = math.fsum(split[k] * prices[k] for k in KINDS) / 1e6
    observed = not (_epoch(sc.outage_start) <= hour_start < _epoch(sc.outage_end))
    capacity = {m: tps * HOUR for m, tps in sc.model_capacity_tokens_per_second().items()}
    return HourTruth(
        hour_start,
        components,
        by_model,
        tokens,
        api,
        observed,
        capacity_tokens=sc.capacity_tokens_per_second * HOUR,
        capacity_tokens_by_model=capacity,
    )


def plan_of(sc: Scenario) -> Plan:
    """The decision's figures: planned utilization of the node's capacity, at the old price."""
    return Plan(
        utilization=sc.projected_utilization,
        tokens_per_month=sc.projected_utilization
        * sc.capacity_tokens_per_second
        * HOURS_PER_MONTH
        * HOUR,
        spend_per_month=sc.gpus * sc.gpu_price_before * (1 + sc.overhead_ratio) * HOURS_PER_MONTH,
        token_mix=sc.token_mix,
        api_prices=sc.price_of,
    )


def _labels(sc: Scenario, extra: dict[str, str]) -> str:
    pairs = {"job": sc.job, "instance": sc.instance, **extra}
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


def _num(value: float) -> str:
    """Shortest text that parses back to the same float."""
    return repr(float(value))


def generate(scenario: Scenario | None = None) -> tuple[str, Truth]:
    """The node's OpenMetrics exposition over the period, and the truth behind it."""
    sc = scenario or Scenario()
    start, end, step = _epoch(sc.start), _epoch(sc.end), sc.step_seconds
    restart, price_change = _epoch(sc.restart_at), _epoch(sc.price_change_at)
    out_start, out_end = _epoch(sc.outage_start), _epoch(sc.outage_end)
    first_hour = start - int(sc.running_before_start.total_seconds()) // HOUR * HOUR
    margin = int(sc.margin.total_seconds())
    hours = [hour_truth(sc, h) for h in range(first_hour, end + margin, HOUR)]
    in_period = [h for h in hours if start <= h.start < end]

    # Each counter series as (family, labels, amount accrued in each hour).
    counters: list[tuple[str, dict[str, str], list[float]]] = []
    for comp in COMPONENTS:
        counters.append(
            ("llmcost_cost", {"component": comp}, [h.spend_by_component[comp] for h in hours])
        )
    for m in sc.models:
        for kind in KINDS:
            counters.append(
                (
                    "llmcost_tokens",
                    {"model": m.name, "kind": kind},
                    [float(h.tokens[(m.name, kind)]) for h in hours],
                )
            )
    for m in sc.models:
        counters.append(
            (
                "llmcost_api_equivalent_cost",
                {"model": m.name},
                [h.api_equivalent[m.name] for h in hours],
            )
        )
    for m in sc.models:
        counters.append(
            ("llmcost_model_cost", {"model": m.name}, [h.spend_by_model[m.name] for h in hours])
        )

    plan = plan_of(sc)
    times = [
        t for t in range(start - margin, end + margin + 1, step) if not (out_start < t < out_end)
    ]

    def process_start(t: int) -> int:
        """When the process that answered the scrape at ``t`` began counting."""
        if t <= restart:
            return first_hour
        if t <= out_start:
            return restart
        return out_end

    lines: list[str] = []
    for family in dict.fromkeys(name for name, _, _ in counters):
        lines.append(f"# TYPE {family} counter")
        for name, labels, amounts in counters:
            if name != family:
                continue
            prefix = f"{name}_total{_labels(sc, labels)} "
            lines.extend(
                f"{prefix}{_num(v)} {t}"
                for t, v in _counter_values(amounts, first_hour, times, process_start)
            )
    # Engine restarts: counted by the exporter process that sees them, from its next
    # sample on; every process starts at 0, and no other counter moves.
    engine_restart = _epoch(sc.engine_restart_at)
    lines.append("# TYPE llmcost_engine_restarts counter")
    engine = _labels(sc, {"collector": "vllm", "target": ENGINE_TARGET})
    prefix = f"llmcost_engine_restarts_total{engine} "
    lines.extend(
        f"{prefix}{_num(1.0 if process_start(t) <= engine_restart < t else 0.0)} {t}" for t in times
    )
    gauges = _gauges(sc, plan)
    for family in dict.fromkeys(name for name, _, _ in gauges):
        lines.append(f"# TYPE {family} gauge")
        for name, labels, value_at in gauges:
            if name == family:
                prefix = f"{name}{_labels(sc, labels)} "
                lines.extend(f"{prefix}{_num(value_at(t))} {t}" for t in times)
    lines.append("# EOF")

    observable = [h for h in in_period if h.observed]
    # What a review can estimate for the outage: its hours at the hourly cost the node
    # reported last before it (the gauge at outage_start).
    last_known = math.fsum(sc.hourly_cost(out_start).values())
    truth = Truth(
        scenario=sc,
        hourly=tuple(in_period),
        true=Totals.of(in_period),
        observable=Totals.of(observable),
        outage=(out_start, out_end),
        restart_at=restart,
        price_change_at=price_change,
        engine_restart_at=engine_restart,
        plan=plan,
        capacity_tokens_per_hour=sc.capacity_tokens_per_second * HOUR,
        unobserved_spend_estimate=(out_end - out_start) // HOUR * last_known,
        samples_per_series=len(times),
    )
    return "\n".join(lines) + "\n", truth


Gauge = tuple[str, dict[str, str], Callable[[int], float]]


def _gauges(sc: Scenario, plan: Plan) -> list[Gauge]:
    """Every gauge series as (family, labels, value at a sample time); a family's
    series are adjacent. Only the current-cost gauges vary, with the GPU price."""

    def constant(value: float) -> Callable[[int], float]:
        return lambda _t: value

    gauges: list[Gauge] = [
        ("llmcost_build_info", {"version": sc.version}, constant(1.0)),
        ("llmcost_pricing_info", {"currency": "USD"}, constant(1.0)),
        (
            "llmcost_capacity_tokens_per_second",
            {"source": "configured"},
            constant(sc.capacity_tokens_per_second),
        ),
        ("llmcost_projected_utilization_ratio", {}, constant(plan.utilization)),
        ("llmcost_projected_tokens_per_month", {}, constant(plan.tokens_per_month)),
        (
            "llmcost_projected_cost_per_million_tokens",
            {},
            constant(plan.cost_per_million_tokens),
        ),
    ]
    gauges += [
        ("llmcost_projected_token_share", {"kind": kind}, constant(share))
        for kind, share in plan.token_mix.items()
    ]
    gauges += [
        (
            "llmcost_api_price_per_million_tokens",
            {"model": m.name, "kind": kind},
            constant(sc.price_of[kind]),
        )
        for m in sc.models
        for kind in KINDS
    ]
    gauges += [("llmcost_api_price_missing", {"model": m.name}, constant(0.0)) for m in sc.models]
    gauges += [
        (
            "llmcost_model_capacity_tokens_per_second",
            {"model": model, "source": "configured"},
            constant(capacity),
        )
        for model, capacity in sc.model_capacity_tokens_per_second().items()
    ]
    gauges += [
        ("llmcost_hourly_cost", {"component": comp}, lambda t, c=comp: sc.hourly_cost(t)[c])
        for comp in COMPONENTS
    ]
    gauges += [
        (
            "llmcost_model_hourly_cost",
            {"model": m.name},
            lambda t, name=m.name: sc.model_hourly_cost(t)[name],
        )
        for m in sc.models
    ]
    return gauges


def _counter_values(
    amounts: list[float],
    first_hour: int,
    times: list[int],
    process_start: Callable[[int], int],
) -> Iterator[tuple[int, float]]:
    """A process-lifetime counter: what accrued since its process began, at each sample.

    ``cumulative[i]`` is the amount accrued from ``first_hour`` to the start of
    hour ``i``; within an hour the rate is constant, so the value at ``t`` is a
    prefix sum plus a fraction of the current hour.
    """
    cumulative = [0.0]
    for a in amounts:
        cumulative.append(cumulative[-1] + a)

    def level(t: int) -> float:
        i, into = divmod(t - first_hour, HOUR)
        if i >= len(amounts):
            return cumulative[-1]
        return cumulative[i] + amounts[i] * into / HOUR

    for t in times:
        yield t, max(0.0, level(t) - level(process_start(t)))
