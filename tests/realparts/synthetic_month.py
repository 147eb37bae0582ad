"""A month of one exporter node's metrics, with the exact truth behind them.

Reports computed from Prometheus can only be checked against numbers known
independently of Prometheus. This module builds both from one source: every
series accrues at a rate that is constant within each hour, so the counters
are sums of the same hourly amounts the :class:`Truth` adds up, and any
disagreement a test finds is Prometheus's (or the report's), not rounding here.

The month contains what a real one does: an exporter restart (counters are
process-lifetime, so they fall back to 0), an exporter outage (no samples at
all, and the process that comes back starts from 0 too), and a GPU price
change. Events sit on hour boundaries, and the step divides an hour, so every
hourly ``increase()`` window starts and ends on a sample. Pure and
deterministic: no clock, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

HOUR = 3600
KINDS = ("prompt", "cached_prompt", "generation")
COMPONENTS = ("gpu", "overhead")


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
    end: datetime = _utc("2026-10-31T00:00:00")
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
    # The old process is scraped at this instant for the last time; the new one counts
    # from it, so a restart itself loses nothing.
    restart_at: datetime = _utc("2026-10-09T15:00:00")
    # No samples strictly inside; the last old sample is at the start, the new process
    # counts from the end (a Wednesday, business hours: the data misses busy hours).
    outage_start: datetime = _utc("2026-10-21T10:00:00")
    outage_end: datetime = _utc("2026-10-21T14:00:00")
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

    def __post_init__(self) -> None:
        if HOUR % self.step_seconds:
            raise ValueError("step_seconds must divide an hour")
        for name in ("start", "end", "price_change_at", "restart_at", "outage_start", "outage_end"):
            if _epoch(getattr(self, name)) % HOUR:
                raise ValueError(f"{name} must be on an hour boundary")
        if not self.start < self.restart_at < self.outage_start < self.outage_end < self.end:
            raise ValueError("expected start < restart < outage start < outage end < end")
        if sum(m.gpus for m in self.models) != self.gpus:
            raise ValueError("the models' GPUs must add up to the node's")

    @property
    def price_of(self) -> dict[str, float]:
        return dict(self.api_prices)

    def gpu_price(self, hour_start: int) -> float:
        return (
            self.gpu_price_before
            if hour_start < _epoch(self.price_change_at)
            else self.gpu_price_after
        )


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

    @property
    def spend(self) -> float:
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

    @property
    def spend(self) -> float:
        return math.fsum(self.spend_by_component.values())

    @property
    def tokens_total(self) -> int:
        return sum(self.tokens.values())

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
        )


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
    samples_per_series: int = field(default=0)

    @property
    def true_spend(self) -> float:
        return self.true.spend

    @property
    def observable_spend(self) -> float:
        return self.observable.spend

    @property
    def start(self) -> int:
        return _epoch(self.scenario.start)

    @property
    def end(self) -> int:
        return _epoch(self.scenario.end)


def hour_truth(sc: Scenario, hour_start: int) -> HourTruth:
    """One hour's spend and traffic; tokens are whole numbers, as an engine counts them."""
    gpu = sc.gpus * sc.gpu_price(hour_start)
    components = {"gpu": gpu, "overhead": gpu * sc.overhead_ratio}
    node = gpu * (1.0 + sc.overhead_ratio)
    node_tokens = round(sc.peak_tokens_per_hour * diurnal_level(hour_start, sc.trough_ratio))
    prices = sc.price_of
    tokens: dict[tuple[str, str], int] = {}
    api: dict[str, float] = {}
    by_model: dict[str, float] = {}
    for m in sc.models:
        total = round(node_tokens * m.token_share)
        prompt = round(total * m.mix[0])
        cached = round(total * m.mix[1])
        split = {"prompt": prompt, "cached_prompt": cached, "generation": total - prompt - cached}
        for kind in KINDS:
            tokens[(m.name, kind)] = split[kind]
        api[m.name] = math.fsum(split[k] * prices[k] for k in KINDS) / 1e6
        by_model[m.name] = node * m.gpus / sc.gpus
    observed = not (_epoch(sc.outage_start) <= hour_start < _epoch(sc.outage_end))
    return HourTruth(hour_start, components, by_model, tokens, api, observed)


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
    hours = [hour_truth(sc, h) for h in range(first_hour, end, HOUR)]
    in_period = [h for h in hours if h.start >= start]

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

    projected_tokens = sc.projected_utilization * sc.capacity_tokens_per_second * 30 * 86400
    projected_spend = sc.gpus * sc.gpu_price_before * (1 + sc.overhead_ratio) * 30 * 24
    gauges: list[tuple[str, dict[str, str], float]] = [
        ("llmcost_build_info", {"version": sc.version}, 1.0),
        ("llmcost_pricing_info", {"currency": "USD"}, 1.0),
        (
            "llmcost_capacity_tokens_per_second",
            {"source": "configured"},
            sc.capacity_tokens_per_second,
        ),
        ("llmcost_projected_utilization_ratio", {}, sc.projected_utilization),
        ("llmcost_projected_tokens_per_month", {}, projected_tokens),
        (
            "llmcost_projected_cost_per_million_tokens",
            {},
            projected_spend / projected_tokens * 1e6,
        ),
    ]

    times = [t for t in range(start, end + 1, step) if not (out_start < t < out_end)]

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
    for name, labels, value in gauges:
        lines.append(f"# TYPE {name} gauge")
        prefix = f"{name}{_labels(sc, labels)} {_num(value)} "
        lines.extend(f"{prefix}{t}" for t in times)
    lines.append("# EOF")

    observable = [h for h in in_period if h.observed]
    truth = Truth(
        scenario=sc,
        hourly=tuple(in_period),
        true=Totals.of(in_period),
        observable=Totals.of(observable),
        outage=(out_start, out_end),
        restart_at=restart,
        price_change_at=price_change,
        samples_per_series=len(times),
    )
    return "\n".join(lines) + "\n", truth


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
