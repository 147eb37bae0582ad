"""The landing page and the monthly review in a real browser (Debian's Chromium, headless).

Against the real `llm-cost-exporter --demo` process: the page runs without a
console error or an uncaught exception; its headline figures are the ones
/metrics gives for the same collection cycle; its charts are drawn with
several points each; its refresh brings a new "as of" time without navigating;
it fits a phone's width and reads without script. The review opens without an
error and shows the spend its JSON holds. Screenshots of each are kept as test
artifacts (LLMCOST_TEST_ARTIFACTS, else tests/artifacts/).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from realparts.browser import Browser, Page, available
from realparts.samples import Samples, page_samples
from realparts.timeouts import scaled
from test_demo import DemoProcess, has_live_figures
from test_report_html import make_report

from llm_cost_exporter.tools.report.html import render_html
from llm_cost_exporter.tools.report.tabular import render_json

pytestmark = [
    pytest.mark.realparts,
    pytest.mark.skipif(
        not available(), reason="needs Debian's chromium (tests/install-test-deps.sh)"
    ),
]

ARTIFACTS_ENV = "LLMCOST_TEST_ARTIFACTS"
WINDOWED = {
    "cost_per_million": "llmcost_effective_cost_per_million_tokens",
    "api_cost_per_million": "llmcost_api_equivalent_cost_per_million_tokens",
    "utilization": "llmcost_throughput_utilization_ratio",
    "breakeven_utilization": "llmcost_breakeven_utilization_ratio",
}
"""Headline figures over the page's window, and the gauge /metrics has them in."""
SUMMED = {"spend": "llmcost_cost_total", "hourly_cost": "llmcost_hourly_cost"}
"""Headline figures that are the sum of a family's components."""
CHARTS = {"cost", "utilization", "spend"}
MIN_POINTS = 3

FIGURES_JS = """
Object.fromEntries([...document.querySelectorAll("main .headline [data-figure]")].map(
  e => [e.dataset.figure, {value: e.dataset.value, window: e.dataset.window || "",
                           text: e.textContent.trim()}]))
"""
CHART_POINTS_JS = """
Object.fromEntries([...document.querySelectorAll("main svg.chart")].map(svg => [
  svg.dataset.chart,
  {width: svg.getBoundingClientRect().width,
   labels: [...svg.querySelectorAll("text")].map(t => t.textContent),
   paths: Object.fromEntries([...svg.querySelectorAll("path.line")].map(
     p => [p.dataset.series, (p.getAttribute("d").match(/[ML]/g) || []).length]))}]))
"""
AS_OF_JS = 'document.querySelector("main [data-figure=as_of]")?.getAttribute("datetime") || ""'


def artifacts() -> Path:
    directory = Path(os.environ.get(ARTIFACTS_ENV) or Path(__file__).parent / "artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header, which must be one."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def save_screenshot(page: Page, name: str, width: int) -> Path:
    path = page.screenshot(artifacts() / name)
    shot_width, height = png_size(path)
    assert shot_width == width and height > 200, (path, shot_width, height)
    return path


def shown_number(text: str) -> tuple[float, int]:
    """`$1,234.50` -> (1234.5, 2 decimals); `42.5%` -> (0.425, 3)."""
    number = re.search(r"-?[\d,]+(?:\.(\d+))?", text)
    assert number, f"no number in {text!r}"
    value = float(number.group(0).replace(",", ""))
    decimals = len(number.group(1) or "")
    if text.endswith("%"):
        return value / 100, decimals + 2
    return value, decimals


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    """The demo, once /metrics has tokens and windowed figures."""
    with DemoProcess(tmp_path_factory.mktemp("demo"), "demo.log") as process:
        deadline = time.monotonic() + scaled(60)
        while not has_live_figures(process.fetch("/metrics")):
            assert time.monotonic() < deadline, f"no live figures yet:\n{process.log()}"
            time.sleep(0.2)
        yield process


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as running:
        yield running


@pytest.fixture
def landing(demo: DemoProcess, browser: Browser) -> Iterator[Page]:
    page = browser.new_page()
    page.goto(demo.url + "/")
    yield page
    page.close()


def metrics(demo: DemoProcess) -> Samples:
    return page_samples(demo.fetch("/metrics"))


def summed(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def cycle_of(samples: Samples, figures: dict) -> bool:
    """The page's figures come from the cycle of these samples: spend grows every cycle,
    so an equal spend means the same one."""
    spend = summed(samples, SUMMED["spend"])
    return math.isclose(float(figures["spend"]["value"]), spend, rel_tol=1e-12)


def test_the_page_renders_without_console_errors(landing: Page, demo: DemoProcess) -> None:
    cycle = landing.evaluate('document.querySelector("main").dataset.cycle')
    # Let the refresh swap the main element at least once: its script runs too.
    landing.wait_for(
        f'document.querySelector("main").dataset.cycle !== {json.dumps(cycle)}',
        what="a refreshed cycle",
    )
    assert landing.settle() == []
    verdict = landing.evaluate('document.querySelector("main .headline .verdict").innerText')
    # The demo's engines answer and are priced: the verdict is given, not withheld.
    assert verdict.startswith(("Beating the API:", "Not beating the API:")), verdict
    save_screenshot(landing, "landing.png", 1280)


def test_the_demo_gpus_are_titled_simulated(landing: Page) -> None:
    titles = landing.evaluate('[...document.querySelectorAll("main h2")].map(h => h.innerText)')
    assert "GPUs (simulated)" in titles, titles


def test_headline_figures_are_those_of_metrics_at_the_same_cycle(
    landing: Page, demo: DemoProcess
) -> None:
    # The page refreshes once an interval, as the daemon collects: their phases can stay
    # locked with the page's read just before a cycle ends. So /metrics is read all along
    # and the page's figures are looked for among every cycle it showed.
    seen: list[Samples] = []
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            seen.append(metrics(demo))
            stop.wait(0.1)

    recorder = threading.Thread(target=record, daemon=True)
    recorder.start()
    try:
        deadline = time.monotonic() + scaled(60)
        while True:
            figures = landing.evaluate(FIGURES_JS)
            samples = next((s for s in reversed(seen) if cycle_of(s, figures)), None)
            if samples is not None:
                break
            assert time.monotonic() < deadline, f"no cycle of /metrics matches the page: {figures}"
            cycle = landing.evaluate('document.querySelector("main").dataset.cycle')
            landing.wait_for(
                f'document.querySelector("main").dataset.cycle !== {json.dumps(cycle)}'
            )
    finally:
        stop.set()
        recorder.join()
    windows = {figures[name]["window"] for name in WINDOWED}
    assert len(windows) == 1 and windows != {""}, figures
    (window,) = windows
    expected = {
        **{name: samples[(metric, (("window", window),))] for name, metric in WINDOWED.items()},
        **{name: summed(samples, metric) for name, metric in SUMMED.items()},
    }
    for name, value in expected.items():
        figure = figures[name]
        given = float(figure["value"])
        if name in WINDOWED:
            assert given == value, (name, figure, value)
        else:  # a sum: the page may add the components in another order
            assert math.isclose(given, value, rel_tol=1e-12), (name, figure, value)
        shown, decimals = shown_number(figure["text"])
        assert math.isclose(shown, value, abs_tol=0.5 * 10**-decimals + 1e-12), (name, figure)


def test_charts_are_drawn_with_several_points(landing: Page) -> None:
    enough = (
        f"(() => {{ const c = {CHART_POINTS_JS}; return Object.keys(c).length === {len(CHARTS)}"
        f" && Object.values(c).every(x => Object.values(x.paths).some(n => n >= {MIN_POINTS}))"
        " && c; })()"
    )
    charts = landing.wait_for(enough, timeout=60, what="charts of several points")
    assert set(charts) == CHARTS
    assert charts["cost"]["paths"]["cost_per_million"] >= MIN_POINTS
    assert charts["cost"]["paths"]["api_cost_per_million"] >= MIN_POINTS
    assert charts["utilization"]["paths"]["utilization"] >= MIN_POINTS
    assert charts["utilization"]["paths"]["breakeven_utilization"] >= MIN_POINTS
    assert charts["spend"]["paths"]["spend"] >= MIN_POINTS
    for name, chart in charts.items():
        assert chart["width"] > 200, name
        assert "UTC" in chart["labels"], name  # the time axis says its zone
        assert any(label.startswith("$") for label in chart["labels"]) or name == "utilization"
    assert "cost per 1M" in charts["cost"]["labels"]
    assert "break-even" in charts["utilization"]["labels"]


def test_the_refresh_brings_a_new_as_of_without_navigating(landing: Page) -> None:
    first = landing.wait_for(AS_OF_JS, what="an as-of time")
    navigations = list(landing.navigations)
    landing.evaluate("window.stayedHere = 'yes'")
    later = landing.wait_for(
        f"(() => {{ const t = {AS_OF_JS}; return t && t !== {json.dumps(first)} && t; }})()",
        what="a new as-of time",
    )
    assert later > first  # ISO times of one zone sort as they happened
    assert landing.evaluate("window.stayedHere") == "yes"
    assert landing.navigations == navigations
    assert landing.evaluate('performance.getEntriesByType("navigation").length') == 1
    assert landing.settle() == []


def test_the_page_fits_a_phone(demo: DemoProcess, browser: Browser) -> None:
    page = browser.new_page(width=390, height=844, mobile=True)
    try:
        page.goto(demo.url + "/")
        layout = page.evaluate(
            "({width: document.documentElement.clientWidth,"
            " scroll: document.documentElement.scrollWidth,"
            ' tables: document.querySelectorAll("main table").length,'
            ' scrolled: document.querySelectorAll("main .scroll > table").length})'
        )
        # The viewport meta makes the layout the phone's width; wide tables scroll in
        # their own box instead of widening the page.
        assert layout["width"] == 390 and layout["scroll"] <= 390, layout
        assert layout["tables"] == layout["scrolled"] > 0, layout
        assert page.settle() == []
        save_screenshot(page, "landing-phone.png", 390)
    finally:
        page.close()


def test_the_page_reads_without_script(demo: DemoProcess, browser: Browser) -> None:
    page = browser.new_page(script=False)
    try:
        page.goto(demo.url + "/")
        figures = page.evaluate(FIGURES_JS)
        assert {*WINDOWED, *SUMMED} <= set(figures)
        assert page.evaluate('document.querySelectorAll("main svg.chart").length') == len(CHARTS)
        assert "reload to update" in page.evaluate("document.body.innerText")
    finally:
        page.close()


def test_the_review_opens_without_errors_and_shows_its_spend(
    browser: Browser, tmp_path: Path
) -> None:
    report = make_report()
    page_file, json_file = tmp_path / "review.html", tmp_path / "review.json"
    page_file.write_text(render_html(report), encoding="utf-8")
    json_file.write_text(render_json(report), encoding="utf-8")
    spend = json.loads(json_file.read_text())["figures"]["totals"]["spend"]
    page = browser.new_page()
    try:
        page.goto(page_file.as_uri())
        shown = page.evaluate(
            '(() => { const e = document.querySelector("[data-figure=\\"totals..spend\\"]");'
            " return e && {value: e.dataset.value, text: e.textContent.trim()}; })()"
        )
        assert shown is not None
        assert float(shown["value"]) == spend
        number, decimals = shown_number(shown["text"])
        assert math.isclose(number, spend, abs_tol=0.5 * 10**-decimals), (shown, spend)
        assert page.settle() == []
        save_screenshot(page, "review.png", 1280)
    finally:
        page.close()
