"""llama.cpp `llama-server` pages: the real capture, broken pages, the model's name
from `/v1/models`, and the simulator's `llamacpp` format read back."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest
from conftest import TESTS
from realparts.one_model_engine import EngineAnswers, OneModelEngine
from realparts.timeouts import scaled
from simulated_pages import page_shape

from llm_cost_exporter.collectors.base import CollectorError, StaticPage
from llm_cost_exporter.collectors.http_client import HttpClient
from llm_cost_exporter.collectors.http_page import HttpPage
from llm_cost_exporter.collectors.llamacpp import (
    LlamaCppCollector,
    LlamaCppPageReader,
    parse_llamacpp_page,
)
from llm_cost_exporter.collectors.registry import engine_collector
from llm_cost_exporter.tools.simulator.engine import SimulatedEngine
from llm_cost_exporter.tools.simulator.formats import PAGE_FORMATS
from llm_cost_exporter.tools.simulator.profiles import make_profile

REAL = (TESTS / "fixtures" / "engines" / "llamacpp-0c1e570-real.prom").read_text()
MODELS = {"object": "list", "data": [{"id": "stories260K.gguf", "object": "model"}]}
DISABLED = (
    b'{"error":{"code":501,"message":"This server does not support metrics endpoint. '
    b'Start it with `--metrics`","type":"not_supported_error"}}'
)


def with_value(page: str, name: str, value: str) -> str:
    changed, count = re.subn(rf"^{re.escape(name)} \S+$", f"{name} {value}", page, flags=re.M)
    assert count == 1, name
    return changed


def test_real_capture_counts_cached_prompt_tokens_apart() -> None:
    (reading,) = parse_llamacpp_page(REAL)
    # 9 computed + 8 reused from the cache: 17 prompt tokens served, 8 of them cached.
    assert (reading.prompt_tokens, reading.cached_prompt_tokens) == (17, 8)
    assert reading.generation_tokens == 16
    assert (reading.running, reading.waiting) == (0, 0)
    assert (reading.model, reading.engine) == ("", "")
    assert reading.kv_usage_ratio is None and reading.kv_tokens is None
    assert reading.kv_capacity_tokens is None
    assert reading.started_at is None and reading.requests is None


def test_six_significant_digits_of_a_large_counter_are_read() -> None:
    page = with_value(REAL, "llamacpp:tokens_predicted_total", "1.23457e+06")
    assert parse_llamacpp_page(page)[0].generation_tokens == 1_234_570


def test_an_old_build_has_kv_gauges_and_no_cached_count() -> None:
    page = (
        "# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total 33065\n"
        "# TYPE llamacpp:tokens_predicted_total counter\nllamacpp:tokens_predicted_total 7801\n"
        "# TYPE llamacpp:kv_cache_usage_ratio gauge\nllamacpp:kv_cache_usage_ratio 0.25\n"
        "# TYPE llamacpp:kv_cache_tokens gauge\nllamacpp:kv_cache_tokens 1024\n"
        "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 2\n"
        "# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 1\n"
    )
    (reading,) = parse_llamacpp_page(page)
    assert (reading.prompt_tokens, reading.cached_prompt_tokens) == (33065, 0)
    assert (reading.kv_usage_ratio, reading.kv_tokens, reading.kv_capacity_tokens) == (
        0.25,
        1024,
        None,
    )
    assert (reading.running, reading.waiting) == (2, 1)


@pytest.mark.parametrize("page", ["<html><body>nginx</body></html>", "", DISABLED.decode()])
def test_a_page_without_llamacpp_counters_has_no_engine_metrics(page: str) -> None:
    with pytest.raises(CollectorError) as error:
        parse_llamacpp_page(page)
    assert error.value.reason == "no_engine_metrics" and "--metrics" in str(error.value)


@pytest.mark.parametrize("value", ["twelve", "1_000", "-nan", ""])
def test_a_malformed_token_line_is_a_parse_error(value: str) -> None:
    page = REAL.replace("llamacpp:prompt_tokens_total 9", f"llamacpp:prompt_tokens_total {value}")
    with pytest.raises(CollectorError) as error:
        parse_llamacpp_page(page)
    assert error.value.reason == "parse"


def test_a_page_cut_before_the_generation_counter_is_a_parse_error() -> None:
    with pytest.raises(CollectorError) as error:
        parse_llamacpp_page(REAL[: REAL.index("# HELP llamacpp:tokens_predicted_total")])
    assert error.value.reason == "parse"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("llamacpp:prompt_tokens_total", "NaN", "non_finite"),
        ("llamacpp:prompt_tokens_cached_total", "-1", "negative"),
        ("llamacpp:tokens_predicted_total", "+Inf", "non_finite"),
        ("llamacpp:tokens_predicted_total", "1e16", "out_of_range"),
    ],
)
def test_an_unusable_token_counter_sits_the_cycle_out(name: str, value: str, reason: str) -> None:
    readings = parse_llamacpp_page(with_value(REAL, name, value))
    assert list(readings) == [] and readings.rejected == {reason: 1}
    assert name in readings.first_rejected


@pytest.mark.parametrize(
    ("name", "field"),
    [("llamacpp:requests_processing", "running"), ("llamacpp:requests_deferred", "waiting")],
)
def test_an_unusable_gauge_is_unknown_and_the_tokens_count(name: str, field: str) -> None:
    readings = parse_llamacpp_page(with_value(REAL, name, "-3"))
    assert getattr(readings[0], field) is None and readings[0].generation_tokens == 16
    assert readings.rejected == {"negative": 1}


def test_a_repeated_counter_is_counted_once() -> None:
    readings = parse_llamacpp_page(REAL + "llamacpp:prompt_tokens_total 999\n")
    assert readings[0].prompt_tokens == 17 and readings.rejected == {"duplicate": 1}


@pytest.mark.parametrize("chunk", [1, 3, 64, 4096])
def test_streamed_in_small_chunks_reads_the_same(chunk: int) -> None:
    reader = LlamaCppPageReader()
    page = REAL.encode()
    for start in range(0, len(page), chunk):
        reader.feed(page[start : start + chunk])
    assert list(reader.readings()) == list(parse_llamacpp_page(REAL))


# --- the collector: the model's name --------------------------------------------------


async def test_the_collector_names_the_model_from_v1_models() -> None:
    page = StaticPage(REAL, {"/v1/models": MODELS})
    (reading,) = await engine_collector("llamacpp", "t", page).collect()
    assert reading.model == "stories260K.gguf" and reading.prompt_tokens == 17


async def test_a_configured_model_needs_no_model_list() -> None:
    (reading,) = await LlamaCppCollector("t", StaticPage(REAL), model="tiny").collect()
    assert reading.model == "tiny"


@pytest.mark.parametrize("documents", [{}, {"/v1/models": {"data": []}}, {"/v1/models": [1]}])
async def test_no_model_name_fails_rather_than_counting_under_a_made_up_one(documents) -> None:
    with pytest.raises(CollectorError) as error:
        await LlamaCppCollector("t", StaticPage(REAL, documents)).collect()
    assert error.value.reason == "model_unknown" and "engines[].model" in str(error.value)


@pytest.fixture
def engine() -> Iterator[OneModelEngine]:
    answers = EngineAnswers(page=REAL.encode(), documents={"/v1/models": MODELS})
    with OneModelEngine(answers) as served:
        yield served


@pytest.fixture
async def session() -> AsyncIterator[HttpClient]:
    async with HttpClient() as session:
        yield session


def collector(engine: OneModelEngine, session: HttpClient) -> LlamaCppCollector:
    url = f"{engine.url}/metrics"
    return LlamaCppCollector(url, HttpPage(session, url, scaled(10), 1 << 20))


async def test_a_server_without_metrics_flag_fails_naming_the_flag(engine, session) -> None:
    engine.answers.status, engine.answers.content_type = 501, "application/json"
    engine.answers.page = DISABLED
    with pytest.raises(CollectorError) as error:
        await collector(engine, session).collect()
    assert error.value.reason == "http_status"
    assert "501" in str(error.value) and "--metrics" in str(error.value)


async def test_the_name_is_kept_and_read_again_after_a_restart_or_failure(engine, session) -> None:
    answers, reads = engine.answers, engine.answers.reads
    source = collector(engine, session)
    assert [r.model for r in await source.collect()] == ["stories260K.gguf"]
    await source.collect()
    assert reads["/v1/models"] == 1  # kept while the counters grow

    # A restart with another model: the counters drop, so the name is read again.
    answers.page = with_value(REAL, "llamacpp:tokens_predicted_total", "2").encode()
    answers.documents = {"/v1/models": {"data": [{"id": "other.gguf"}]}}
    assert [r.model for r in await source.collect()] == ["other.gguf"]
    assert reads["/v1/models"] == 2

    # A failed collection: the next one reads the name again.
    answers.status = 500
    with pytest.raises(CollectorError):
        await source.collect()
    answers.status = 200
    await source.collect()
    assert reads["/v1/models"] == 3

    # The model list failing while a name is known and the counters grow: kept.
    answers.page = with_value(REAL, "llamacpp:tokens_predicted_total", "3").encode()
    answers.documents = {}
    assert [r.model for r in await source.collect()] == ["other.gguf"]


# --- the simulator's llamacpp format ---------------------------------------------------


def _g(value: int) -> float:
    """What llama-server prints for a count: six significant digits."""
    return float(format(value, "g"))


def test_simulated_pages_read_back_to_the_engine_counts() -> None:
    now = [1_000.0]
    engine = SimulatedEngine(
        "llama-3.2-1b",
        800.0,
        make_profile("steady", level=0.6),
        page_format="llamacpp",
        clock=lambda: now[0],
    )
    seen = 0
    for step in (5.0, 30.0, 400.0, 4_000.0, 40_000.0):
        now[0] += step
        state = engine.page_state()
        (reading,) = parse_llamacpp_page(engine.render())
        computed = _g(state.prompt_tokens - state.cached_prompt_tokens)
        assert reading.prompt_tokens == computed + _g(state.cached_prompt_tokens)
        assert reading.cached_prompt_tokens == _g(state.cached_prompt_tokens)
        # Generated tokens are counted when a request ends: the finished count.
        assert reading.generation_tokens == _g(state.finished_generation_tokens)
        assert (reading.running, reading.waiting) == (state.running, state.waiting)
        seen += state.finished_generation_tokens < state.generation_tokens
    assert seen  # the lag showed
    assert engine.documents()["/v1/models"]["data"][0]["id"] == "llama-3.2-1b"


def test_simulated_page_has_the_templates_families_types_help_and_labels() -> None:
    now = [1_000.0]
    engine = SimulatedEngine(
        "m", 800.0, make_profile("steady"), page_format="llamacpp", clock=lambda: now[0]
    )
    now[0] += 3_600
    template = (TESTS / "fixtures" / "engines" / "llamacpp-0c1e570-real.prom").read_text()
    assert PAGE_FORMATS["llamacpp"].TEMPLATE == "llamacpp-0c1e570.prom"
    assert page_shape(engine.render().decode()) == page_shape(template)
