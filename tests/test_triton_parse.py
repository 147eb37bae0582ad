"""Triton pages: the TensorRT-LLM families built from the backend's source yield the
figures of the README, a core-only real page is no engine, broken series spoil only
their model; the simulator's `triton` format reads back to exactly its state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from realparts.ports import free_port
from realparts.timeouts import scaled
from simulated_pages import SimClock, page_shape, template_text

from llm_cost_exporter.collectors.base import CollectorError, StaticPage
from llm_cost_exporter.collectors.http_client import HttpClient
from llm_cost_exporter.collectors.http_page import HttpPage
from llm_cost_exporter.collectors.registry import engine_collector
from llm_cost_exporter.collectors.triton import TritonCollector, TritonPageReader, parse_triton_page
from llm_cost_exporter.tools.simulator.engine import SimulatedEngine
from llm_cost_exporter.tools.simulator.formats import page_template
from llm_cost_exporter.tools.simulator.profiles import make_profile

ENGINES = Path(__file__).parent / "fixtures" / "engines"
PAGE = (ENGINES / "triton-trtllm-0.18.2-from-source.prom").read_text()
CORE = (ENGINES / "triton-2.51.0-core-real.prom").read_text()
LLM = 'model="tensorrt_llm"'


def with_value(page: str, series: str, value: str) -> str:
    pattern = re.compile(rf"^({re.escape(series)}) \S+$", re.M)
    changed, count = pattern.subn(lambda m: f"{m.group(1)} {value}", page)
    assert count == 1, series
    return changed


def second_llm(page: str, name: str = "llama_trtllm", scale: int = 1) -> str:
    """The TensorRT-LLM model's series again, for a second model `name` on the server."""
    lines = [ln for ln in page.splitlines() if LLM in ln and not ln.startswith("#")]
    out, renamed = [], f'model="{name}"'
    for line in lines:
        head, value = line.rsplit(" ", 1)
        number = float(value) * scale if "_token_len_sum" in head else float(value)
        out.append(f"{head.replace(LLM, renamed)} {number:g}")
    return page + "\n".join(out) + "\n"


def test_page_figures() -> None:
    (engine,) = parse_triton_page(PAGE)
    # The Triton model's name and version: the page names no served model.
    assert (engine.model, engine.engine) == ("tensorrt_llm", "1")
    assert engine.prompt_tokens == 120 + 48 + 200  # nv_llm_input_token_len_sum
    assert engine.generation_tokens == 30 + 12 + 64  # nv_llm_output_token_len_sum
    assert engine.cached_prompt_tokens == 0  # `reused` is a gauge of blocks: not read
    assert (engine.running, engine.waiting) == (2, 1)  # scheduled; waiting
    assert engine.requests == 3  # nv_inference_request_success of tensorrt_llm only
    assert engine.kv_capacity_tokens == 4096 * 64
    assert engine.kv_tokens == 12 * 64
    assert engine.kv_usage_ratio == 12 / 4096
    assert engine.started_at is None  # no _created: restarts are counter drops


def test_ensemble_and_other_models_report_no_tokens_and_are_not_readings() -> None:
    assert 'nv_inference_request_success{model="ensemble",version="1"} 3' in PAGE
    assert [r.model for r in parse_triton_page(PAGE)] == ["tensorrt_llm"]


def test_backend_before_018_waiting_is_active_minus_scheduled_and_usage_used_over_max() -> None:
    old = "\n".join(
        ln
        for ln in PAGE.splitlines()
        if 'request_type="waiting"' not in ln and 'kv_cache_block_type="fraction"' not in ln
    )
    (engine,) = parse_triton_page(old)
    assert (engine.running, engine.waiting) == (2, 3 - 2)
    assert engine.kv_usage_ratio == 12 / 4096


def test_core_only_real_page_is_no_engine_and_says_why() -> None:
    with pytest.raises(CollectorError) as error:
        parse_triton_page(CORE)
    assert error.value.reason == "no_engine_metrics"
    assert "no TensorRT-LLM token metrics" in str(error.value)
    assert "tensorrtllm backend" in str(error.value)


def test_backend_before_token_histograms_is_no_engine_naming_the_version() -> None:
    old = "\n".join(ln for ln in PAGE.splitlines() if "nv_llm_" not in ln)
    with pytest.raises(CollectorError) as error:
        parse_triton_page(old)
    assert error.value.reason == "no_engine_metrics"
    assert "before 0.16" in str(error.value)


def test_two_llm_models_are_two_readings() -> None:
    readings = {r.model: r for r in parse_triton_page(second_llm(PAGE, scale=2))}
    assert set(readings) == {"tensorrt_llm", "llama_trtllm"}
    assert readings["llama_trtllm"].prompt_tokens == 2 * 368


async def test_configured_model_names_the_reading() -> None:
    collector = engine_collector("triton", "http://e:8002/metrics", StaticPage(PAGE), "llama-3-8b")
    (engine,) = await collector.collect()
    assert (engine.model, engine.engine, engine.prompt_tokens) == ("llama-3-8b", "1", 368)


async def test_configured_model_sums_the_llm_models_serving_it() -> None:
    page = second_llm(PAGE, scale=2)
    collector = TritonCollector("http://e:8002/metrics", StaticPage(page), "llama-3-8b")
    (engine,) = await collector.collect()
    assert engine.model == "llama-3-8b"
    assert (engine.prompt_tokens, engine.generation_tokens) == (3 * 368, 3 * 106)
    assert (engine.running, engine.waiting, engine.requests) == (4, 2, 6)
    assert engine.kv_tokens == 2 * 12 * 64 and engine.kv_capacity_tokens == 2 * 4096 * 64
    assert engine.kv_usage_ratio == 12 / 4096


SCHEDULED = f'nv_trt_llm_request_metrics{{{LLM},request_type="scheduled",version="1"}}'
FRACTION = f'nv_trt_llm_kv_cache_block_metrics{{kv_cache_block_type="fraction",{LLM},version="1"}}'
USED = f'nv_trt_llm_kv_cache_block_metrics{{kv_cache_block_type="used",{LLM},version="1"}}'
SUCCESS = f'nv_inference_request_success{{{LLM},version="1"}}'


@pytest.mark.parametrize(
    ("series", "value", "field", "reason"),
    [
        (SCHEDULED, "NaN", "running", "non_finite"),
        (FRACTION, "1.5", "kv_usage_ratio", "out_of_range"),
        (FRACTION, "-0.1", "kv_usage_ratio", "negative"),
        (USED, "+Inf", "kv_tokens", "non_finite"),
        (SUCCESS, "-1", "requests", "negative"),
    ],
)
def test_an_unusable_gauge_is_unknown_and_the_tokens_count(
    series: str, value: str, field: str, reason: str
) -> None:
    readings = parse_triton_page(with_value(PAGE, series, value))
    (engine,) = readings
    assert getattr(engine, field) is None
    assert (engine.prompt_tokens, engine.generation_tokens) == (368, 106)
    assert readings.rejected == {reason: 1}


@pytest.mark.parametrize(
    ("series", "value", "reason"),
    [
        ("nv_llm_input_token_len_sum", "NaN", "non_finite"),
        ("nv_llm_output_token_len_sum", "-3", "negative"),
        ("nv_llm_input_token_len_sum", "1e17", "out_of_range"),
    ],
)
def test_an_unusable_token_sum_keeps_only_its_model_out(
    series: str, value: str, reason: str
) -> None:
    kind = "total_input_tokens" if "input" in series else "total_output_tokens"
    page = second_llm(PAGE)
    spoiled = f'{series}{{model="llama_trtllm",response_metric_type="{kind}",version="1"}}'
    readings = parse_triton_page(with_value(page, spoiled, value))
    assert [r.model for r in readings] == ["tensorrt_llm"]
    assert readings[0] == parse_triton_page(PAGE)[0]
    assert readings.rejected == {reason: 1}


@pytest.mark.parametrize(
    "line",
    [
        f'nv_llm_input_token_len_sum{{{LLM},response_metric_type="total_input_tokens" 368',
        f'nv_llm_input_token_len_sum{{{LLM},response_metric_type="total_input_tokens"}} lots',
    ],
)
def test_a_malformed_token_line_is_a_parse_error(line: str) -> None:
    original = (
        f'nv_llm_input_token_len_sum{{{LLM},response_metric_type="total_input_tokens",'
        'version="1"} 368'
    )
    page = PAGE.replace(original, line)
    assert page != PAGE
    with pytest.raises(CollectorError) as error:
        parse_triton_page(page)
    assert error.value.reason == "parse"


def test_garbage_is_no_engine() -> None:
    with pytest.raises(CollectorError) as error:
        parse_triton_page("<html><body>404 page not found</body></html>")
    assert error.value.reason == "no_engine_metrics"


@pytest.mark.parametrize("size", [1, 3, 17, 256, 4096])
def test_read_in_small_chunks_equals_whole(size: int) -> None:
    data = PAGE.encode()
    reader = TritonPageReader()
    for start in range(0, len(data), size):
        reader.feed(data[start : start + size])
    assert list(reader.readings()) == list(parse_triton_page(PAGE))


async def test_metrics_disabled_server_refuses_and_the_error_names_the_flag() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens: --allow-metrics=false
    async with HttpClient() as session:
        collector = TritonCollector(url, HttpPage(session, url, scaled(5), 1 << 20))
        with pytest.raises(CollectorError) as error:
            await collector.collect()
    assert error.value.reason == "connection"
    assert "--allow-metrics=false" in str(error.value)


# -- the simulator's `triton` format -----------------------------------------------


def test_template_is_the_fixture() -> None:
    assert template_text("triton") == PAGE


def test_simulated_pages_read_back_to_the_state_with_finished_counts() -> None:
    clock = SimClock()
    engine = SimulatedEngine(
        "sim-trtllm",
        2000.0,
        make_profile("steady", level=0.6),
        page_format="triton",
        acceleration=20.0,
        clock=clock,
        block_size=64,
    )
    template = page_template("triton")
    lagging = 0
    for _ in range(4):
        clock.t += 300.0
        state = engine.page_state()
        page = template.render(state).decode()
        assert page_shape(page) == page_shape(PAGE)
        (reading,) = parse_triton_page(page)
        assert (reading.model, reading.engine) == ("sim-trtllm", "1")
        assert reading.prompt_tokens == state.finished_prompt_tokens  # at request end
        assert reading.generation_tokens == state.finished_generation_tokens
        assert reading.cached_prompt_tokens == state.cached_prompt_tokens == 0
        assert (reading.running, reading.waiting) == (state.running, state.waiting)
        assert reading.requests == state.requests
        assert reading.kv_tokens == state.used_blocks * 64
        assert reading.kv_capacity_tokens == state.num_gpu_blocks * 64
        lagging += state.finished_generation_tokens < state.generation_tokens
    assert lagging  # the end-of-request sums really lag the live counts
