"""The LMDeploy page rendered by LMDeploy's own metrics classes yields the figures of
its README; broken pages fail or spoil only their own rank; the simulator's
`lmdeploy` format reads back to exactly its state."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from realparts.loopback_http import LoopbackHttp, QuietHandler
from realparts.timeouts import scaled
from simulated_pages import SimClock, page_shape, template_text

from llm_cost_exporter.collectors.base import CollectorError, StaticPage
from llm_cost_exporter.collectors.http_client import HttpClient
from llm_cost_exporter.collectors.http_page import HttpPage
from llm_cost_exporter.collectors.lmdeploy import (
    LmdeployCollector,
    LmdeployPageReader,
    parse_lmdeploy_page,
)
from llm_cost_exporter.collectors.registry import engine_collector
from llm_cost_exporter.tools.simulator.engine import SimulatedEngine
from llm_cost_exporter.tools.simulator.formats import page_template
from llm_cost_exporter.tools.simulator.profiles import make_profile

FIXTURE = Path(__file__).parent / "fixtures" / "engines" / "lmdeploy-0.18.0-rendered.prom"
PAGE = FIXTURE.read_text()
MODEL = "internlm/internlm2_5-7b-chat"
LABELS = f'{{engine="0",model_name="{MODEL}"}}'


def with_value(page: str, series: str, value: str) -> str:
    pattern = re.compile(rf"^({re.escape(series)}) \S+$", re.M)
    changed, count = pattern.subn(lambda m: f"{m.group(1)} {value}", page)
    assert count == 1, series
    return changed


def rank_one(page: str) -> str:
    """The page's own series again, as data-parallel rank 1 (a second API server's)."""
    return page.replace('engine="0"', 'engine="1"')


def test_rendered_page_figures() -> None:
    (engine,) = parse_lmdeploy_page(PAGE)
    assert (engine.model, engine.engine) == (MODEL, "0")
    # 100 + 120 + 80 prompt tokens: counted at each request's first token, cached included.
    assert engine.prompt_tokens == 300
    # 64 of the finished second request; the running one's 32 count when it ends.
    assert engine.cached_prompt_tokens == 64
    assert engine.generation_tokens == 20 + 30 + 5
    assert (engine.running, engine.waiting, engine.kv_usage_ratio) == (1, 2, 0.25)
    assert engine.requests == 2
    assert engine.kv_capacity_tokens is None and engine.kv_tokens is None
    assert engine.started_at is None  # LMDeploy disables _created series


def test_page_before_014_has_no_cached_count_and_reads_as_all_computed() -> None:
    old = "\n".join(ln for ln in PAGE.splitlines() if "lmdeploy:cached_tokens_total" not in ln)
    (engine,) = parse_lmdeploy_page(old)
    assert (engine.prompt_tokens, engine.cached_prompt_tokens) == (300, 0)


def test_ranks_are_kept_apart_and_add_up() -> None:
    lines = [ln for ln in PAGE.splitlines() if ln.startswith("lmdeploy:")]
    page = PAGE + rank_one("\n".join(lines).replace("} 300.0", "} 500.0")) + "\n"
    readings = {r.engine: r for r in parse_lmdeploy_page(page)}
    assert set(readings) == {"0", "1"}
    assert readings["1"].prompt_tokens == 500
    assert sum(r.prompt_tokens for r in readings.values()) == 800
    assert sum(r.generation_tokens for r in readings.values()) == 110


@pytest.mark.parametrize(
    ("metric", "field", "value", "reason"),
    [
        ("lmdeploy:num_requests_running", "running", "NaN", "non_finite"),
        ("lmdeploy:num_requests_waiting", "waiting", "-1.0", "negative"),
        ("lmdeploy:gpu_cache_usage_perc", "kv_usage_ratio", "1.5", "out_of_range"),
        ("lmdeploy:gpu_cache_usage_perc", "kv_usage_ratio", "+Inf", "non_finite"),
    ],
)
def test_an_unusable_gauge_is_unknown_and_the_tokens_count(
    metric: str, field: str, value: str, reason: str
) -> None:
    readings = parse_lmdeploy_page(with_value(PAGE, metric + LABELS, value))
    (engine,) = readings
    assert getattr(engine, field) is None
    assert (engine.prompt_tokens, engine.generation_tokens) == (300, 55)
    assert readings.rejected == {reason: 1}


@pytest.mark.parametrize(
    ("metric", "value", "reason"),
    [
        ("lmdeploy:prompt_tokens_total", "NaN", "non_finite"),
        ("lmdeploy:generation_tokens_total", "-5.0", "negative"),
        ("lmdeploy:cached_tokens_total", "1e17", "out_of_range"),
    ],
)
def test_an_unusable_token_counter_keeps_only_its_rank_out(
    metric: str, value: str, reason: str
) -> None:
    lines = "\n".join(ln for ln in PAGE.splitlines() if ln.startswith("lmdeploy:"))
    spoiled = with_value(rank_one(lines), metric + LABELS.replace('"0"', '"1"'), value)
    readings = parse_lmdeploy_page(PAGE + spoiled + "\n")
    assert [r.engine for r in readings] == ["0"]
    assert readings[0] == parse_lmdeploy_page(PAGE)[0]
    assert readings.rejected == {reason: 1}


@pytest.mark.parametrize(
    "page",
    [
        "<html><body>Welcome to nginx!</body></html>",
        '{"detail":"Not Found"}',
        "# HELP python_info Python platform information\npython_info 1.0\n",
    ],
)
def test_a_page_without_lmdeploy_counters_names_the_metrics_flag(page: str) -> None:
    with pytest.raises(CollectorError) as error:
        parse_lmdeploy_page(page)
    assert error.value.reason == "no_engine_metrics"
    assert "--disable-metrics" in str(error.value)


@pytest.mark.parametrize(
    "line",
    [
        f"lmdeploy:prompt_tokens_total{LABELS[:-1]} 300.0",
        f"lmdeploy:prompt_tokens_total{LABELS} three hundred",
        f"lmdeploy:prompt_tokens_total{LABELS}",
    ],
)
def test_a_malformed_token_line_is_a_parse_error(line: str) -> None:
    page = PAGE.replace(f"lmdeploy:prompt_tokens_total{LABELS} 300.0", line)
    assert page != PAGE
    with pytest.raises(CollectorError) as error:
        parse_lmdeploy_page(page)
    assert error.value.reason == "parse"


def test_a_page_cut_before_the_generation_counter_is_a_parse_error() -> None:
    with pytest.raises(CollectorError) as error:
        parse_lmdeploy_page(PAGE[: PAGE.index("lmdeploy:generation_tokens_total{")])
    assert error.value.reason == "parse"


@pytest.mark.parametrize("size", [1, 3, 17, 256, 4096])
def test_read_in_small_chunks_equals_whole(size: int) -> None:
    data = PAGE.encode()
    reader = LmdeployPageReader()
    for start in range(0, len(data), size):
        reader.feed(data[start : start + size])
    assert list(reader.readings()) == list(parse_lmdeploy_page(PAGE))


async def test_configured_model_names_the_readings() -> None:
    collector = engine_collector("lmdeploy", "http://e/metrics", StaticPage(PAGE), "internlm2.5")
    (engine,) = await collector.collect()
    assert (engine.model, engine.prompt_tokens) == ("internlm2.5", 300)


class NotMounted(QuietHandler):
    """An API server started with --disable-metrics: FastAPI's 404 for /metrics."""

    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"detail": "Not Found"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


async def test_metrics_disabled_server_is_an_http_error_naming_the_flag() -> None:
    with LoopbackHttp(NotMounted) as server:
        url = server.url + "/metrics"
        async with HttpClient() as session:
            collector = LmdeployCollector(url, HttpPage(session, url, scaled(5), 1 << 20))
            with pytest.raises(CollectorError) as error:
                await collector.collect()
    assert error.value.reason == "http_status"
    assert "404" in str(error.value) and "--disable-metrics" in str(error.value)


# -- the simulator's `lmdeploy` format ---------------------------------------------


def test_template_is_the_fixture() -> None:
    assert template_text("lmdeploy") == PAGE


def test_simulated_pages_read_back_to_the_state_with_live_and_finished_counts() -> None:
    clock = SimClock()
    engine = SimulatedEngine(
        "sim-lmdeploy",
        2000.0,
        make_profile("steady", level=0.6),
        page_format="lmdeploy",
        acceleration=20.0,
        clock=clock,
    )
    template = page_template("lmdeploy")
    lagging = 0
    for _ in range(4):
        clock.t += 300.0
        state = engine.page_state()
        page = template.render(state).decode()
        assert page_shape(page) == page_shape(PAGE)
        (reading,) = parse_lmdeploy_page(page)
        assert reading.model == "sim-lmdeploy"
        assert reading.prompt_tokens == state.prompt_tokens  # at the first token
        assert reading.generation_tokens == state.generation_tokens  # every step
        assert reading.cached_prompt_tokens == state.finished_cached_prompt_tokens  # at the end
        assert (reading.running, reading.waiting) == (state.running, state.waiting)
        assert reading.requests == state.requests
        assert reading.kv_usage_ratio == pytest.approx(state.used_blocks / state.num_gpu_blocks)
        lagging += state.finished_cached_prompt_tokens < state.cached_prompt_tokens
    assert lagging  # the end-of-request count really lags the live one
