"""Assembling a review: fetch the period from Prometheus, then compute every figure.

The only module of the review that does I/O besides the writers; everything
it calls to compute is pure and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from llm_cost_exporter.accounting.costmodel import TOKEN_KINDS
from llm_cost_exporter.tools.planner.advise import PlanError, advise
from llm_cost_exporter.tools.planner.from_prometheus import traffic_from_review
from llm_cost_exporter.tools.planner.model import Knobs
from llm_cost_exporter.tools.planner.replica import ReplicaSpec
from llm_cost_exporter.tools.report import figures as f
from llm_cost_exporter.tools.report.fetch import RULES, Progress, Table, choose_source, fetch
from llm_cost_exporter.tools.report.findings import findings
from llm_cost_exporter.tools.report.model import Report, Row
from llm_cost_exporter.tools.report.period import Period
from llm_cost_exporter.tools.report.prometheus_api import PrometheusClient, PrometheusError
from llm_cost_exporter.tools.report.selection import Selection


@dataclass(frozen=True)
class Planning:
    """How the advice section plans: the knobs, and a replica other than the node as run."""

    knobs: Knobs = field(default_factory=Knobs)
    replica: ReplicaSpec | None = None
    capacity: float | None = None  # overrides the exporters' capacity per node


class EmptyPeriodError(PrometheusError):
    """Prometheus answered, but holds no cost data for the selection in the period."""


def build_report(
    client: PrometheusClient,
    selection: Selection,
    period: Period,
    *,
    source: str = "auto",
    currency: str | None = None,
    now: datetime,
    progress: Progress | None = None,
    planning: Planning | None = None,
) -> Report:
    chosen = choose_source(client, selection, period, source)
    tables = fetch(client, selection, period, chosen, progress)
    if not tables["spend"].rows:
        where = " and ".join(selection.describe()) or "any target"
        raise EmptyPeriodError(
            f"no llmcost cost data in Prometheus at {client.url} for {where} between "
            f"{period.start:%Y-%m-%d %H:%M} and {period.end:%Y-%m-%d %H:%M} {period.zone_name}"
        )
    return compute_report(
        tables,
        selection,
        period,
        chosen,
        currency=currency or _currency(client, selection, period, chosen),
        prometheus_url=client.url,
        now=now,
        planning=planning,
    )


def compute_report(
    tables: dict[str, Table],
    selection: Selection,
    period: Period,
    source: str,
    *,
    currency: str,
    prometheus_url: str,
    now: datetime,
    planning: Planning | None = None,
) -> Report:
    """Every figure of the review from the period's hourly tables."""
    unpriced = f.unpriced_models(tables)
    ledger = f.build_ledger(tables, unpriced, selection.by_model)
    # Compare with the API only what the API could have served: priced models' tokens.
    comparable = {
        model
        for model, cells in ledger.models.items()
        if model not in unpriced and any(c.tokens > 0 for c in cells.values())
    }
    compare = bool(comparable)
    totals = f.totals_of(ledger.fleet.values(), compare)
    projection = f.projection_of(tables, ledger, f.realized_api_prices(tables, unpriced))
    utilization, tokens = f.week_profile(ledger, period)
    observed = f.observed_hours(tables, ledger)
    nodes = tuple(
        Row(
            f.node_name(node),
            f.totals_of(cells.values(), compare),
            coverage=len(observed[node]) / (observed[node][-1] - observed[node][0] + 1),
            first_seen=period.hour_start(observed[node][0]),
            last_seen=period.hour_start(observed[node][-1] + 1),
        )
        for node, cells in sorted(ledger.nodes.items())
    )
    models = tuple(
        Row(model, f.totals_of(cells.values(), model in comparable))
        for model, cells in sorted(ledger.models.items())
    )
    report = Report(
        title=f"LLM self-hosting cost review: {period.label}",
        period_start=period.start,
        period_end=period.end,
        timezone=period.zone_name,
        generated_at=now.astimezone(period.zone),
        prometheus_url=prometheus_url,
        selection=selection.describe(),
        currency=currency,
        coverage=f.coverage_of(ledger, tables, observed, period, source),
        totals=totals,
        spend_by_component=f.spend_by_component(tables, ledger),
        tokens_by_kind={k: ledger.tokens_by_kind.get(k, 0.0) for k in TOKEN_KINDS},
        unpriced_models=unpriced,
        projection=projection,
        variance=f.variance_of(projection, totals, unpriced),
        hour_of_week_utilization=utilization,
        hour_of_week_tokens=tokens,
        peak_to_trough=f.peak_to_trough(tokens),
        nodes=nodes,
        models=models,
        days=f.days_of(ledger, period, compare),
        events=f.events_of(tables, period, ledger),
        findings=(),
    )
    below = [period.hour_start(h) for h in f.hours_below_breakeven(ledger.fleet, compare)]
    planning = planning or Planning()
    try:
        traffic = traffic_from_review(
            ledger,
            tables,
            period,
            unpriced,
            currency=currency,
            source=f"Prometheus at {prometheus_url} ({source})",
            replica=planning.replica,
            capacity=planning.capacity,
        )
        report = replace(report, advice=advise(traffic, planning.knobs))
    except PlanError as err:
        report = replace(report, advice_missing=str(err))
    return replace(report, findings=findings(report, below))


def _currency(client: PrometheusClient, selection: Selection, period: Period, source: str) -> str:
    """The currency the exporters declare; several at once is an error, none means USD.

    Read from the hourly rule through the rules, else from the raw gauge once an hour
    (a subquery): a month of a fleet's raw samples in one range would exceed the
    samples a Prometheus query may load.
    """
    span = period.end_epoch - period.start_epoch
    rule = selection.selector("instance:llmcost_pricing_info:last_over_time1h", False)
    raw = selection.selector("llmcost_pricing_info", False)
    queries = [f"{rule}[{span}s]"] if source == RULES else []
    queries.append(f"{raw}[{span}s:1h]")
    for query in queries:
        result = client.query(f"count by (currency) (last_over_time({query}))", period.end_epoch)
        if result:
            break
    currencies = sorted({labels.get("currency", "") for labels, _ in result} - {""})
    if len(currencies) > 1:
        raise PrometheusError(
            "the selected exporters report in several currencies ("
            + ", ".join(currencies)
            + "); select one with --match"
        )
    return currencies[0] if currencies else "USD"
