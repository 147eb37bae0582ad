"""The review's pure parts: periods, matchers, rounding, the variance bridges and
the figures computed from hand-made hourly tables whose answers are known."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from llm_cost_exporter.accounting.costmodel import COST_COMPONENTS, TOKEN_KINDS
from llm_cost_exporter.tools.report.fetch import Table
from llm_cost_exporter.tools.report.figures import (
    build_ledger,
    coverage_of,
    hours_below_breakeven,
    observed_hours,
    totals_of,
    unpriced_models,
)
from llm_cost_exporter.tools.report.labels import COST_COMPONENTS as COMPONENT_LABELS
from llm_cost_exporter.tools.report.labels import EVENTS, label
from llm_cost_exporter.tools.report.labels import TOKEN_KINDS as KIND_LABELS
from llm_cost_exporter.tools.report.period import PeriodError, parse_period
from llm_cost_exporter.tools.report.selection import Selection, SelectionError, parse_matcher
from llm_cost_exporter.tools.report.svg import tick_labels
from llm_cost_exporter.tools.report.tabular import csv_value
from llm_cost_exporter.tools.report.units import display, display_alone, rounded
from llm_cost_exporter.tools.report.variance import cost_bridge, savings_bridge

NOW = datetime(2026, 11, 22, 11, 35, tzinfo=timezone.utc)


# --- periods -------------------------------------------------------------------------


def test_default_period_is_the_last_complete_calendar_month() -> None:
    period = parse_period(None, None, None, "UTC", NOW)
    assert (period.start, period.end) == (
        datetime(2026, 10, 1, tzinfo=timezone.utc),
        datetime(2026, 11, 1, tzinfo=timezone.utc),
    )
    assert period.hours == 744 and period.label == "October 2026" and not period.to_date


def test_january_default_reaches_back_into_the_previous_year() -> None:
    period = parse_period(None, None, None, "UTC", datetime(2027, 1, 5, tzinfo=timezone.utc))
    assert period.start == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert period.hours == 31 * 24


def test_a_month_follows_the_time_zone_and_its_clock_change() -> None:
    period = parse_period("2026-10", None, None, "Europe/Berlin", NOW)
    assert period.start.isoformat() == "2026-10-01T00:00:00+02:00"
    assert period.end.isoformat() == "2026-11-01T00:00:00+01:00"
    assert period.hours == 745  # summer time ends on 25 October


def test_the_current_month_is_cut_at_the_present_hour() -> None:
    period = parse_period("2026-11", None, None, "UTC", NOW)
    assert period.to_date and period.end == datetime(2026, 11, 22, 11, tzinfo=timezone.utc)
    assert period.label.endswith("(to date)")


def test_an_hour_figure_belongs_to_the_clock_hour_its_window_mostly_covers() -> None:
    period = parse_period("2026-10", None, None, "UTC", NOW)
    s, e = period.start_epoch, period.end_epoch
    assert period.hour_of_sample(s) is None  # the window ending at the start is September's
    assert period.hour_of_sample(s + 3600) == 0  # windows ending on the hour: the hour ended
    assert period.hour_of_sample(s + 7200) == 1
    # A rule evaluated at :12 covers 48 minutes of the hour before.
    assert period.hour_of_sample(s + 12 * 60) is None
    assert period.hour_of_sample(s + 3600 + 12 * 60) == 0
    assert period.hour_of_sample(s + 3600 + 40 * 60) == 1  # :40 covers more of the next
    assert period.hour_of_sample(e) == 743
    assert period.hour_of_sample(e + 12 * 60) == 743
    assert period.hour_of_sample(e + 40 * 60) is None


def test_a_series_is_placed_in_its_hours_as_each_sample_would_be() -> None:
    period = parse_period("2026-10", None, None, "UTC", NOW)
    s, e = period.start_epoch, period.end_epoch
    stamps = [s, s + 3600, s + 3600 + 12 * 60, s + 3600 + 40 * 60, s + 7200, e, e + 12 * 60]
    stamps += [e + 40 * 60, s + 86400 + 0.5]
    samples = [(float(t), float(i)) for i, t in enumerate(stamps)]
    one_by_one = [
        (period.hour_of_sample(t), v)
        for t, v in samples
        if s + 3600 < t <= e + 1800 and period.hour_of_sample(t) is not None
    ]
    assert period.hourly(samples, s + 3600, e + 1800) == one_by_one
    assert [h for h, _ in one_by_one] == [0, 1, 1, 743, 743, 23]


@pytest.mark.parametrize(
    ("combine", "expected"),
    [
        ("last", {0: 3.0, 1: 5.0, 2: 7.0}),
        ("sum", {0: 4.0, 1: 7.0, 2: 7.0}),
        ("max", {0: 3.0, 1: 5.0, 2: 7.0}),
    ],
)
def test_series_falling_on_one_row_combine_as_their_figure_says(
    combine: str, expected: dict[int, float]
) -> None:
    table = Table(("model",))
    labels = {"job": "llm-cost", "instance": "a:9478", "model": "m"}
    table.add({**labels, "version": "1"}, [(0, 1.0), (1, 2.0)], combine)
    table.add({**labels, "version": "2"}, [(0, 3.0), (1, 5.0), (2, 7.0)], combine)
    assert list(table.rows.values()) == [expected]
    later_smaller = Table(("model",))
    later_smaller.add(labels, [(0, 9.0)], combine)
    later_smaller.add({**labels, "version": "2"}, [(0, 2.0)], combine)
    assert (
        later_smaller.rows[next(iter(later_smaller.rows))][0]
        == {"last": 2.0, "sum": 11.0, "max": 9.0}[combine]
    )


@pytest.mark.parametrize(
    ("month", "start", "end", "zone", "message"),
    [
        ("2026-13", None, None, "UTC", "--month '2026-13'"),
        ("10/2026", None, None, "UTC", "--month '10/2026'"),
        ("2026-10", "2026-10-01", None, "UTC", "--month cannot be combined"),
        (None, "2026-10-01", None, "UTC", "--start and --end go together"),
        (None, "2026-10-01T00:30", "2026-10-02", "UTC", "must fall on a whole hour"),
        (None, "yesterday", "2026-10-02", "UTC", "--start 'yesterday'"),
        (None, "2026-10-02", "2026-10-01", "UTC", "--end must be after --start"),
        ("2026-12", None, None, "UTC", "has not started yet"),
        ("2026-10", None, None, "Mars/Olympus", "--timezone 'Mars/Olympus'"),
    ],
)
def test_bad_periods_name_the_option(month, start, end, zone, message) -> None:
    with pytest.raises(PeriodError, match=message.replace("(", r"\(")):
        parse_period(month, start, end, zone, NOW)


def test_a_custom_range_takes_naive_times_in_the_report_zone() -> None:
    period = parse_period(None, "2026-10-05T06:00", "2026-10-06", "Europe/Berlin", NOW)
    assert period.start.isoformat() == "2026-10-05T06:00:00+02:00" and period.hours == 18


# --- selection -----------------------------------------------------------------------


def test_matchers_render_into_selectors_and_model_matchers_skip_node_series() -> None:
    selection = Selection.parse(['cluster="prod"', "model=~llama.*", 'instance!="a:1"'])
    assert selection.by_model
    assert (
        selection.selector("llmcost_tokens_total", True)
        == 'llmcost_tokens_total{cluster="prod",model=~"llama.*",instance!="a:1"}'
    )
    assert (
        selection.selector("llmcost_cost_total", False, 'component="gpu"')
        == 'llmcost_cost_total{cluster="prod",instance!="a:1",component="gpu"}'
    )
    assert not Selection.parse(['job="x"']).by_model


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cluster", "expected label="),
        ('cluster=="x"', "expected label="),
        ('kind="prompt"', "selecting on 'kind'"),
        ('model=~"("', "bad regular expression"),
        ('9x="a"', "expected label="),
    ],
)
def test_bad_matchers_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        parse_matcher(text)


# --- rounding ------------------------------------------------------------------------


def test_rounding_is_half_away_from_zero_at_the_unit_decimals() -> None:
    assert rounded(13411.845, "money") == 13411.85
    assert rounded(-0.005, "money") == -0.01
    assert rounded(1.23456, "money_per_million") == 1.2346
    assert rounded(8205034995.4, "tokens") == 8205034995
    assert isinstance(rounded(3.0, "count"), int)
    assert rounded(None, "money") is None
    assert display(-3838.164, "money") == "-$3,838.16"
    assert display(1.2, "money", "EUR") == "EUR 1.20"
    assert display(0.7598, "ratio") == "75.98%"
    assert display(1.4049, "factor") == "1.40\u00d7"


@pytest.mark.parametrize(
    ("value", "shown", "alone"),
    [
        (740.0, "740", "740 h"),
        (740.004, "740", "740 h"),
        (3.5, "3.5", "3.5 h"),
        (3.25, "3.25", "3.25 h"),
        (0.995, "1", "1 h"),
        (1234.5, "1,234.5", "1,234.5 h"),
        (0.0, "0", "0 h"),
        (-2.0, "-2", "-2 h"),
        (None, "n/a", "n/a"),
    ],
)
def test_hours_read_as_whole_hours_where_whole(value, shown: str, alone: str) -> None:
    assert display(value, "hours") == shown
    assert display_alone(value, "hours") == alone


def test_only_hours_carry_a_unit_when_alone() -> None:
    assert display_alone(13811.2, "money") == display(13811.2, "money") == "$13,811.20"
    assert display_alone(0.5, "ratio") == "50.00%"
    assert display_alone(1234, "tokens") == "1,234"
    # Only the words change: the figure an output carries keeps its hundredths.
    assert rounded(3.254, "hours") == 3.25 and rounded(740.0, "hours") == 740.0


@pytest.mark.parametrize(
    ("ticks", "unit", "currency", "labels"),
    [
        ([0, 2, 4, 6], "money", "USD", ["$0", "$2", "$4", "$6"]),
        ([0, 2, 4, 6], "money_per_million", "USD", ["$0", "$2", "$4", "$6"]),
        ([0, 0.5, 1, 1.5], "money", "USD", ["$0.00", "$0.50", "$1.00", "$1.50"]),
        ([0, 1.25, 2.5], "money_per_million", "USD", ["$0.00", "$1.25", "$2.50"]),
        ([0, 0.01, 0.02], "money_per_million", "USD", ["$0.00", "$0.01", "$0.02"]),
        ([0, 0.0025, 0.005], "money_per_million", "USD", ["$0.0000", "$0.0025", "$0.0050"]),
        ([0, 1000, 2000], "money", "EUR", ["EUR 0", "EUR 1,000", "EUR 2,000"]),
        ([0, 0.5], "money", "EUR", ["EUR 0.00", "EUR 0.50"]),
        ([-2, 0, 2], "money", "USD", ["-$2", "$0", "$2"]),
        ([0, 0.1 + 0.2, 0.6], "money", "USD", ["$0.00", "$0.30", "$0.60"]),
        ([0, 0.25, 0.5, 0.75, 1.0], "ratio", "USD", ["0%", "25%", "50%", "75%", "100%"]),
        ([0, 0.125, 0.25], "ratio", "USD", ["0.0%", "12.5%", "25.0%"]),
        ([0, 370, 740], "hours", "USD", ["0 h", "370 h", "740 h"]),
        ([0, 2.5, 5], "hours", "USD", ["0.0 h", "2.5 h", "5.0 h"]),
        ([0, 1, 2, 3], "count", "USD", ["0", "1", "2", "3"]),
        ([0, 2000, 4000], "tokens", "USD", ["0", "2,000", "4,000"]),
        ([0, 0.5, 1], "factor", "USD", ["0.0\u00d7", "0.5\u00d7", "1.0\u00d7"]),
    ],
)
def test_axis_ticks_have_the_decimals_their_step_needs(ticks, unit, currency, labels) -> None:
    assert tick_labels(ticks, unit, currency) == labels


@pytest.mark.parametrize(
    ("identifier", "words"),
    [
        ("prompt", "Prompt"),
        ("cached_prompt", "Cached prompt"),
        ("generation", "Generation"),
        ("gpu", "GPU"),
        ("overhead", "Overhead"),
        ("energy", "Energy"),
        ("node_extra", "Other node costs"),
        ("fixed", "Fixed costs"),
        ("exporter_restart", "Exporter restart"),
        ("engine_restart", "Engine restart"),
        ("a_new_kind", "A new kind"),  # not listed yet: still words, not a key
        ("", ""),
    ],
)
def test_identifiers_read_as_words(identifier: str, words: str) -> None:
    assert label(identifier) == words


def test_every_kind_component_and_event_has_its_words() -> None:
    assert set(KIND_LABELS) == set(TOKEN_KINDS)
    assert set(COMPONENT_LABELS) == set(COST_COMPONENTS)
    assert set(EVENTS) == {"exporter_restart", "engine_restart"}
    shown = [label(key) for key in (*TOKEN_KINDS, *COST_COMPONENTS, *EVENTS)]
    assert len(set(shown)) == len(shown)  # no two identifiers read alike
    assert all("_" not in words for words in shown)


@pytest.mark.parametrize(
    ("measure", "value", "written"),
    [
        ("spend", 13811.2, "13811.20"),
        ("savings", -0.5, "-0.50"),
        ("unobserved_spend_estimate", 0.0, "0.00"),
        ("cost", 12_345_678.9, "12345678.90"),
        ("cost_per_million_tokens", 1.652, "1.6520"),
        ("tokens", 3580246792, 3580246792),
        ("utilization", 0.43, 0.43),
        ("covered_hours", 738.0, 738.0),
        ("spend", None, ""),
    ],
)
def test_the_csv_writes_money_with_its_cents_and_leaves_the_rest(measure, value, written) -> None:
    assert csv_value(measure, value) == written
    if isinstance(written, str) and written:
        assert float(written) == value  # the same number, written with its cents


# --- variance ------------------------------------------------------------------------


def test_cost_bridge_splits_the_gap_into_volume_then_hourly_cost() -> None:
    # Plan: $20/h at 36M tokens/h -> $0.5556/1M. Realized over 100 h: $1,800 for 1.2B tokens.
    planned_cpm = 20 / 36e6 * 1e6
    lines = cost_bridge(
        planned_cpm, planned_spend=2000.0, realized_spend=1800.0, realized_tokens=1.2e9
    )
    util, hourly = lines
    assert util.key == "utilization" and hourly.key == "hourly_cost"
    # At the plan's $2,000 the realized volume costs 2000/1200 = $1.6667 per 1M.
    assert util.per_million == pytest.approx(2000 / 1200 - planned_cpm)
    assert hourly.per_million == pytest.approx(1800 / 1200 - 2000 / 1200)
    assert util.label == "Utilization below plan" and "below plan" in hourly.label
    realized_cpm = 1800 / 1.2e9 * 1e6
    assert math.isclose(planned_cpm + util.per_million + hourly.per_million, realized_cpm)
    assert math.isclose(util.amount + hourly.amount, (realized_cpm - planned_cpm) * 1200)


def test_savings_bridge_adds_the_token_mix_and_sums_to_the_savings_gap() -> None:
    cost = cost_bridge(0.5, 1000.0, 1500.0, 1e9)
    lines = savings_bridge(
        cost, planned_api_per_million=1.30, realized_api_per_million=1.10, realized_tokens=1e9
    )
    assert [line.key for line in lines] == ["utilization", "hourly_cost", "token_mix"]
    planned, realized = 1.30 - 0.5, 1.10 - 1.5
    assert math.isclose(planned + sum(line.per_million for line in lines), realized)
    assert lines[2].per_million == pytest.approx(-0.2)
    assert "worth less" in lines[2].label


def test_no_tokens_means_no_bridge() -> None:
    assert cost_bridge(0.5, 100.0, 100.0, 0.0) == ()


# --- figures from hand-made hourly tables --------------------------------------------

A = (("instance", "a:9478"), ("job", "llm-cost"))
B = (("instance", "b:9478"), ("job", "llm-cost"))


def _tables(**rows: dict) -> dict[str, Table]:
    keeps = {
        "spend": ("model",),
        "tokens": ("model", "kind"),
        "api_equivalent": ("model",),
        "model_capacity": ("model",),
        "model_gauges": ("__name__", "model", "kind"),
        "exporter_restarts": (),
        "engine_restarts": (),
        "samples": (),
        "components": ("component",),
        "node_capacity": (),
        "projection": ("__name__", "kind"),
    }
    return {name: Table(k, dict(rows.get(name, {}))) for name, k in keeps.items()}


def test_totals_compare_priced_models_only_and_count_hours_below_breakeven() -> None:
    tables = _tables(
        spend={
            (A, ("m1",)): {0: 10.0, 1: 10.0, 2: 10.0},
            (A, ("m2",)): {0: 5.0, 1: 5.0, 2: 5.0},
        },
        tokens={
            (A, ("m1", "prompt")): {0: 1e6, 1: 4e6, 2: 20e6},
            (A, ("m2", "prompt")): {0: 1e6, 1: 1e6, 2: 1e6},
        },
        api_equivalent={(A, ("m1",)): {0: 1.0, 1: 12.0, 2: 30.0}, (A, ("m2",)): {0: 0.0}},
        model_gauges={(A, ("llmcost_api_price_missing", "m2", "")): {0: 1.0, 1: 1.0, 2: 1.0}},
        node_capacity={(A, ()): {0: 10000.0, 1: 10000.0, 2: 10000.0}},
    )
    unpriced = unpriced_models(tables)
    assert unpriced == ("m2",)
    ledger = build_ledger(tables, unpriced, by_model=False)
    t = totals_of(ledger.fleet.values(), compare=True)
    assert t.spend == 45.0 and t.tokens == 28e6 and t.priced_spend == 30.0
    assert t.priced_tokens == 25e6 and t.api_equivalent == 43.0 and t.savings == 13.0
    assert t.cost_per_million_tokens == pytest.approx(45 / 28)
    assert t.api_equivalent_per_million_tokens == pytest.approx(43 / 25)
    assert t.cost_ratio == pytest.approx(30 / 43)
    # Hour 0: 10 > 1 below; hour 1: 10 < 12; hour 2: 10 < 30.
    assert (t.hours_below_breakeven, t.hours_compared) == (1, 3)
    assert hours_below_breakeven(ledger.fleet, True) == [0]
    assert t.utilization == pytest.approx(28e6 / (3 * 10000 * 3600))
    assert t.average_hourly_cost == 15.0
    # The unpriced model alone has nothing to compare.
    m2 = totals_of(ledger.models["m2"].values(), compare=False)
    assert m2.api_equivalent is None and m2.savings is None and m2.hours_compared == 0


def test_coverage_finds_gaps_and_nodes_that_joined_or_left() -> None:
    period = parse_period(None, "2026-10-01", "2026-10-02", "UTC", NOW)
    tables = _tables(
        spend={
            (A, ("m",)): {h: 2.0 for h in range(24) if not 5 <= h < 8},
            (B, ("m",)): {h: 1.0 for h in range(10, 20)},
        },
        model_gauges={(A, ("llmcost_hourly_cost", "", "")): {4: 3.0}},
    )
    ledger = build_ledger(tables, (), by_model=False)
    coverage = coverage_of(ledger, tables, observed_hours(tables, ledger), period, "raw counters")
    assert coverage.expected_node_hours == 24 + 10
    assert coverage.covered_node_hours == 21 + 10
    assert [(g.node, g.start.hour, g.end.hour, g.hours) for g in coverage.gaps] == [
        ("a:9478", 5, 8, 3.0)
    ]
    # The gap is priced at the last known hourly cost before it ($3/h), not the average.
    assert coverage.unobserved_spend_estimate == 9.0
    assert [(n, w.hour) for n, w in coverage.nodes_joined] == [("b:9478", 10)]
    assert [(n, w.hour) for n, w in coverage.nodes_left] == [("b:9478", 20)]
    assert coverage.ratio == pytest.approx(31 / 34)


def test_an_outage_counts_from_the_scrapes_even_where_a_rule_window_reaches_into_it() -> None:
    period = parse_period(None, "2026-10-01", "2026-10-02", "UTC", NOW)
    # A rule evaluated at :12 still finds samples in the hours the outage began and ended.
    spend = {h: 2.0 for h in range(24) if h not in (11, 12, 13)}
    scrapes = {h: 12.0 for h in range(24) if not 10 <= h < 14}
    scrapes[10] = scrapes[13] = 1.0  # one sample on each edge: no increase in there
    tables = _tables(spend={(A, ("m",)): spend}, samples={(A, ()): scrapes})
    ledger = build_ledger(tables, (), by_model=False)
    coverage = coverage_of(
        ledger, tables, observed_hours(tables, ledger), period, "recording rules"
    )
    assert [(g.start.hour, g.end.hour) for g in coverage.gaps] == [(10, 14)]
    assert coverage.missing_node_hours == 4
    # The partial figures still count in the totals.
    assert totals_of(ledger.fleet.values(), compare=False).spend == 42.0


def test_a_month_that_beat_the_api_reads_as_a_saving_with_its_plan_and_events() -> None:
    """compute_report end to end on hand-made tables: two days of one node."""
    from llm_cost_exporter.tools.report.build import compute_report
    from llm_cost_exporter.tools.report.tabular import render_csv, render_json

    period = parse_period(None, "2026-10-05", "2026-10-07", "UTC", NOW)
    hours = range(48)
    tables = _tables(
        spend={(A, ("m",)): {h: 10.0 for h in hours}},
        tokens={
            (A, ("m", "prompt")): {h: 8e6 for h in hours},
            (A, ("m", "generation")): {h: 2e6 for h in hours},
        },
        api_equivalent={(A, ("m",)): {h: 8 * 0.8 + 2 * 4.0 for h in hours}},
        samples={(A, ()): {h: 12.0 for h in hours}},
        node_capacity={(A, ()): {h: 5000.0 for h in hours}},
        model_gauges={
            (A, ("llmcost_api_price_per_million_tokens", "m", "prompt")): {h: 0.8 for h in hours},
            (A, ("llmcost_api_price_per_million_tokens", "m", "generation")): {
                h: 4.0 for h in hours
            },
        },
        projection={
            (A, ("llmcost_projected_utilization_ratio", "")): {h: 0.5 for h in hours},
            (A, ("llmcost_projected_tokens_per_month", "")): {h: 730 * 9e6 for h in hours},
            (A, ("llmcost_projected_cost_per_million_tokens", "")): {h: 1.0 for h in hours},
            (A, ("llmcost_projected_token_share", "prompt")): {h: 0.9 for h in hours},
            (A, ("llmcost_projected_token_share", "generation")): {h: 0.1 for h in hours},
        },
        engine_restarts={(A, ()): {30: 1.0}},
    )
    report = compute_report(
        tables,
        Selection(),
        period,
        "raw counters",
        currency="EUR",
        prometheus_url="http://prometheus:9090",
        now=NOW,
    )
    t = report.totals
    assert t.spend == 480.0 and t.api_equivalent == pytest.approx(48 * 14.4)
    assert t.savings == pytest.approx(48 * 4.4) and t.hours_below_breakeven == 0
    assert t.utilization == pytest.approx(10e6 / (5000 * 3600))
    p = report.projection
    # Planned: 9M tokens/h at EUR 1 per 1M = EUR 9/h over the 48 observed hours.
    assert p.tokens == pytest.approx(48 * 9e6) and p.spend == pytest.approx(48 * 9.0)
    assert p.api_equivalent_per_million_tokens == pytest.approx(0.9 * 0.8 + 0.1 * 4.0)
    v = report.variance
    assert [line.key for line in v.savings_per_million] == [
        "utilization",
        "hourly_cost",
        "token_mix",
    ]
    # More traffic than planned lowers the cost per 1M; the hourly cost is above plan.
    assert v.cost_per_million[0].per_million == pytest.approx(9 / 10 - 1.0)
    assert v.cost_per_million[1].per_million == pytest.approx(10 / 10 - 9 / 10)
    findings = " ".join(report.findings)
    assert "a saving of EUR 211.20 over the period" in findings
    assert "None of the 48 hours compared ran below break-even." in findings
    assert "An engine restarted once (a:9478 2026-10-06 06:00)" in findings
    assert "Data is missing" not in findings
    csv_text, json_text = render_csv(report), render_json(report)
    assert "totals,,savings,211.20,EUR" in csv_text
    assert '"savings": 211.2' in json_text


def test_idle_gpus_count_as_cost_but_are_not_compared_with_the_api_alone() -> None:
    from llm_cost_exporter.tools.report.build import compute_report

    period = parse_period(None, "2026-10-05", "2026-10-06", "UTC", NOW)
    hours = range(24)
    tables = _tables(
        spend={
            (A, ("m",)): {h: 6.0 for h in hours},
            (A, ("(unclaimed)",)): {h: 2.0 for h in hours},
        },
        tokens={(A, ("m", "prompt")): {h: 10e6 for h in hours}},
        api_equivalent={(A, ("m",)): {h: 7.0 for h in hours}},
    )
    report = compute_report(
        tables,
        Selection(),
        period,
        "raw counters",
        currency="USD",
        prometheus_url="http://p:9090",
        now=NOW,
    )
    # The idle GPUs' $2/h is part of what self-hosting cost against the API's $7/h.
    assert report.totals.priced_spend == 24 * 8.0 and report.totals.hours_below_breakeven == 24
    rows = {row.name: row.totals for row in report.models}
    assert rows["(unclaimed)"].api_equivalent is None and rows["(unclaimed)"].hours_compared == 0
    assert rows["m"].hours_below_breakeven == 0 and rows["m"].savings == 24 * 1.0
