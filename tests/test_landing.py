"""The landing page says whether its figures are current, from real node states.

Its headline follows the sources (all up, partially up naming what is down,
all down) and the loop (starting, stale); no break-even verdict is given while
no engine answers or the loop has stalled; each window shows the span it
really covers.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

import pytest
from conftest import fixture_page, minimal_config_dict

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.accounting.windows import WindowFigures, blended_api_cost_per_million
from llm_cost_exporter.collectors.readings import EngineReading, GpuSnapshot
from llm_cost_exporter.collectors.vllm import parse_vllm_page
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon.landing import SIMULATED_GPU_COLLECTOR, page_window, render_landing
from llm_cost_exporter.daemon.landing_charts import (
    BOTTOM,
    HEIGHT,
    TOP,
    Line,
    LinearScale,
    line_chart,
    time_label,
    time_ticks,
    value_range,
)
from llm_cost_exporter.daemon.landing_format import Money, data_value, percent_axis, span
from llm_cost_exporter.daemon.landing_history import (
    SAMPLES,
    Sample,
    Since,
    sample_history,
    verdict_since,
)
from llm_cost_exporter.daemon.loop import LoopHealth

A = "http://a:8000/metrics"
B = "http://b:8000/metrics"
OK = LoopHealth("ok", 1.0)
IDLE = parse_vllm_page(fixture_page("vllm-0.32.0-cpu-idle.prom"))
BUSY = parse_vllm_page(fixture_page("vllm-0.32.0-cpu-busy.prom"))
VERDICTS = ("self-hosting is cheaper", "the API would be cheaper")


def node(
    answers: dict[str, bool],
    cycles: int = 2,
    step: float = 30.0,
    windows: list[str] | None = None,
) -> NodeState:
    """Engines A and B on GPUs 0 and 1; each answers (the busy page after the idle
    one, same model) or fails with a refused connection, every cycle."""
    config = config_from_mapping(
        minimal_config_dict(
            engines=[{"url": A, "gpus": [0]}, {"url": B, "gpus": [1]}],
            cost={"gpus": [{"model": "A100", "count": 2}], "gpu_prices_per_hour": {"A100": 2.0}},
            capacity={"tokens_per_second": 2000},
            windows=windows or ["1m", "1h"],
        )
    )
    state = NodeState(config, {}, ApiPrices(0.8, 0.08, 4.0), wall_clock=lambda: 1.8e9)
    for cycle in range(cycles):
        for url in (A, B):
            if answers.get(url, False):
                page = IDLE if cycle == 0 else BUSY
                state.record_engine_readings("vllm", url, page, 0.01)
            else:
                state.record_failure("vllm", url, "connection", "refused", 0.01, engine=True)
        state.advance(cycle * step)
    return state


def test_all_sources_up() -> None:
    html = render_landing(node({A: True, B: True}), OK)
    assert "<b class=good>All 2 sources up.</b>" in html
    assert any(verdict in html for verdict in VERDICTS)


def test_partially_up_names_what_is_down() -> None:
    html = render_landing(node({A: True, B: False}), OK)
    assert f"Partially up: 1 of 2 sources down (vllm {B})." in html
    assert "All 2 sources up" not in html
    # The node still has an engine answering: its verdict stands.
    assert any(verdict in html for verdict in VERDICTS)


def test_all_sources_down_gives_no_verdict() -> None:
    # Both engines served, then both went down: the figures are what they were.
    state = node({A: True, B: True}, cycles=2)
    for url in (A, B):
        state.record_failure("vllm", url, "connection", "refused", 0.01, engine=True)
    state.advance(90.0)
    html = render_landing(state, OK)
    assert "<b class=bad>All sources down: no figure below is current.</b>" in html
    assert "sources up" not in html
    assert not any(verdict in html for verdict in VERDICTS)
    assert "unknown (no engine answers)" in html


def test_a_model_whose_engines_are_down_gets_no_verdict() -> None:
    state = node({A: True, B: False}, cycles=2)
    other = parse_vllm_page(fixture_page("vllm-0.10.0-reconstructed.prom"))
    for now in (60.0, 90.0):  # B serves another model, then goes down
        state.record_engine_readings("vllm", A, BUSY, 0.01)
        state.record_engine_readings("vllm", B, other, 0.01)
        state.advance(now)
    state.record_engine_readings("vllm", A, BUSY, 0.01)
    state.record_failure("vllm", B, "connection", "refused", 0.01, engine=True)
    state.advance(120.0)
    html = render_landing(state, OK)
    rows = {
        row.split("</td>", 1)[0]: row
        for row in html.split("<h2>Cost by model</h2>", 1)[1].split("<h2>", 1)[0].split("<tr><td>")
    }
    assert "unknown (no engine answers)" in rows["llama-3.1-8b"]
    assert any(verdict in rows["tiny-llama"] for verdict in VERDICTS)


def test_stale_and_starting_say_so() -> None:
    state = node({A: True, B: True})
    stale = render_landing(state, LoopHealth("stalled", 95.0))
    assert "Stale: no collection has finished for 1m 35s" in stale
    assert "All 2 sources up." in stale  # as of the last collection
    assert not any(verdict in stale for verdict in VERDICTS)
    assert "unknown (stale)" in stale
    starting = render_landing(node({}, cycles=0), LoopHealth("starting", 1.0))
    assert "Starting: the first collection has not finished yet." in starting
    assert "collecting…" in starting


@pytest.mark.parametrize(
    ("cycles", "step", "covers"),
    [(2, 10.0, ("10s", "10s")), (3, 30.0, ("1m", "1m")), (100, 60.0, ("1m", "1h"))],
)
def test_each_window_shows_the_span_it_covers(cycles: int, step: float, covers: tuple) -> None:
    html = render_landing(node({A: True, B: True}, cycles, step), OK)
    for window, covered in zip(("1m", "1h"), covers, strict=True):
        assert f"<tr><td>{window}</td><td>{covered}</td>" in html


# --- the headline, the page's window and the refresh -------------------------------


def headline_figures(html: str) -> dict[str, tuple[str, str, str]]:
    """data-figure -> (data-window, data-value, shown text) of the headline."""
    headline = html.split("<section class=headline>", 1)[1].split("</section>", 1)[0]
    return {
        name: (window, value, shown)
        for name, window, value, shown in re.findall(
            r'data-figure="([a-z_]+)"(?: data-window="([^"]*)")? data-value="([^"]*)">([^<]*)<',
            headline,
        )
    }


@pytest.mark.parametrize(
    ("windows", "chosen"),
    [
        ({"1m": 60.0, "5m": 300.0, "1h": 3600.0}, "1h"),
        ({"5m": 300.0, "6h": 21600.0}, "5m"),
        ({"2h": 7200.0, "1d": 86400.0}, "2h"),
        ({"30s": 30.0}, "30s"),
    ],
)
def test_the_page_window_is_the_longest_up_to_an_hour(windows: dict, chosen: str) -> None:
    assert page_window(windows) == (chosen, windows[chosen])


def test_headline_figures_are_the_page_windows() -> None:
    state = node({A: True, B: True}, cycles=10, step=30.0)
    html = render_landing(state, OK)
    figures = headline_figures(html)
    window = state.window(3600.0)
    assert window is not None
    for name, attr in (
        ("cost_per_million", "effective_cost_per_million"),
        ("api_cost_per_million", "api_cost_per_million"),
        ("utilization", "utilization"),
        ("breakeven_utilization", "breakeven_utilization"),
    ):
        assert figures[name][:2] == ("1h", data_value(getattr(window, attr))), name
    assert figures["spend"][1] == repr(state.accrual.spend_total)
    assert figures["hourly_cost"][1:] == ("5.2", "$5.20")
    assert "Over the last 1h (covering 4m 30s)" in html
    assert "Over the last 1h: the longest configured window up to 1h." in html


def served(tokens: float) -> list[EngineReading]:
    """One rank's counters after `tokens` tokens, 70% of them prompt."""
    return [EngineReading("m", "0", tokens * 0.7, 0.0, tokens * 0.3, 1, 0, *[None] * 3, 1.0)]


def test_the_headline_says_since_when() -> None:
    # 20 minutes of busy traffic, then none: over its 5m window the node stops beating
    # the API a few minutes later, and the page says since when.
    state = node({}, cycles=0, windows=["5m", "2h"])  # 5m is the page window
    verdicts = {}
    for now in range(0, 40 * 60 + 1, 30):
        for url in (A, B):
            state.record_engine_readings("vllm", url, served(1000.0 * min(now, 1200)), 0.01)
        state.advance(float(now))
        figure = state.window(300.0)
        if figure is not None:
            verdicts[now] = figure.cost_ratio <= 1
    flipped = min(t for t in verdicts if not any(verdicts[u] for u in verdicts if u >= t))
    assert 1200 < flipped < 1500 and verdicts[flipped - 30]
    html = render_landing(state, OK)
    assert "Not beating the API: the API would be cheaper" in html
    when = datetime.fromtimestamp(1.8e9 - 1 - (2400 - flipped), timezone.utc)
    assert (
        f"The API has been cheaper since {when:%Y-%m-%d %H:%M} UTC ({span(2400 - flipped)})."
        in html
    )


def test_a_verdict_held_all_along_says_so() -> None:
    state = node({}, cycles=0)
    for now in range(0, 20 * 60 + 1, 30):  # too little traffic to pay for the GPUs
        for url in (A, B):
            state.record_engine_readings("vllm", url, served(100.0 * now), 0.01)
        state.advance(float(now))
    html = render_landing(state, OK)
    assert "The API has been cheaper all along the 19m 30s of history kept" in html
    as_of = render_landing(state, LoopHealth("ok", 5.0))
    assert 'datetime="2027-01-15T07:59:55+00:00">2027-01-15 07:59:55 UTC</time>' in as_of


def test_the_main_element_changes_with_each_cycle_and_the_loop_state() -> None:
    state = node({A: True, B: True}, cycles=2)
    key = re.compile(r'<main data-cycle="([^"]+)" data-interval="5">')
    first = key.search(render_landing(state, OK))
    stalled = key.search(render_landing(state, LoopHealth("stalled", 95.0)))
    state.record_engine_readings("vllm", A, BUSY, 0.01)
    state.advance(60.0)
    later = key.search(render_landing(state, OK))
    assert first and stalled and later
    assert len({first.group(1), stalled.group(1), later.group(1)}) == 3


def test_the_page_refreshes_by_script_and_fits_a_phone() -> None:
    html = render_landing(node({A: True, B: True}), OK)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert 'http-equiv="refresh"' not in html
    script = html.split("<script>", 1)[1].split("</script>", 1)[0]
    assert "fetch(location.pathname" in script and "replaceWith(next)" in script
    assert "dataset.cycle" in script
    assert "</main>" in html.split("<script>", 1)[0]  # the script is not swapped itself
    assert "http://" not in html.replace("http://a:8000", "").replace("http://b:8000", "")
    for table in re.findall(r"(.{0,20})<table>", html):
        assert table.endswith("<div class=scroll>"), table


def money_columns(table: str) -> dict[int, set[int]]:
    """Column index -> the numbers of decimals its money cells show."""
    columns: dict[int, set[int]] = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        for index, cell in enumerate(re.findall(r"<td[^>]*>(.*?)</td>", row)):
            money = re.fullmatch(r"-?\$[\d,]+(?:\.(\d+))?", cell)
            if money:
                columns.setdefault(index, set()).add(len(money.group(1) or ""))
    return columns


def test_money_in_a_column_has_one_number_of_decimals() -> None:
    # Very busy for 50 minutes, then quiet: over 1h a fraction of a cent per 1M tokens,
    # over the last minute more than a dollar; one column shows both alike.
    state = node({}, cycles=0)
    tokens = 0.0
    for now in range(0, 3600 + 1, 30):
        tokens += 30 * (200_000 if now <= 3000 else 500)
        for url in (A, B):
            state.record_engine_readings("vllm", url, served(tokens), 0.01)
        state.advance(float(now))
    html = render_landing(state, OK)
    tables = re.findall(r"<table>.*?</table>", html, re.S)
    windows = next(t for t in tables if "<th>window</th>" in t)
    assert money_columns(windows) == {3: {4}, 4: {2}}  # cost per 1M, API-equivalent per 1M
    for row, cost in (("1m", r"\$1\.\d{4}"), ("1h", r"\$0\.00\d\d")):
        assert re.search(
            rf"<tr><td>{row}</td>(<td[^>]*>[^<]*</td>){{2}}<td class=num>{cost}<", html
        )
    for table in tables:
        assert all(len(decimals) == 1 for decimals in money_columns(table).values()), table


def test_a_node_with_simulated_gpus_says_so() -> None:
    state = node({A: True, B: True})
    assert "<h2>GPUs</h2>" in render_landing(state, OK)
    state.record_gpu_snapshot(SIMULATED_GPU_COLLECTOR, "local", GpuSnapshot("sim", ()), 0.0, 60.0)
    html = render_landing(state, OK)
    assert "<h2>GPUs (simulated)</h2>" in html and "<h2>GPUs</h2>" not in html


# --- money --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "value", "shown"),
    [
        ("USD", 1.02, "$1.02"),
        ("USD", 0.6544, "$0.65"),
        ("USD", 1234.5, "$1,234.50"),
        ("USD", -2.5, "-$2.50"),
        ("USD", -0.001, "$0.00"),
        ("USD", 0.0, "$0.00"),
        ("EUR", 2.5, "EUR 2.50"),
        ("JPY", 1234.4, "JPY 1,234"),
        ("KWD", 1.2346, "KWD 1.235"),
        ("USD", None, "–"),
        ("USD", math.nan, "–"),
        ("USD", math.inf, "∞"),
    ],
)
def test_amounts_keep_the_currencys_minor_unit(currency: str, value, shown: str) -> None:
    assert Money.amounts(currency)(value) == shown


@pytest.mark.parametrize(
    ("currency", "column", "decimals"),
    [
        ("USD", [0.45, 1.73], 2),
        ("USD", [0.01, 1.5], 2),
        ("USD", [0.0042, 1.73], 4),
        ("USD", [0.0099], 4),
        ("USD", [0.05, 0.0005], 5),
        ("USD", [1.2e-7], 6),
        ("USD", [0.0, 1.2], 2),
        ("USD", [math.inf, math.nan, None, 0.5], 2),
        ("USD", [], 2),
        ("JPY", [12.0, 0.5], 2),
        ("JPY", [12.0, 3.0], 0),
        ("KWD", [0.0042], 3),
        ("KWD", [0.00042], 5),
    ],
)
def test_prices_get_the_decimals_their_smallest_needs(
    currency: str, column: list, decimals: int
) -> None:
    money = Money.prices(currency, column)
    assert money.decimals == decimals
    for value in column:
        if value is not None and math.isfinite(value):
            shown = money(value).split(" ")[-1].lstrip("$")
            assert len(shown.partition(".")[2]) == decimals, shown


@pytest.mark.parametrize(
    ("currency", "ticks", "labels"),
    [
        ("USD", [0.0, 0.5, 1.0], ["$0.00", "$0.50", "$1.00"]),
        ("USD", [0.0, 2.5, 5.0], ["$0.00", "$2.50", "$5.00"]),
        ("USD", [0.0, 0.025, 0.05], ["$0.000", "$0.025", "$0.050"]),
        ("USD", [0.0, 0.0025, 0.005], ["$0.0000", "$0.0025", "$0.0050"]),
        ("USD", [0.0, 1000.0, 2000.0], ["$0.00", "$1,000.00", "$2,000.00"]),
        ("JPY", [0.0, 250.0, 500.0], ["JPY 0", "JPY 250", "JPY 500"]),
    ],
)
def test_money_axes_show_every_tick_apart(currency: str, ticks: list, labels: list) -> None:
    axis = Money.axis(currency, ticks)
    assert [axis(t) for t in ticks] == labels


@pytest.mark.parametrize(
    ("ticks", "labels"),
    [
        ([0.0, 0.25, 0.5], ["0%", "25%", "50%"]),
        ([0.0, 0.2, 0.4, 0.6], ["0%", "20%", "40%", "60%"]),
        ([0.0, 0.025, 0.05], ["0.0%", "2.5%", "5.0%"]),
        ([0.0, 1.0, 2.0], ["0%", "100%", "200%"]),
    ],
)
def test_percent_axes_show_every_tick_apart(ticks: list, labels: list) -> None:
    axis = percent_axis(ticks)
    assert [axis(t) for t in ticks] == labels


def test_data_values_read_back_exactly() -> None:
    for value in (0.1 + 0.2, 1e-9, 123456.789):
        assert float(data_value(value)) == value
    assert (data_value(None), data_value(math.nan), data_value(math.inf)) == ("", "", "+Inf")


# --- chart scaling ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "value", "pixel"),
    [
        (LinearScale(0.0, 10.0, 0.0, 100.0), 5.0, 50.0),
        (LinearScale(0.0, 10.0, 0.0, 100.0), 0.0, 0.0),
        (LinearScale(0.0, 2.0, 186.0, 44.0), 2.0, 44.0),  # up the page as values grow
        (LinearScale(0.0, 2.0, 186.0, 44.0), 0.5, 150.5),
        (LinearScale(100.0, 160.0, 40.0, 468.0), 130.0, 254.0),
        (LinearScale(3.0, 3.0, 0.0, 100.0), 3.0, 50.0),  # one point: the middle
    ],
)
def test_linear_scale(scale: LinearScale, value: float, pixel: float) -> None:
    assert scale(value) == pytest.approx(pixel)


@pytest.mark.parametrize(
    ("values", "ceiling", "ticks", "cut"),
    [
        ([0.5, 1.7], None, [0.0, 0.5, 1.0, 1.5, 2.0], False),
        ([0.21, 0.42], None, [0.0, 0.2, 0.4, 0.6], False),
        ([1.0, 100.0], 8.0, [0.0, 2.0, 4.0, 6.0, 8.0], True),
        ([1.0, 7.0], 8.0, [0.0, 2.0, 4.0, 6.0, 8.0], False),
        ([], None, [0.0, 0.25, 0.5, 0.75, 1.0], False),
        ([0.0, 0.0], None, [0.0, 0.25, 0.5, 0.75, 1.0], False),
        ([math.inf, 3.0], None, [0.0, 1.0, 2.0, 3.0], False),
    ],
)
def test_value_range_starts_at_zero_and_is_round(values, ceiling, ticks, cut) -> None:
    assert value_range(values, ceiling) == (ticks, cut)


@pytest.mark.parametrize(
    ("start", "end", "step", "first", "count"),
    [
        (1000.0, 1060.0, 15, 1005.0, 4),
        (1000.0, 1600.0, 120, 1080.0, 5),
        (0.0, 3600.0, 900, 0.0, 5),
        (1_800_000_100.0, 1_800_086_500.0, 21600, 1_800_014_400.0, 4),
        (50.0, 52.0, 1, 50.0, 3),
    ],
)
def test_time_ticks_are_round_wall_times(start, end, step, first, count) -> None:
    ticks, chosen = time_ticks(start, end)
    assert chosen == step
    assert ticks[0] == first and len(ticks) == count
    assert all(start <= t <= end and t % step == 0 for t in ticks)


def test_time_labels_show_seconds_only_when_ticks_are_seconds_apart() -> None:
    assert time_label(1.8e9 + 5, 15) == "08:00:05"
    assert time_label(1.8e9 + 5, 60) == "08:00"


def test_a_chart_breaks_its_line_at_gaps_and_holds_cut_values_at_the_edge() -> None:
    svg = line_chart(
        "cost",
        "Cost",
        [0.0, 10.0, 20.0, 30.0, 40.0],
        [Line("cost", "cost", [1.0, 2.0, None, 50.0, 3.0], "#000")],
        lambda ticks: Money.axis("USD", ticks),
        "USD per 1M tokens",
        ceiling=4.0,
    )
    d = re.search(r'data-series="cost" d="([^"]+)"', svg)
    assert d
    points = re.findall(r"([ML])([\d.]+) ([\d.]+)", d.group(1))
    assert [p[0] for p in points] == ["M", "L", "M", "L"]
    top = LinearScale(0.0, 4.0, HEIGHT - BOTTOM, TOP)(4.0)
    assert float(points[2][2]) == pytest.approx(top, abs=0.05)  # 50 held at the cut
    assert "cut at $4.00" in svg and "USD per 1M tokens" in svg and ">UTC<" in svg


def test_a_chart_without_values_says_it_is_collecting() -> None:
    svg = line_chart(
        "x", "X", [0.0, 1.0], [Line("x", "x", [None, None], "#000")], lambda t: str, "u"
    )
    assert "collecting…" in svg and "<path" not in svg


# --- history samples ----------------------------------------------------------------


def test_the_newest_sample_is_the_headline_window() -> None:
    state = node({A: True, B: True}, cycles=300, step=30.0)
    fallback = blended_api_cost_per_million(state.history.latest())
    samples = sample_history(state.history, 3600.0, 2000.0, fallback)
    assert 2 < len(samples) <= SAMPLES
    assert samples[-1].age == 0.0
    assert repr(samples[-1].figures) == repr(state.window(3600.0))  # nan == nan too
    assert samples[0].figures is None  # the oldest cycle has no window before it
    assert [s.age for s in samples] == sorted((s.age for s in samples), reverse=True)
    kept = state.history.delta(math.inf)  # the history is cut to the longest window
    assert kept is not None and kept.time < 300 * 30.0
    assert samples[-1].spend == pytest.approx(kept.spend) and samples[0].spend == 0.0


def figures_of(ratio: float | None) -> WindowFigures:
    return WindowFigures(60.0, 1.0, 1.0, 0.0, 1.0, ratio, 0.5, 0.5)


@pytest.mark.parametrize(
    ("ratios", "now", "since"),
    [
        ([None, 2.0, 2.0, 0.5, 0.5], True, Since(10.0, False)),
        ([None, 0.5, 0.9, 1.0, 0.5], True, Since(30.0, True)),
        ([None, 0.5, 0.5, 0.5, 2.0], True, Since(0.0, False)),
        ([None, 0.5, math.nan, 2.0, 2.0], False, Since(10.0, False)),
        ([None, None], True, None),
    ],
)
def test_since_when_the_verdict_holds(ratios: list, now: bool, since: Since | None) -> None:
    ages = [10.0 * i for i in reversed(range(len(ratios)))]
    samples = [
        Sample(age, None if r is None else figures_of(r), 0.0)
        for age, r in zip(ages, ratios, strict=True)
    ]
    assert verdict_since(samples, now) == since
