"""The node state as metric families: the one catalogue of what we export.

Computed once per collection cycle and handed to every output. Unknown values
are left out, never exported as zero.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import Metric

from llm_cost_exporter import __version__
from llm_cost_exporter.accounting.costmodel import TOKEN_KINDS
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.accounting.windows import WindowFigures
from llm_cost_exporter.outputs.families import (
    NO_UNIT,
    RATIO,
    SECONDS,
    TOKENS,
    TOKENS_PER_SECOND,
    count_of,
    counter,
    gauge,
    known,
    money,
)
from llm_cost_exporter.outputs.gpu_families import gpu_families


def _window_families(
    families: Mapping[str, tuple[str, str, str]],
    figures: Mapping[tuple[str, ...], WindowFigures | None],
    labels: tuple[str, ...],
) -> Iterator[Metric]:
    """One gauge family per figure (metric -> (WindowFigures attribute, help, unit));
    unknown values are left out, never exported as zero."""
    for metric, (attr, doc, unit) in families.items():
        family = gauge(metric, doc, labels, unit=unit)
        for label_values, figure in figures.items():
            value = getattr(figure, attr) if figure is not None else None
            if known(value):
                family.add_metric(list(label_values), value)
        yield family


def node_families(state: NodeState) -> list[Metric]:
    """Every family of the node, in page order: the one catalogue of our metrics."""
    return [
        *_info(state),
        *_cost(state),
        *_tokens(state),
        *_windows(state),
        *_model_costs(state),
        *gpu_families(state),
        *_collectors(state),
    ]


def _info(state: NodeState) -> Iterator[Metric]:
    build = gauge("build_info", "Exporter version; always 1.", ("version",), unit=NO_UNIT)
    build.add_metric([__version__], 1)
    yield build
    pricing = gauge(
        "pricing_info",
        "Currency every money figure of this exporter is in; always 1.",
        ("currency",),
        unit=NO_UNIT,
    )
    pricing.add_metric([state.config.currency], 1)
    yield pricing
    projection = state.config.projection
    currency = state.config.currency
    for name, value, doc, unit in (
        (
            "projected_utilization_ratio",
            projection.utilization,
            "Utilization the self-hosting decision assumed (0-1).",
            RATIO,
        ),
        (
            "projected_tokens_per_month",
            projection.tokens_per_month,
            "Tokens per month the self-hosting decision assumed.",
            "{token/mo}",
        ),
        (
            "projected_cost_per_million_tokens",
            projection.cost_per_million_tokens,
            "Cost per 1M tokens the self-hosting decision assumed.",
            money(currency, "Mtoken"),
        ),
    ):
        if value is not None:
            family = gauge(name, doc, unit=unit)
            family.add_metric([], value)
            yield family
    if projection.token_mix is not None:
        share = gauge(
            "projected_token_share",
            "Share of tokens of each kind the self-hosting decision assumed (0-1).",
            ("kind",),
            unit=NO_UNIT,
        )
        for kind in TOKEN_KINDS:
            share.add_metric([kind], projection.token_mix[kind])
        yield share


def _cost(state: NodeState) -> Iterator[Metric]:
    hourly = gauge(
        "hourly_cost",
        "Loaded cost of this node per hour, by component (gpu, node_extra, overhead, fixed).",
        ("component",),
        unit=money(state.config.currency, "h"),
    )
    spend = counter(
        "cost",
        "Money spent on this node, by component, resumed across restarts from the state "
        "file; accrues with wall time whether or not tokens flow (energy: as metered).",
        ("component",),
        unit=money(state.config.currency),
    )
    accrual = state.accrual
    for component, value in accrual.hourly.items():
        hourly.add_metric([component], value)
        spend.add_metric([component], accrual.spend[component])
    yield hourly
    yield spend
    downtime = counter(
        "downtime_billed_seconds",
        "Time the exporter was down, billed at restart at the hourly cost it last saw "
        "(at most state_max_gap per restart); included in llmcost_cost_total.",
        unit=SECONDS,
    )
    downtime.add_metric([], state.downtime_billed_seconds)
    downtime_cost = counter(
        "downtime_billed_cost",
        "What the downtime billed at restart cost; in llmcost_cost_total.",
        unit=money(state.config.currency),
    )
    downtime_cost.add_metric([], state.downtime_billed_cost)
    yield downtime
    yield downtime_cost
    capacity = gauge(
        "capacity_tokens_per_second",
        "Tokens per second this node serves at 100% load (configured, or learned "
        "from sustained peak throughput).",
        ("source",),
        unit=TOKENS_PER_SECOND,
    )
    if state.config.capacity.tokens_per_second:
        capacity.add_metric(["configured"], state.config.capacity.tokens_per_second)
    if state.learned is not None and state.learned.peak:
        capacity.add_metric(["learned"], state.learned.peak)
    yield capacity


def _tokens(state: NodeState) -> Iterator[Metric]:
    tokens = counter(
        "tokens",
        "Tokens served, by model and kind (prompt = computed prompt tokens, "
        "cached_prompt = served from the prefix cache, generation); monotonic "
        "across engine restarts.",
        ("model", "kind"),
        unit=TOKENS,
    )
    api = counter(
        "api_equivalent_cost",
        "What the same tokens would have cost on the configured API, by model.",
        ("model",),
        unit=money(state.config.currency),
    )
    prices = gauge(
        "api_price_per_million_tokens",
        "API price per 1M tokens used for the comparison, by model and token kind.",
        ("model", "kind"),
        unit=money(state.config.currency, "Mtoken"),
    )
    missing = gauge(
        "api_price_missing",
        "1 for a served model that has no API price: its API-equivalent cost is "
        "not counted and the comparisons are withheld.",
        ("model",),
        unit=NO_UNIT,
    )
    for model, totals in sorted(state.tokens.models.items()):
        for kind in TOKEN_KINDS:
            tokens.add_metric([model, kind], totals.tokens[kind])
        price = state.tokens.price_for(model)
        if model not in state.model_seen:  # idle: its counters stay, its gauges leave
            if price is not None:
                api.add_metric([model], totals.api_equivalent)
            continue
        if price is None:
            missing.add_metric([model], 1)
            continue
        api.add_metric([model], totals.api_equivalent)
        for kind in TOKEN_KINDS:
            prices.add_metric([model, kind], price.for_kind(kind))
    yield from (tokens, api, prices, missing)
    yield from _counts(state)
    live = {
        "tokens_in_flight": (
            "kv_tokens",
            "Tokens resident in the KV cache of running requests (KV usage x KV capacity).",
            TOKENS,
        ),
        "kv_cache_capacity_tokens": ("kv_capacity", "Tokens the KV cache can hold.", TOKENS),
        "requests_running": (
            "running",
            "Requests in the engines' running batches.",
            count_of("request"),
        ),
        "requests_waiting": ("waiting", "Requests queued in the engines.", count_of("request")),
    }
    by_model = state.in_flight_by_model()
    for name, (key, doc, unit) in live.items():
        family = gauge(name, doc, ("model",), unit=unit)
        for model, values in sorted(by_model.items()):
            if key in values:
                family.add_metric([model], values[key])
        yield family


COUNT_FAMILIES = {
    "requests": (
        "requests",
        "Requests the engines finished, by model (vLLM: every finish reason); only for "
        "models whose engines count them; monotonic across engine restarts.",
        count_of("request"),
    ),
    "preemptions": (
        "preemptions",
        "Requests the engines preempted, by model: their KV cache was dropped and is "
        "recomputed when they resume, work done twice; only for models whose engines "
        "count them.",
        count_of("preemption"),
    ),
    "transferred_prompt": (
        "kv_transferred_prompt_tokens",
        "Prompt tokens whose KV cache another engine computed and sent here "
        "(disaggregated prefill), by model: counted and priced on the prefill engine, "
        "so left out of llmcost_tokens_total here; a model's series appears with its "
        "first transferred token.",
        TOKENS,
    ),
}
"""ModelTotals.counts name -> (family, help, unit)."""
ONLY_ONCE_SEEN = frozenset({"transferred_prompt"})
"""Counts engines report at 0 where the feature is unused (vLLM's external_kv_transfer
on every engine not in a disaggregated pair): their series start with the first."""


def _counts(state: NodeState) -> Iterator[Metric]:
    """The per-model counters beside the tokens, for the models whose engines give them."""
    for name, (family_name, doc, unit) in COUNT_FAMILIES.items():
        family = counter(family_name, doc, ("model",), unit=unit)
        for model, totals in sorted(state.tokens.models.items()):
            if name in totals.counts and (totals.counts[name] or name not in ONLY_ONCE_SEEN):
                family.add_metric([model], totals.counts[name])
        yield family


WINDOW_SPAN = (
    "seconds",
    "Time the window's figures really cover: the window, or less while the history "
    "since start is shorter.",
    SECONDS,
)


def _windows(state: NodeState) -> Iterator[Metric]:
    per_million = money(state.config.currency, "Mtoken")
    families = {
        "window_span_seconds": WINDOW_SPAN,
        "throughput_tokens_per_second": (
            "tokens_per_second",
            "Tokens served per second over the window.",
            TOKENS_PER_SECOND,
        ),
        "effective_cost_per_million_tokens": (
            "effective_cost_per_million",
            "Spend over tokens served in the window, per 1M tokens; +Inf when no token was served.",
            per_million,
        ),
        "api_equivalent_cost_per_million_tokens": (
            "api_cost_per_million",
            "API-equivalent cost per 1M tokens of the window's token mix.",
            per_million,
        ),
        "cost_ratio": (
            "cost_ratio",
            "Spend over API-equivalent cost in the window; above 1 the API would "
            "have been cheaper (+Inf with no traffic).",
            RATIO,
        ),
        "throughput_utilization_ratio": (
            "utilization",
            "Throughput over capacity in the window (0-1).",
            RATIO,
        ),
        "breakeven_utilization_ratio": (
            "breakeven_utilization",
            "Utilization at which self-hosting costs what the API would; above 1 "
            "the node can never beat the API.",
            RATIO,
        ),
    }
    if state.config.cost.owned is not None:
        families["energy_cost_per_million_tokens"] = (
            "energy_cost_per_million",
            "Metered GPU energy cost (tariff x PUE) over tokens served in the window, "
            "per 1M tokens.",
            per_million,
        )
    figures = {(name,): state.window(seconds) for name, seconds in state.windows.items()}
    yield from _window_families(families, figures, ("window",))


def _model_costs(state: NodeState) -> Iterator[Metric]:
    """Per-model cost on a node shared by several models (see NodeState.owners)."""
    spend = counter(
        "model_cost",
        "Spend attributed to each model: its engines' GPUs, their energy and its share "
        "of the node's shared and overhead costs; (unclaimed) is idle capacity. Sums "
        "to llmcost_cost_total.",
        ("model",),
        unit=money(state.config.currency),
    )
    hourly = gauge(
        "model_hourly_cost",
        "Current hourly cost attributed to each model.",
        ("model",),
        unit=money(state.config.currency, "h"),
    )
    accrual = state.accrual
    live = state.config.metrics.model_gauges
    for owner in sorted(accrual.owner_spend):
        spend.add_metric([owner], accrual.owner_spend[owner])
        if live and owner in accrual.owner_hourly:
            hourly.add_metric([owner], accrual.owner_hourly[owner])
    yield spend
    if live:
        yield hourly
    yield from _pod_costs(state)
    capacity = gauge(
        "model_capacity_tokens_per_second",
        "Tokens per second a model serves at 100% load: the node's when it is the only "
        "model, else its engines' configured capacities, else its learned sustained peak.",
        ("model", "source"),
        unit=TOKENS_PER_SECOND,
    )
    for model in sorted(state.model_history):
        known_capacity = state.model_capacity(model)
        if known_capacity is not None:
            capacity.add_metric([model, known_capacity[1]], known_capacity[0])
    yield capacity
    if not live:
        return
    per_million = money(state.config.currency, "Mtoken")
    families = {
        "model_window_span_seconds": WINDOW_SPAN,
        "model_effective_cost_per_million_tokens": (
            "effective_cost_per_million",
            "A model's spend over its tokens in the window, per 1M tokens.",
            per_million,
        ),
        "model_api_equivalent_cost_per_million_tokens": (
            "api_cost_per_million",
            "API-equivalent cost per 1M tokens of the model's window token mix.",
            per_million,
        ),
        "model_cost_ratio": (
            "cost_ratio",
            "A model's spend over its API-equivalent cost in the window.",
            RATIO,
        ),
        "model_throughput_utilization_ratio": (
            "utilization",
            "A model's throughput over its capacity in the window (where known).",
            RATIO,
        ),
        "model_breakeven_utilization_ratio": (
            "breakeven_utilization",
            "Utilization at which the model's GPUs cost what the API would.",
            RATIO,
        ),
    }
    figures = {
        (model, window): state.model_window(model, seconds)
        for model in sorted(state.model_history)
        for window, seconds in state.windows.items()
    }
    yield from _window_families(families, figures, ("model", "window"))


def _pod_costs(state: NodeState) -> Iterator[Metric]:
    """Spend by the pods holding the GPUs: only where the kubelet says which ones do."""
    spend = state.accrual.pod_spend
    if not spend:
        return
    family = counter(
        "pod_cost",
        "Spend attributed to each pod holding the node's GPUs (from the kubelet), by the "
        "model they serve: its share of each GPU it holds and of the node's shared and "
        "overhead costs; (unallocated) for GPUs no pod holds. Sums by model to "
        "llmcost_model_cost_total; a pod's series ends limits.model_idle_timeout after it "
        "last held a GPU.",
        ("model", "namespace", "pod"),
        unit=money(state.config.currency),
    )
    for (model, namespace, pod), amount in sorted(spend.items()):
        family.add_metric([model, namespace, pod], amount)
    yield family


def _collectors(state: NodeState) -> Iterator[Metric]:
    up = gauge(
        "collector_up",
        "1 if the target answered the last cycle.",
        ("collector", "target"),
        unit=NO_UNIT,
    )
    duration = gauge(
        "collector_duration_seconds",
        "Time the last collection of the target took.",
        ("collector", "target"),
        unit=SECONDS,
    )
    errors = counter(
        "collector_errors",
        "Failed collections, by reason; a reason's series appears with its first error.",
        ("collector", "target", "reason"),
        unit=count_of("error"),
    )
    restarts = counter(
        "engine_restarts",
        "Engine restarts detected: a newer _created, or (without one) token counters "
        "fallen below half their highest value.",
        ("collector", "target"),
        unit=count_of("restart"),
    )
    dips = counter(
        "engine_dips",
        "Readings whose token counters stepped back without a restart signal (or switched "
        "to an older _created): ignored, the highest values kept; a target's series "
        "appears with its first.",
        ("collector", "target"),
        unit=count_of("reading"),
    )
    exceeded = counter(
        "model_limit_exceeded",
        "Model names an engine served beyond limits.models_per_engine or "
        "limits.models_per_node, each counted when it appears; their tokens are counted "
        'as model="(overflow)"; a target\'s series appears with its first.',
        ("collector", "target"),
        unit=count_of("model"),
    )
    rejected = counter(
        "collector_rejected_series",
        "Series of an engine's pages left out while the rest was read, by reason "
        "(non_finite, negative, out_of_range, malformed, duplicate); a reason's series "
        "appears with its first rejection.",
        ("collector", "target", "reason"),
        unit=count_of("series"),
    )
    for (collector, target), status in sorted(state.targets.items()):
        up.add_metric([collector, target], 1 if status.up else 0)
        duration.add_metric([collector, target], status.duration_seconds)
        for reason, count in sorted(status.errors.items()):
            if count:
                errors.add_metric([collector, target, reason], count)
        if status.engine:
            restarts.add_metric([collector, target], status.restarts)
            if exceeded_count := state.model_limits.exceeded.get(target, 0):
                exceeded.add_metric([collector, target], exceeded_count)
            if status.dips:
                dips.add_metric([collector, target], status.dips)
            for reason, count in status.rejected.items():
                if count:
                    rejected.add_metric([collector, target, reason], count)
    yield from (up, duration, errors, restarts, exceeded, dips, rejected)
    if state.discovery_skipped is not None:
        yield from _discovery(state, state.discovery_skipped)


def _discovery(state: NodeState, skipped: Mapping[str, int]) -> Iterator[Metric]:
    """Only where kubernetes.discovery is on: who each discovered engine is, and the
    candidate pods that are not read."""
    info = gauge(
        "engine_info",
        "Namespace and pod of each engine target discovered among the node's pods; always 1.",
        ("collector", "target", "namespace", "pod"),
        unit=NO_UNIT,
    )
    for (collector, target), status in sorted(state.targets.items()):
        if status.engine and status.pod is not None:
            info.add_metric([collector, target, status.pod.namespace, status.pod.pod], 1)
    pods = gauge(
        "discovery_skipped_pods",
        "Pods of this node chosen as engines but not read, by reason (bad_scrape, bad_port, "
        "bad_path, bad_scheme, unknown_engine, too_many, duplicate).",
        ("reason",),
        unit=count_of("pod"),
    )
    for reason, count in skipped.items():
        pods.add_metric([reason], count)
    yield from (info, pods)
