"""What would have been cheaper, as shown: the review's section, its CSV/JSON rows, plan's page
and plan's table, all drawn from one Advice computed by ``advise`` on hand-made traffic."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace

import pytest
from plan_traffic import b2b_month
from test_report_html import Document, make_report, section

from llm_cost_exporter.tools.planner.advise import advise
from llm_cost_exporter.tools.planner.model import (
    ALL_API,
    AS_RUN,
    FIXED,
    HYBRID_SCHEDULE,
    POLICIES,
    SCHEDULED,
    Advice,
    Traffic,
)
from llm_cost_exporter.tools.planner.table import WIDTH, render_table
from llm_cost_exporter.tools.report.advice_html import advice_section, render_advice_page
from llm_cost_exporter.tools.report.advice_words import verdict
from llm_cost_exporter.tools.report.html import render_html
from llm_cost_exporter.tools.report.markup import CSS
from llm_cost_exporter.tools.report.measures import unit_of
from llm_cost_exporter.tools.report.tabular import (
    POLICY_MEASURES,
    advice_figures,
    render_csv,
    render_json,
    sensitivity_item,
)
from llm_cost_exporter.tools.report.units import DECIMALS, display, display_alone, is_money, rounded

CAPACITY = 1250.0  # tokens/s per replica: the 3,000 tokens/s peak needs 3 at the 80% ceiling
REPLICA_COST = 2.5
FORBIDDEN = ("<script", "http://", "https://", "src=", "href=", "url(", "@import", "<link")


def two_weeks(*, replicas: float, on_api: bool = False, cost: float = REPLICA_COST) -> Traffic:
    """Two weeks of weekday-peak traffic, run on ``replicas`` replicas (or on the API)."""
    month = b2b_month(6.0, 3000.0, capacity=CAPACITY, replica_cost=cost, days=14)
    hours = tuple(
        replace(
            h,
            spend=h.api_cost if on_api else replicas * h.replica_cost,
            replicas=0.0 if on_api else replicas,
            capacity_tokens=0.0 if on_api else replicas * h.capacity_tokens,
        )
        for h in month.hours
    )
    return replace(month, hours=hours, on_api=on_api)


@pytest.fixture(scope="module")
def advice() -> Advice:
    """The fleet ran at 3 replicas all the time: every schedule would have been cheaper."""
    result = advise(two_weeks(replicas=3.0))
    assert result.fleet_size == 3
    assert result.cheapest.key not in (AS_RUN, ALL_API)
    return result


@pytest.fixture(scope="module")
def lean() -> Advice:
    """The fleet ran on one replica: nothing modelled beats it."""
    result = advise(two_weeks(replicas=1.0))
    assert result.cheapest.key == AS_RUN
    return result


@pytest.fixture(scope="module")
def page(advice: Advice) -> str:
    return render_advice_page(advice, "What would have been cheaper")


def figure(advice: Advice, key: str, measure: str) -> float | int | None:
    """A policy's figure straight from its Outcome, to check the writers' own lookup."""
    o = advice.outcome(key)
    return {
        "cost": o.cost,
        "cost_per_million_tokens": o.cost / o.tokens * 1e6,
        "self_hosted_share": o.self_hosted_tokens / o.tokens,
        "utilization": o.self_hosted_tokens / o.capacity_tokens if o.capacity_tokens else None,
        "hours_below_breakeven": o.hours_below_breakeven,
        "saving_vs_as_run": advice.outcome(AS_RUN).cost - o.cost,
        "saving_vs_all_api": advice.outcome(ALL_API).cost - o.cost,
        "replica_hours": o.replica_hours,
    }[measure]


def marks(markup: str) -> dict[str, str]:
    found = Document(markup).figures()
    keys = [key for key, _ in found]
    assert len(keys) == len(set(keys)), "a figure is marked twice"
    return dict(found)


def expected_marks(advice: Advice) -> dict[str, str]:
    """Every advice figure but the week's (the chart's numbers are in its tooltips)."""
    out = {}
    for section_name, item, measure, value in advice_figures(advice):
        if section_name == "advice_week":
            continue
        r = rounded(value, unit_of(measure))
        out[f"{section_name}.{item}.{measure}"] = "" if r is None else r
    return out


# ----------------------------------------------------------------------------- the section


def test_every_figure_is_marked_once_with_its_rounded_value(advice: Advice, page: str) -> None:
    found, expected = marks(page), expected_marks(advice)
    assert set(found) == set(expected)
    for key, value in found.items():
        want = expected[key]
        assert (value == "") if want == "" else float(value) == want, (key, value, want)
    for outcome in advice.outcomes:
        for measure in POLICY_MEASURES:
            assert f"advice.{outcome.key}.{measure}" in found


def test_each_policy_row_shows_its_figures_as_displayed(advice: Advice, page: str) -> None:
    cells = re.findall(
        r'<td class="num[^"]*" data-figure="(advice\.[^"]+)"[^>]*>([^<]*)</td>', page
    )
    assert len(cells) == len(advice.outcomes) * len(POLICY_MEASURES)
    for key, text in cells:
        _, policy, measure = key.split(".")
        value = figure(advice, policy, measure)
        assert text == display_alone(value, unit_of(measure), advice.currency), key
        if measure == "replica_hours":  # whole hours read whole: "336 h", not "336.00"
            assert text == f"{rounded(value, 'hours'):,g} h", key


def test_the_cheapest_row_is_highlighted(advice: Advice, page: str) -> None:
    rows = re.findall(r"<tr( class=\"best\")?><th scope=\"row\">(.*?)</tr>", page)
    policy_rows = [(best, body) for best, body in rows if 'data-figure="advice.' in body]
    assert len(policy_rows) == len(POLICIES)
    best = [body for flag, body in policy_rows if flag]
    assert len(best) == 1
    assert f'data-figure="advice.{advice.cheapest.key}.cost"' in best[0]
    assert '<span class="tag">cheapest</span>' in best[0]
    assert page.count('<span class="tag">cheapest</span>') == 1


def test_the_sentence_for_finance_names_the_cheapest_and_its_saving(advice: Advice) -> None:
    lead = re.search(r'<p class="lead">(.*?)</p>', advice_section(advice)).group(1)
    words = Document(lead).text.strip()
    best, ran, api = advice.cheapest, advice.outcome(AS_RUN), advice.outcome(ALL_API)
    currency = advice.currency
    assert words.startswith(f"{best.name} would have been cheapest: ")
    assert f"saving {display(ran.cost - best.cost, 'money', currency)}" in words
    assert display(api.cost - best.cost, "money", currency) in words
    assert words == verdict(advice)  # the same words as plan's table
    note = Document(re.search(r'<p class="note">(.*?)</p>', advice_section(advice)).group(1))
    assert "1,250 tokens per second" in note.text and "80%" in note.text
    assert "at least 1 replica" in note.text and "3 hours" in note.text


def test_when_the_way_it_ran_was_cheapest_nothing_is_said_to_be_cheaper(lean: Advice) -> None:
    text = Document(advice_section(lean)).text
    assert "Nothing modelled would have been cheaper than the way it ran" in text
    assert display(lean.outcome(AS_RUN).cost, "money") in text


def test_a_team_on_the_api_is_compared_with_its_bill() -> None:
    result = advise(two_weeks(replicas=0.0, on_api=True))
    text = Document(advice_section(result)).text
    assert "all traffic on the API, as billed" in text
    if result.cheapest.key != AS_RUN:
        assert "against the API bill as it ran" in text


def test_the_week_chart_has_168_hours_per_series(advice: Advice, page: str) -> None:
    charts = re.findall(r"<svg .*?</svg>", page, re.S)
    assert len(charts) == 1
    chart = charts[0]
    elements = Document(chart).elements
    svg = elements[0][1]
    assert svg["role"] == "img" and svg["aria-label"].startswith("What would have been cheaper")
    assert "<title>" in chart
    traffic = [a for t, a in elements if t == "polyline" and a.get("data-series") == "0"]
    assert [len(a["points"].split()) for a in traffic] == [168]
    steps = {a["data-series"]: a["d"] for t, a in elements if t == "path" and "data-series" in a}
    assert sorted(steps) == ["1", "2"]
    for series, levels in (
        ("1", advice.scheduled_replicas),
        ("2", advice.hybrid_schedule_replicas),
    ):
        d = steps[series]
        ends = [float(x) for x in re.findall(r"H([\d.]+)", d)]
        assert len(ends) == 168
        widths = {round(b - a, 1) for a, b in zip(ends, ends[1:], strict=False)}
        assert max(widths) - min(widths) <= 0.2  # one hour each, the whole week across
        heights = [float(y) for y in re.findall(r"(?:M[\d.]+ |V)([\d.]+)", d)]
        assert len(heights) == 168
        # a step's height follows its replica count: equal counts, equal heights
        by_level: dict[int, set[float]] = {}
        for level, y in zip(levels, heights, strict=True):
            by_level.setdefault(level, set()).add(y)
        assert all(len(ys) == 1 for ys in by_level.values())
    hours = [a for t, a in elements if t == "rect" and a.get("class") == "hour"]
    assert len(hours) == 168
    busiest = max(range(168), key=lambda i: advice.week_tokens[i] or 0)
    assert f"scheduled scaling {advice.scheduled_replicas[busiest]} replicas" in chart


def test_more_replicas_are_drawn_higher(advice: Advice, page: str) -> None:
    chart = re.search(r"<svg .*?</svg>", page, re.S).group(0)
    d = re.search(r'data-series="1" d="([^"]+)"', chart).group(1)
    heights = [float(y) for y in re.findall(r"(?:M[\d.]+ |V)([\d.]+)", d)]
    levels = advice.scheduled_replicas
    pairs = sorted(set(zip(levels, heights, strict=True)))
    ys = [y for _, y in pairs]
    assert len(pairs) == len(set(levels)) >= 2
    assert ys == sorted(ys, reverse=True)  # SVG y grows downwards


def test_no_raw_key_in_visible_text(advice: Advice, page: str) -> None:
    text = Document(page).text
    raw = [key for key in POLICIES if "_" in key] + ["advice_", "_cost", "load_", "ceiling_"]
    assert len(raw) == 7
    for key in raw:
        assert key not in text, key
    for outcome in advice.outcomes:
        assert outcome.name in text


def test_the_standalone_page_is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    lowered = page.lower()
    for needle in FORBIDDEN:
        assert needle not in lowered, needle
    doc = Document(page)
    assert doc.errors == [] and doc.stack == []
    assert f"<style>{CSS}</style>" in page  # the review's own styles
    assert re.findall(r'<section id="([^"]+)"', page) == ["advice"]


def test_the_sensitivity_marks_each_row_cheapest(advice: Advice) -> None:
    markup = advice_section(advice)
    for case in advice.sensitivity:
        item = sensitivity_item(case)
        best = re.findall(
            rf'class="num best" data-figure="advice_sensitivity\.{re.escape(item)}\.(\w+)_cost"',
            markup,
        )
        assert best == [case.cheapest], case.label
    text = Document(markup).text
    changed = [c for c in advice.sensitivity if c.cheapest != advice.cheapest.key]
    assert ("The cheapest policy stays" in text) == (not changed)
    for case in changed:
        assert f"with {case.label} it would be" in text


def test_a_change_of_cheapest_policy_is_said(advice: Advice) -> None:
    first = advice.sensitivity[0]
    moved = replace(first, costs={**first.costs, FIXED: 1.0}, cheapest=FIXED)
    changed = replace(advice, sensitivity=(moved, *advice.sensitivity[1:]))
    text = Document(advice_section(changed)).text
    assert f"with {first.label} it would be right-sized fixed fleet" in text
    assert "stays" not in text


def test_the_replica_economics(advice: Advice) -> None:
    text = Document(advice_section(advice)).text
    e = advice.economics
    for load, per_million in e.cost_per_million_by_load:
        assert f"At {load:.0%} load {display(per_million, 'money_per_million')}" in text
    assert display(e.api_per_million, "money_per_million") in text
    assert f"Break-even utilization is {display(e.breakeven_utilization, 'ratio')}" in text
    never = replace(advice, economics=replace(e, breakeven_utilization=1.5))
    assert "could not beat the API even at full load" in Document(advice_section(never)).text


def test_what_the_model_leaves_out_is_listed(advice: Advice) -> None:
    text = Document(advice_section(advice)).text
    for words in ("Scale-up lag", "Latency", "Quality", "Routing", "Capacity per replica"):
        assert words in text


def test_without_advice_the_section_says_why() -> None:
    markup = advice_section(None, "no hour with traffic data in the period")
    text = Document(markup).text
    assert "no hour with traffic data in the period" in text
    assert "data-figure" not in markup and "<svg" not in markup


# ----------------------------------------------------------------------------- the review


def test_the_section_renders_inside_the_review(advice: Advice) -> None:
    report = make_report()
    # The review's period names the zone; the advice drawn from it carries the same.
    report = replace(report, advice=replace(advice, zone=report.timezone))
    markup = render_html(report)
    doc = Document(markup)
    assert doc.errors == []
    ids = re.findall(r'<section id="([^"]+)"', markup)
    assert ids.index("advice") == ids.index("summary") + 1
    assert ids.index("advice") < ids.index("projection")
    found = dict(doc.figures())
    assert len(found) == len(doc.figures())
    for key, value in expected_marks(advice).items():
        assert key in found, key
        assert (found[key] == "") if value == "" else float(found[key]) == value
    assert len([t for t, _ in doc.elements if t == "svg"]) == 5
    lowered = markup.lower()
    for needle in FORBIDDEN:
        assert needle not in lowered, needle
    assert "Europe/Berlin" in Document(section(markup, "advice")).text


def test_a_review_without_advice_says_why() -> None:
    report = replace(make_report(), advice_missing="capacity per replica: no capacity recorded")
    text = Document(section(render_html(report), "advice")).text
    assert "no capacity recorded" in text
    figures = json.loads(render_json(report))
    assert figures["advice"] is None
    assert not any(k.startswith("advice") for k in figures["figures"])


def test_html_csv_and_json_hold_the_same_advice_figures(advice: Advice) -> None:
    report = replace(make_report(), advice=advice)
    rows = {
        (r["section"], r["item"], r["measure"]): r["value"]
        for r in csv.DictReader(io.StringIO(render_csv(report)))
        if r["section"] != "meta"
    }
    document = json.loads(render_json(report))
    figures = document["figures"]
    for key, value in Document(render_html(report)).figures():
        section_name, rest = key.split(".", 1)
        item, measure = rest.rsplit(".", 1)
        place = figures[section_name][item] if item else figures[section_name]
        if value == "":
            assert rows[(section_name, item, measure)] == "" and place[measure] is None, key
        else:
            assert float(rows[(section_name, item, measure)]) == float(value), key
            assert place[measure] == float(value), key
    for (section_name, item, measure), value in rows.items():
        place = figures[section_name][item] if item else figures[section_name]
        want, unit = place[measure], unit_of(measure)
        if want is not None and is_money(unit):  # written with its cents, the same number
            assert value == f"{want:.{DECIMALS[unit]}f}", (section_name, item, measure)
            assert float(value) == want
        else:
            assert ("" if want is None else str(want)) == value
    advice_rows = {k: v for k, v in rows.items() if k[0].startswith("advice")}
    assert len(advice_rows) == len(list(advice_figures(advice)))
    week = [k for k in advice_rows if k[0] == "advice_week"]
    assert len(week) == 168 * 3
    assert rows[("advice", HYBRID_SCHEDULE, "cost")] == (
        f"{rounded(advice.outcome(HYBRID_SCHEDULE).cost, 'money'):.2f}"
    )
    assert document["advice"]["cheapest"] == advice.cheapest.key
    assert document["meta"]["advice_cheapest"] == advice.cheapest.key
    units = {
        (r["section"], r["measure"]): r["unit"]
        for r in csv.DictReader(io.StringIO(render_csv(report)))
    }
    assert units[("advice", "cost")] == "USD"
    assert units[("advice_replica", "capacity")] == "tokens per second"
    assert units[("advice_sensitivity", f"{SCHEDULED}_cost")] == "USD"


# ----------------------------------------------------------------------------- plan's table


def table_rows(table: str, names: list[str]) -> dict[str, list[str]]:
    """Each policy's figures, read back from the aligned columns."""
    out = {}
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.removeprefix("* ").strip())
        for name in names:
            if len(cells) == 8 and name.startswith(cells[0]) and name not in out:
                out[name] = cells[1:]
    return out


@pytest.mark.parametrize("which", ["advice", "lean"])
def test_the_table_shows_what_display_shows(which: str, request: pytest.FixtureRequest) -> None:
    result: Advice = request.getfixturevalue(which)
    table = render_table(result)
    assert max(len(line) for line in table.splitlines()) <= WIDTH
    names = [o.name for o in result.outcomes]
    rows = table_rows(table, names)
    assert sorted(rows) == sorted(names)
    measures = [m for m in POLICY_MEASURES if m != "replica_hours"]
    for outcome in result.outcomes:
        want = [
            display(figure(result, outcome.key, m), unit_of(m), result.currency) for m in measures
        ]
        assert rows[outcome.name] == want, outcome.name
    flat = " ".join(table.split())
    assert " ".join(verdict(result).split()) in flat
    cheapest = [line for line in table.splitlines() if line.startswith("* ")]
    assert len(cheapest) == 2 and cheapest[-1] == "* cheapest"
    assert result.cheapest.name.startswith(re.split(r"\s{2,}", cheapest[0][2:])[0])


def test_the_table_lists_the_schedules_economics_and_sensitivity(advice: Advice) -> None:
    table = render_table(advice)
    flat = " ".join(table.split())
    for key in (SCHEDULED, HYBRID_SCHEDULE):
        o = advice.outcome(key)
        assert " ".join(f"{o.name}: {o.summary}.".split()) in flat
    e = advice.economics
    assert f"{display(e.hourly_cost, 'money')} an hour" in flat
    for _, per_million in e.cost_per_million_by_load:
        assert display(per_million, "money_per_million") in flat
    assert f"Break-even utilization is {display(e.breakeven_utilization, 'ratio')}" in flat
    for case in advice.sensitivity:
        label = case.label[:1].upper() + case.label[1:]
        line = next(line for line in table.splitlines() if line.startswith(label + " "))
        cells = re.split(r"\s{2,}", line)
        cheapest = case.costs[case.cheapest]
        assert cells[1] == display(case.capacity, "tokens")
        assert cells[2] == display(case.ceiling, "ratio")
        assert display(cheapest, "money") in cells
        assert display(case.costs[AS_RUN] - cheapest, "money") == cells[-1]


def test_large_figures_wrap_the_names_within_the_width() -> None:
    big = advise(two_weeks(replicas=3.0, cost=REPLICA_COST * 100))
    table = render_table(big)
    assert max(len(line) for line in table.splitlines()) <= WIDTH
    rows = table_rows(table, [o.name for o in big.outcomes])
    for outcome in big.outcomes:
        assert rows[outcome.name][0] == display(outcome.cost, "money")
    policies = table.split("\n\n")[1].splitlines()
    assert any(line.startswith("  ") and "$" not in line for line in policies)  # a wrapped name


def test_huge_figures_put_each_name_above_its_figures() -> None:
    huge = advise(two_weeks(replicas=3.0, cost=REPLICA_COST * 10_000))
    table = render_table(huge)
    assert max(len(line) for line in table.splitlines()) <= WIDTH
    lines = table.splitlines()
    for outcome in huge.outcomes:
        named = next(i for i, line in enumerate(lines) if line.removeprefix("* ") == outcome.name)
        figures = re.split(r"\s{2,}", lines[named + 1].strip())
        assert figures[0] == display(outcome.cost, "money", huge.currency)
        assert figures[-1] == display(
            figure(huge, outcome.key, "saving_vs_all_api"), "money", huge.currency
        )


def test_the_week_names_the_time_zone_of_its_hours(advice: Advice) -> None:
    assert "Monday first, in the traffic's time zone," in Document(advice_section(advice)).text
    berlin = replace(advice, zone="Europe/Berlin")
    for markup in (advice_section(berlin), render_advice_page(berlin, "Plan")):
        assert "Monday first, in Europe/Berlin," in Document(markup).text
