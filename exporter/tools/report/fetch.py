"""Reading a period's hourly figures out of Prometheus.

Every figure is read as one value per node and hour: counter increases for
money and tokens (``increase(...[1h])`` over clock hours while the raw
samples exist, the hourly recording rules where only they remain), hourly
averages or values for gauges. Queries go one day at a time, so each stays small on a large fleet
and the user sees progress; each sample is placed in the clock hour its
window mostly covers (see ``Period.hour_of_sample``), and samples outside the
day are dropped, so no hour is counted twice whether the server's ranges are
closed or half-open.
"""

from __future__ import annotations

import dataclasses
import operator
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from llm_cost_exporter.generators.rules import preferred_capacity
from llm_cost_exporter.tools.report.period import HALF_HOUR, HOUR, Period
from llm_cost_exporter.tools.report.prometheus_api import (
    Labels,
    PrometheusClient,
    PrometheusError,
    Samples,
)
from llm_cost_exporter.tools.report.selection import Selection

CHUNK_SECONDS = 86400
QUERIES_IN_FLIGHT = 4
"""Queries being evaluated while the last answer is read: Prometheus answers several at
once, and reading an answer is the review's own work."""
# Labels that say what a series measures rather than where it comes from.
MEASURE_LABELS = frozenset(
    {
        "__name__",
        "model",
        "kind",
        "component",
        "source",
        "collector",
        "target",
        "window",
        "currency",
        "version",
    }
)
RULES = "recording rules"
RAW = "raw counters"

NodeKey = tuple[tuple[str, str], ...]
RowKey = tuple[NodeKey, tuple[str, ...]]
Progress = Callable[[int, int, str], None]


def node_key(labels: Labels) -> NodeKey:
    """A node is what its target labels say it is (job, instance, cluster, ...)."""
    return tuple(sorted((k, v) for k, v in labels.items() if k not in MEASURE_LABELS))


@dataclass
class Table:
    """One figure's hourly values: (node, identifying labels) -> hour index -> value."""

    keeps: tuple[str, ...]
    rows: dict[RowKey, dict[int, float]] = field(default_factory=dict)

    def add(self, labels: Labels, hourly: Iterable[tuple[int, float]], combine: str) -> None:
        """One series' values by hour index, onto its row (a fleet's month is millions
        of values: the row is found once per series, not per value)."""
        key = (node_key(labels), tuple(labels.get(k, "") for k in self.keeps))
        row = self.rows.setdefault(key, {})
        if combine == "last" or not row:
            row.update(hourly)
            return
        merge = COMBINE[combine]
        for hour, value in hourly:
            row[hour] = merge(row[hour], value) if hour in row else value


COMBINE: dict[str, Callable[[float, float], float]] = {"sum": operator.add, "max": max}


@dataclass(frozen=True)
class Figure:
    """How one figure is read: a recording rule if there is one, else a raw expression.

    ``raw`` is the PromQL of the hour ending at each evaluation; ``combine``
    says how series that fall on one row add up (``last`` keeps one value).
    ``model_labelled`` says whether a model matcher applies to the rule's series;
    a rule that is not ``required`` may have no series at all (a fleet without
    capacity figures), and is then read raw.
    """

    name: str
    keeps: tuple[str, ...]
    raw: str
    rule: str | None = None
    combine: str = "last"
    model_labelled: bool = True
    required: bool = True


def figures(selection: Selection) -> tuple[Figure, ...]:
    """The figures a review needs for this selection."""
    sel = selection.selector
    out = [
        Figure(
            "spend",
            ("model",),
            _increase(sel("llmcost_model_cost_total", True)),
            "instance_model:llmcost_cost:increase1h",
        ),
        Figure(
            "tokens",
            ("model", "kind"),
            _increase(sel("llmcost_tokens_total", True)),
            "instance_model_kind:llmcost_tokens:increase1h",
        ),
        Figure(
            "api_equivalent",
            ("model",),
            _increase(sel("llmcost_api_equivalent_cost_total", True)),
            "instance_model:llmcost_api_equivalent_cost:increase1h",
        ),
        Figure(
            "model_capacity",
            ("model",),
            _preferred_capacity(selection, "llmcost_model_capacity_tokens_per_second", True),
            "instance_model:llmcost_capacity_tokens_per_second:avg1h",
            required=False,
        ),
        Figure(
            "model_gauges",
            ("__name__", "model", "kind"),
            sel(
                "",
                True,
                '__name__=~"llmcost_hourly_cost|llmcost_api_price_missing'
                '|llmcost_api_price_per_million_tokens"',
            ),
            combine="sum",
        ),
        Figure(
            "samples",
            (),
            f"count_over_time({sel('llmcost_build_info', False)}[1h])",
            "instance:llmcost_build_info:count_over_time1h",
            combine="max",
            model_labelled=False,
        ),
        Figure(
            "exporter_restarts",
            (),
            f"max without (model) (resets({sel('llmcost_model_cost_total', True)}[1h]))",
            "instance_model:llmcost_cost:resets1h",
            combine="max",
        ),
        Figure(
            "engine_restarts",
            (),
            "sum without (collector, target) "
            f"({_increase(sel('llmcost_engine_restarts_total', False))})",
            combine="sum",
        ),
    ]
    if not selection.by_model:
        out += [
            Figure(
                "components",
                ("component",),
                _increase(sel("llmcost_cost_total", False)),
                "instance_component:llmcost_cost:increase1h",
                model_labelled=False,
            ),
            Figure(
                "node_capacity",
                (),
                _preferred_capacity(selection, "llmcost_capacity_tokens_per_second", False),
                "instance:llmcost_capacity_tokens_per_second:avg1h",
                model_labelled=False,
                required=False,
            ),
            Figure(
                "projection",
                ("__name__", "kind"),
                sel("", False, '__name__=~"llmcost_projected_.+"'),
            ),
        ]
    return tuple(out)


def _increase(selector: str) -> str:
    """The hour's increase, where the hour holds two samples of the series.

    PromQL needs two samples inside the window for an increase. MetricsQL also
    takes the last sample before the window as its base: an hour whose only
    sample is its start (the exporter went away) or a restarted process's
    first one reads 0 there, an hour the node would seem to have been seen in.
    """
    return f"increase({selector}[1h]) and count_over_time({selector}[1h]) > 1"


def _preferred_capacity(selection: Selection, metric: str, has_model_label: bool) -> str:
    return preferred_capacity(
        lambda source: selection.selector(metric, has_model_label, f'source="{source}"'), "1h"
    )


def choose_source(
    client: PrometheusClient, selection: Selection, period: Period, requested: str
) -> str:
    """Raw counters while Prometheus still holds them, else the hourly recording rules.

    Raw increases are taken over clock hours, exact to the sample. Rule
    windows end where Prometheus evaluates the group (a fixed minute past the
    hour), which is close but not the same hour. Rules matter once raw samples
    are gone (retention, downsampling), which is what ``auto`` checks: raw
    samples in the period's first day.
    """
    if requested == "raw":
        return RAW
    if requested == "auto":
        probe = selection.selector("llmcost_build_info", False)
        first_day = min(period.start_epoch + CHUNK_SECONDS, period.end_epoch)
        if client.query(
            f"count(count_over_time({probe}[{first_day - period.start_epoch}s]))", first_day
        ):
            return RAW
    missing = [
        f.rule
        for f in figures(selection)
        if f.rule and f.required and not recorded(client, selection, period, f)
    ]
    if not missing:
        return RULES
    if requested == "rules":
        raise PrometheusError(
            f"recording rule {missing[0]} has no data for this selection and period; "
            "load alerts/recording-rules.yml or use --source raw"
        )
    return RAW


def recorded(client: PrometheusClient, selection: Selection, period: Period, f: Figure) -> bool:
    """Whether the figure's rule has samples in the period."""
    span = period.end_epoch - period.start_epoch
    selector = selection.selector(f.rule or "", f.model_labelled)
    query = f"count(count_over_time({selector}[{span}s]))"
    return bool(client.query(query, period.end_epoch))


def fetch(
    client: PrometheusClient,
    selection: Selection,
    period: Period,
    source: str,
    progress: Progress | None = None,
) -> dict[str, Table]:
    """Every figure of the period, hour by hour: a query per figure and day, a few in flight."""
    wanted = figures(selection)
    if source == RULES:
        wanted = tuple(
            f
            if f.required or not f.rule or recorded(client, selection, period, f)
            else dataclasses.replace(f, rule=None)
            for f in wanted
        )
    tables = {f.name: Table(f.keeps) for f in wanted}
    queries = [
        (chunk_start, chunk_end, figure)
        for chunk_start, chunk_end in _chunks(period)
        for figure in wanted
    ]

    def ask(query: tuple[int, int, Figure]) -> list[tuple[Labels, Samples]]:
        chunk_start, chunk_end, figure = query
        return client.query(*_chunk_query(figure, selection, source, chunk_start, chunk_end))

    # Answers are taken in the order asked, so the tables are the same as one query
    # at a time; meanwhile the next few queries are already being evaluated.
    with ThreadPoolExecutor(QUERIES_IN_FLIGHT) as pool:
        pending: deque[Future[list[tuple[Labels, Samples]]]] = deque()
        asked = iter(queries)
        for done, (chunk_start, chunk_end, figure) in enumerate(queries, start=1):
            while len(pending) < QUERIES_IN_FLIGHT and (query := next(asked, None)):
                pending.append(pool.submit(ask, query))
            answer = pending.popleft().result()
            table = tables[figure.name]
            for labels, samples in answer:
                table.add(labels, period.hourly(samples, chunk_start, chunk_end), figure.combine)
            if progress:
                day = period.hour_start((chunk_start - HALF_HOUR - period.start_epoch) // HOUR)
                progress(done, len(queries), f"{day:%Y-%m-%d} {figure.name}")
    return tables


def _chunks(period: Period) -> Iterable[tuple[int, int]]:
    """Days of sample timestamps, half an hour late: figures are stamped at their window's
    end, so the period's figures are stamped from its start + 30 min to its end + 30 min."""
    start = period.start_epoch + HALF_HOUR
    while start < period.end_epoch + HALF_HOUR:
        end = min(start + CHUNK_SECONDS, period.end_epoch + HALF_HOUR)
        yield start, end
        start = end


def _chunk_query(
    figure: Figure, selection: Selection, source: str, chunk_start: int, chunk_end: int
) -> tuple[str, int]:
    """The query for one chunk's figures and the instant to evaluate it at.

    Recorded samples are read as stored. A raw figure is evaluated hourly by
    a subquery, whose steps Prometheus puts on multiples of the hour since the
    epoch and VictoriaMetrics counts back from the evaluation instant; so it
    is evaluated on a whole hour, where both put them on the same instants.
    """
    seconds = chunk_end - chunk_start
    if source == RULES and figure.rule:
        return f"{selection.selector(figure.rule, figure.model_labelled)}[{seconds}s]", chunk_end
    return f"({figure.raw})[{seconds}s:1h]", chunk_end - chunk_end % HOUR
