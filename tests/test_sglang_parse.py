"""SGLang pages yield the figures written in the fixture README, and the simulator's
`sglang` format parses back to exactly the counts it was rendered from."""

from __future__ import annotations

import asyncio
import re

import pytest
from conftest import TESTS
from prometheus_client.parser import text_string_to_metric_families
from simulated_pages import SimClock, page_shape, template_text

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.tokens import TokenLedger
from llm_cost_exporter.collectors.base import CollectorError, StaticPage
from llm_cost_exporter.collectors.registry import engine_collector
from llm_cost_exporter.collectors.sglang import SglangPageReader, parse_sglang_page
from llm_cost_exporter.tools.simulator.engine import SimulatedEngine
from llm_cost_exporter.tools.simulator.profiles import make_profile

PAGE = (TESTS / "fixtures" / "engines" / "sglang-0.5.23-rendered.prom").read_text()
SCHED = 'engine_type="unified",model_name="tiny-llama",moe_ep_rank="0",pp_rank="0",tp_rank="0"'
TOKENIZER = 'engine_type="unified",is_streaming="true",model_name="tiny-llama"'


def moded(name: str, mode: str) -> str:
    """A scheduler series of the fixture with a `mode` label."""
    return f"{name}{{{SCHED.replace(',model_name', f',mode=!{mode}!,model_name')}}}".replace(
        "!", '"'
    )


def with_value(page: str, series: str, value: str) -> str:
    pattern = re.compile(rf"^({re.escape(series)}) \S+$", re.M)
    changed, count = pattern.subn(lambda m: f"{m.group(1)} {value}", page)
    assert count == 1, series
    return changed


def test_fixture_reads_live_prompt_tokens_and_finished_generation() -> None:
    (engine,) = parse_sglang_page(PAGE)
    assert (engine.model, engine.engine) == ("tiny-llama", "")
    # prefill_effective_tokens_total: input 106 + device_hit 64; cached = the hits.
    assert (engine.prompt_tokens, engine.cached_prompt_tokens) == (170, 64)
    assert engine.generation_tokens == 40  # generation_tokens_total, 30 + 10
    assert (engine.running, engine.waiting) == (3, 2)
    assert engine.kv_usage_ratio == pytest.approx(0.42)
    assert (engine.kv_tokens, engine.kv_capacity_tokens) == (4200, 10_000)
    assert engine.started_at is None  # multiprocess pages carry no _created series
    assert engine.requests is None  # num_requests_total counts aborted requests too
    assert engine.preemptions is None and engine.transferred_prompt_tokens is None


def test_live_counters_move_before_requests_finish() -> None:
    effective = moded("sglang:prefill_effective_tokens_total", "input")
    (engine,) = parse_sglang_page(with_value(PAGE, effective, "1106.0"))
    assert engine.prompt_tokens == 1170 and engine.generation_tokens == 40


def test_realtime_counters_are_read_where_effective_ones_are_missing() -> None:
    page = "\n".join(ln for ln in PAGE.split("\n") if "prefill_effective" not in ln)
    page = with_value(
        page,
        moded("sglang:realtime_tokens_total", "prefill_compute"),
        "206.0",
    )
    (engine,) = parse_sglang_page(page)
    assert (engine.prompt_tokens, engine.cached_prompt_tokens) == (270, 64)


def test_end_of_request_counters_alone_are_read_by_cache_source() -> None:
    labels = 'engine_type="unified",model_name="m"'
    page = (
        f'sglang:prompt_tokens_total{{{labels},is_streaming="true"}} 120\n'
        f'sglang:prompt_tokens_total{{{labels},is_streaming="false"}} 50\n'
        f'sglang:generation_tokens_total{{{labels},is_streaming="true"}} 9\n'
        f'sglang:cached_tokens_total{{cache_source="device",{labels}}} 30\n'
        f'sglang:cached_tokens_total{{cache_source="host",{labels}}} 8\n'
        f'sglang:cached_tokens_total{{cache_source="total",{labels}}} 4\n'
    )
    (engine,) = parse_sglang_page(page)
    assert (engine.prompt_tokens, engine.cached_prompt_tokens, engine.generation_tokens) == (
        170,
        42,
        9,
    )
    assert engine.running is None and engine.kv_tokens is None


def _rank_lines(dp: str, tp: str, pp: str, compute: int, running: int) -> str:
    labels = f'dp_rank="{dp}",engine_type="unified",model_name="m",pp_rank="{pp}",tp_rank="{tp}"'
    return (
        f'sglang:realtime_tokens_total{{{labels},mode="prefill_compute"}} {compute}\n'
        f"sglang:num_running_reqs{{{labels}}} {running}\n"
        f'sglang:num_running_reqs{{{labels},priority="3"}} {running}\n'
        f"sglang:kv_used_tokens{{{labels}}} 100\n"
        f"sglang:max_total_num_tokens{{{labels}}} 1000\n"
    )


def test_data_parallel_ranks_are_summed_and_their_duplicates_read_once() -> None:
    page = (
        _rank_lines("0", "0", "0", 500, 4)
        + _rank_lines("0", "1", "0", 500, 4)  # --enable-metrics-for-all-schedulers
        + _rank_lines("0", "0", "1", 500, 4)  # a later pipeline stage: the same batch
        + _rank_lines("1", "2", "0", 300, 2)  # DP attention: rank 1 on tensor rank 2
        + 'sglang:generation_tokens_total{engine_type="unified",model_name="m"} 7\n'
    )
    (engine,) = parse_sglang_page(page)
    assert engine.prompt_tokens == 800 and engine.generation_tokens == 7
    assert engine.running == 6  # the priority="3" shares are not added to the totals
    assert (engine.kv_tokens, engine.kv_capacity_tokens) == (200, 2000)
    assert engine.kv_usage_ratio == pytest.approx(0.1)


def test_decode_server_counts_its_prompts_as_transferred() -> None:
    page = PAGE.replace('engine_type="unified"', 'engine_type="decode"')
    (engine,) = parse_sglang_page(page)
    assert engine.transferred_prompt_tokens == 170
    # Like vLLM's, the reading's prompt and cached counts include the transferred
    # tokens (the accounting takes them out): here the page's own prefill counters
    # (170 prompt, 64 cached) plus the 170 its tokenizer counted for the prefill server.
    assert (engine.prompt_tokens, engine.cached_prompt_tokens) == (340, 234)


def test_a_decode_server_counts_only_what_it_computed_itself() -> None:
    """Through the ledger: of a decode server's prompts only what its own scheduler
    prefilled counts (here 5 tokens), not the 60 its tokenizer counted for the
    prefill server in the same time."""

    def decode_page(computed: int, finished_prompt: int) -> str:
        page = re.sub(r"(sglang:prefill_effective_tokens_total\{[^}]*\}) [0-9.]+", r"\1 0", PAGE)
        page = page.replace(
            'mode="input",model_name="tiny-llama",moe_ep_rank="0",pp_rank="0",tp_rank="0"} 0',
            f'mode="input",model_name="tiny-llama",moe_ep_rank="0",pp_rank="0",tp_rank="0"}} '
            f"{computed}",
        )
        page = page.replace(
            'is_streaming="true",model_name="tiny-llama"} 120.0',
            (f'is_streaming="true",model_name="tiny-llama"}} {finished_prompt - 50}'),
        )
        return page.replace('engine_type="unified"', 'engine_type="decode"')

    ledger = TokenLedger({}, ApiPrices(1.0, 0.1, 2.0), started_wall=0.0)
    ledger.add("decode", parse_sglang_page(decode_page(0, 110))[0], now=1.0)
    ledger.add("decode", parse_sglang_page(decode_page(5, 170))[0], now=2.0)
    assert ledger.models["tiny-llama"].tokens["prompt"] == 5
    assert ledger.models["tiny-llama"].tokens["cached_prompt"] == 0


def test_a_fresh_server_reads_zero_tokens() -> None:
    page = f"sglang:max_total_num_tokens{{{SCHED}}} 10000\nsglang:token_usage{{{SCHED}}} 0\n"
    (engine,) = parse_sglang_page(page)
    assert (engine.prompt_tokens, engine.generation_tokens) == (0, 0)
    assert engine.kv_capacity_tokens == 10_000 and engine.kv_usage_ratio == 0


@pytest.mark.parametrize("page", ["", "<html>nginx</html>", "vllm:prompt_tokens_total 5\n"])
def test_a_page_without_sglang_series_is_no_engine_metrics(page: str) -> None:
    with pytest.raises(CollectorError) as error:
        parse_sglang_page(page)
    assert error.value.reason == "no_engine_metrics"
    assert "--enable-metrics" in str(error.value)


def test_metrics_disabled_404_names_the_flag() -> None:
    class Missing(StaticPage):
        async def read(self, feed):  # type: ignore[no-untyped-def]
            raise CollectorError("http_status", "HTTP 404 Not Found")

    collector = engine_collector("sglang", "http://x/metrics", Missing(""))
    with pytest.raises(CollectorError) as error:
        asyncio.run(collector.collect())
    assert error.value.reason == "http_status" and "--enable-metrics" in str(error.value)


def test_malformed_wanted_line_is_a_parse_error() -> None:
    page = PAGE.replace(f"sglang:num_running_reqs{{{SCHED}}} 3.0", "sglang:num_running_reqs{ 3")
    with pytest.raises(CollectorError) as error:
        parse_sglang_page(page)
    assert error.value.reason == "parse"


@pytest.mark.parametrize(
    ("series", "field", "value", "reason"),
    [
        (f"sglang:num_running_reqs{{{SCHED}}}", "running", "NaN", "non_finite"),
        (f"sglang:token_usage{{{SCHED}}}", "kv_usage_ratio", "1.5", "out_of_range"),
        (f"sglang:kv_used_tokens{{{SCHED}}}", "kv_tokens", "-1", "negative"),
    ],
)
def test_an_unusable_gauge_is_unknown_and_tokens_still_count(
    series: str, field: str, value: str, reason: str
) -> None:
    readings = parse_sglang_page(with_value(PAGE, series, value))
    (engine,) = readings
    assert getattr(engine, field) is None and engine.prompt_tokens == 170
    assert readings.rejected == {reason: 1}


def test_an_unusable_token_counter_keeps_the_model_out_this_cycle() -> None:
    series = f"sglang:generation_tokens_total{{{TOKENIZER}}}"
    readings = parse_sglang_page(with_value(PAGE, series, "-5"))
    assert list(readings) == [] and readings.rejected == {"negative": 1}


def test_configured_model_overrides_the_page() -> None:
    collector = engine_collector("sglang", "http://x/metrics", StaticPage(PAGE), "llama-70b")
    (engine,) = asyncio.run(collector.collect())
    assert engine.model == "llama-70b" and engine.prompt_tokens == 170


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_streamed_in_small_chunks_reads_the_same(size: int) -> None:
    page = PAGE.encode()
    reader = SglangPageReader()
    for start in range(0, len(page), size):
        reader.feed(page[start : start + size])
    assert reader.readings() == parse_sglang_page(PAGE)


# -- the simulator's `sglang` format ------------------------------------------------


TEMPLATE_TEXT = template_text("sglang")
LATENCY_ADDED = {
    # family -> (HELP, label names, bucket bounds) as SGLang 0.5.23's TokenizerMetricsCollector
    # declares them (observability/metrics_collector.py); the fixture's render had observed
    # neither, so it does not print them.
    "sglang:time_to_first_token_seconds": (
        "Histogram of time to first token in seconds.",
        {"model_name", "engine_type", "is_streaming"},
        [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400],
    ),
    "sglang:inter_token_latency_seconds": (
        "Histogram of inter-token latency in seconds.",
        {"model_name", "engine_type"},
        [0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060,
         0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000],
    ),
}  # fmt: skip


def test_the_simulator_template_is_the_fixture_plus_sglangs_latency_histograms() -> None:
    template = {f.name: f for f in text_string_to_metric_families(TEMPLATE_TEXT)}
    fixture = {f.name: f for f in text_string_to_metric_families(PAGE)}
    assert set(template) - set(fixture) == set(LATENCY_ADDED)
    added = re.compile(rf"^(# (HELP|TYPE) )?({'|'.join(map(re.escape, LATENCY_ADDED))})[_{{ ]")
    kept = [line for line in TEMPLATE_TEXT.splitlines() if not added.match(line)]
    assert kept == PAGE.splitlines()  # every other line as SGLang rendered it
    for name, (help_text, labels, bounds) in LATENCY_ADDED.items():
        family = template[name]
        assert (family.type, family.documentation) == ("histogram", help_text)
        assert {k for s in family.samples for k in s.labels} - {"le"} == labels
        les = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
        per_series = len(bounds) + 1
        assert les[:per_series] == [*(repr(float(b)) for b in bounds), "+Inf"]


def test_simulated_sglang_page_parses_to_the_state_it_was_rendered_from() -> None:
    clock = SimClock()
    engine = SimulatedEngine(
        "llama-test", 1000.0, make_profile("steady", level=0.6), acceleration=10.0,
        page_format="sglang", clock=clock,
    )  # fmt: skip
    previous = None
    for step in (0, 5, 40, 300, 2000):
        clock.t += step
        state = engine.page_state()
        page = engine._template.render(state).decode()
        (reading,) = parse_sglang_page(page)
        assert reading.model == "llama-test"
        assert reading.prompt_tokens == state.prompt_tokens  # live, per prefill batch
        assert reading.cached_prompt_tokens == state.cached_prompt_tokens
        assert reading.generation_tokens == state.finished_generation_tokens  # at request end
        assert (reading.running, reading.waiting) == (state.running, state.waiting)
        assert reading.kv_tokens == state.used_blocks * state.block_size
        assert reading.kv_capacity_tokens == state.num_gpu_blocks * state.block_size
        if previous is not None:
            assert reading.prompt_tokens >= previous.prompt_tokens
            assert reading.generation_tokens >= previous.generation_tokens
        previous = reading
        assert page_shape(page) == page_shape(TEMPLATE_TEXT)
    assert previous is not None and previous.generation_tokens > 0
    assert previous.prompt_tokens > state.finished_prompt_tokens  # live runs ahead


def test_simulated_sglang_latency_histograms_grow_with_requests_and_streamed_tokens() -> None:
    clock = SimClock()
    engine = SimulatedEngine(
        "llama-test", 1000.0, make_profile("steady", level=0.6), acceleration=10.0,
        page_format="sglang", clock=clock,
    )  # fmt: skip
    clock.t += 600
    state = engine.page_state()
    families = {
        f.name: f for f in text_string_to_metric_families(engine._template.render(state).decode())
    }

    def count(name: str) -> float:
        return sum(s.value for s in families[name].samples if s.name == f"{name}_count")

    assert state.requests > 100
    # One observation per request, split over is_streaming as the template splits it.
    e2e = count("sglang:e2e_request_latency_seconds")
    assert count("sglang:time_to_first_token_seconds") == e2e
    assert state.requests - 1 <= e2e <= state.requests
    # One per streamed token past a request's first: 29 of the template's 40 generated.
    assert count("sglang:inter_token_latency_seconds") == state.generation_tokens * 29 // 40
    itl = families["sglang:inter_token_latency_seconds"].samples
    inf = next(s.value for s in itl if s.labels.get("le") == "+Inf")
    assert inf == count("sglang:inter_token_latency_seconds")
