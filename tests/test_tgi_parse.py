"""TGI pages: the page built from TGI 3.3.7's metric definitions, broken pages, the
model's name from `/info`, and the simulator's `tgi` format read back."""

from __future__ import annotations

import re

import pytest
from conftest import TESTS
from simulated_pages import page_shape

from llm_cost_exporter.collectors.base import CollectorError, StaticPage
from llm_cost_exporter.collectors.registry import engine_collector
from llm_cost_exporter.collectors.tgi import TgiCollector, TgiPageReader, parse_tgi_page
from llm_cost_exporter.tools.simulator.engine import SimulatedEngine
from llm_cost_exporter.tools.simulator.profiles import make_profile

FIXTURE = TESTS / "fixtures" / "engines" / "tgi-3.3.7-from-source.prom"
PAGE = FIXTURE.read_text()
INFO = {"model_id": "meta-llama/Llama-3.1-8B-Instruct", "max_input_tokens": 4096}


def with_value(page: str, name: str, value: str) -> str:
    changed, count = re.subn(rf"^{re.escape(name)} \S+$", f"{name} {value}", page, flags=re.M)
    assert count == 1, name
    return changed


def without(page: str, family: str) -> str:
    """`page` without any line of `family` (as before TGI first touched it)."""
    return "".join(
        line
        for line in page.splitlines(keepends=True)
        if not re.match(rf"(# (HELP|TYPE) )?{family}(_bucket|_sum|_count)?[ {{]", line)
    )


def test_page_from_source_reads_its_stated_figures() -> None:
    (reading,) = parse_tgi_page(PAGE)
    # Input lengths of 9 validated requests (3 succeeded, 1 cancelled, 5 in flight).
    assert reading.prompt_tokens == 2457 and reading.cached_prompt_tokens == 0
    assert reading.generation_tokens == 257  # the 3 successful requests only
    assert reading.requests == 3
    assert (reading.running, reading.waiting) == (3, 2)
    assert (reading.kv_tokens, reading.kv_capacity_tokens) == (1574, 169_264)
    assert reading.kv_usage_ratio == pytest.approx(1574 / 169_264)
    assert reading.started_at is None and (reading.model, reading.engine) == ("", "")


def test_a_fresh_router_reads_zero_tokens() -> None:
    fresh = "# TYPE tgi_batch_max_total_tokens gauge\ntgi_batch_max_total_tokens 169264\n\n"
    (reading,) = parse_tgi_page(fresh)
    assert (reading.prompt_tokens, reading.generation_tokens, reading.requests) == (0, 0, 0)
    assert reading.running is None and reading.kv_capacity_tokens == 169_264


def test_requests_that_all_failed_validation_read_zero_tokens() -> None:
    page = 'tgi_request_count 4\ntgi_request_failure{err="validation"} 4\n'
    (reading,) = parse_tgi_page(page)
    assert (reading.prompt_tokens, reading.generation_tokens, reading.requests) == (0, 0, 0)


@pytest.mark.parametrize("family", ["tgi_request_generated_tokens", "tgi_request_input_length"])
def test_a_success_without_its_token_histogram_sits_the_cycle_out(family: str) -> None:
    readings = parse_tgi_page(without(PAGE, family))
    assert list(readings) == [] and readings.rejected == {}


@pytest.mark.parametrize("page", ["<html><body>nginx</body></html>", "", "up 1\n"])
def test_a_page_without_tgi_metrics_has_no_engine_metrics(page: str) -> None:
    with pytest.raises(CollectorError) as error:
        parse_tgi_page(page)
    assert error.value.reason == "no_engine_metrics"


@pytest.mark.parametrize("value", ["twelve", "1_000", "-nan", ""])
def test_a_malformed_token_sum_is_a_parse_error(value: str) -> None:
    page = PAGE.replace(
        "tgi_request_input_length_sum 2457", f"tgi_request_input_length_sum {value}"
    )
    with pytest.raises(CollectorError) as error:
        parse_tgi_page(page)
    assert error.value.reason == "parse"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("tgi_request_input_length_sum", "NaN", "non_finite"),
        ("tgi_request_generated_tokens_sum", "-1", "negative"),
        ("tgi_request_generated_tokens_sum", "1e16", "out_of_range"),
    ],
)
def test_an_unusable_token_sum_sits_the_cycle_out(name: str, value: str, reason: str) -> None:
    readings = parse_tgi_page(with_value(PAGE, name, value))
    assert list(readings) == [] and readings.rejected == {reason: 1}


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("tgi_queue_size", "waiting"),
        ("tgi_batch_current_size", "running"),
        ("tgi_request_success", "requests"),
        ("tgi_batch_current_max_tokens", "kv_tokens"),
    ],
)
def test_an_unusable_gauge_or_request_count_is_unknown_and_the_tokens_count(
    name: str, field: str
) -> None:
    readings = parse_tgi_page(with_value(PAGE, name, "-2"))
    assert getattr(readings[0], field) is None
    assert (readings[0].prompt_tokens, readings[0].generation_tokens) == (2457, 257)
    assert readings.rejected == {"negative": 1}


def test_kv_usage_is_unknown_when_the_batch_exceeds_the_capacity() -> None:
    (reading,) = parse_tgi_page(with_value(PAGE, "tgi_batch_max_total_tokens", "1000"))
    assert reading.kv_usage_ratio is None and reading.kv_tokens == 1574


@pytest.mark.parametrize("chunk", [1, 7, 512, 65536])
def test_streamed_in_small_chunks_reads_the_same(chunk: int) -> None:
    reader = TgiPageReader()
    page = PAGE.encode()
    for start in range(0, len(page), chunk):
        reader.feed(page[start : start + chunk])
    assert list(reader.readings()) == list(parse_tgi_page(PAGE))


async def test_the_collector_names_the_model_from_info() -> None:
    source = engine_collector("tgi", "t", StaticPage(PAGE, {"/info": INFO}))
    (reading,) = await source.collect()
    assert reading.model == "meta-llama/Llama-3.1-8B-Instruct" and reading.requests == 3


async def test_a_configured_model_needs_no_info() -> None:
    (reading,) = await TgiCollector("t", StaticPage(PAGE), model="llama-8b").collect()
    assert reading.model == "llama-8b"


async def test_the_prometheus_port_without_info_needs_a_configured_model() -> None:
    with pytest.raises(CollectorError) as error:
        await TgiCollector("t", StaticPage(PAGE)).collect()
    assert error.value.reason == "model_unknown"
    assert "/info" in str(error.value) and "engines[].model" in str(error.value)


def test_simulated_pages_read_back_to_the_engine_counts() -> None:
    now = [1_000.0]
    engine = SimulatedEngine(
        "tgi-model",
        900.0,
        make_profile("steady", level=0.7),
        page_format="tgi",
        clock=lambda: now[0],
    )
    for step in (5.0, 30.0, 400.0, 4_000.0, 40_000.0):
        now[0] += step
        state = engine.page_state()
        (reading,) = parse_tgi_page(engine.render())
        assert state.cached_prompt_tokens == 0  # TGI counts no prefix-cache hits
        assert reading.prompt_tokens == state.prompt_tokens  # recorded at admission
        assert reading.cached_prompt_tokens == 0
        assert reading.generation_tokens == state.finished_generation_tokens  # at success
        assert reading.requests == state.requests
        assert (reading.running, reading.waiting) == (state.running, state.waiting)
        assert reading.kv_tokens == state.used_blocks * state.block_size
        assert reading.kv_capacity_tokens == state.num_gpu_blocks * state.block_size
    assert engine.documents()["/info"]["model_id"] == "tgi-model"


def test_simulated_page_has_the_templates_families_types_help_and_labels() -> None:
    now = [1_000.0]
    engine = SimulatedEngine(
        "m", 900.0, make_profile("steady"), page_format="tgi", clock=lambda: now[0]
    )
    now[0] += 3_600
    rendered = engine.render().decode()
    assert page_shape(rendered) == page_shape(PAGE)
    # Counters as the Rust exporter prints them: whole numbers, no `_total`, no `.0`.
    assert re.search(r"^tgi_request_success \d+$", rendered, re.M)
