"""Every real or release-rendered vLLM page yields the figures written in it."""

from __future__ import annotations

import pytest
from conftest import fixture_page

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.vllm import parse_vllm_page


def test_real_032_busy_capture() -> None:
    (engine,) = parse_vllm_page(fixture_page("vllm-0.32.0-cpu-busy.prom"))
    assert engine.model == "tiny-llama" and engine.engine == "0"
    assert engine.prompt_tokens == 163_304
    assert engine.cached_prompt_tokens == 9_984
    assert engine.generation_tokens == 70_319
    assert (engine.running, engine.waiting) == (45, 0)
    assert engine.kv_usage_ratio == pytest.approx(0.00763, abs=1e-5)
    # 0.32 computes usage over num_gpu_blocks - 1: 125 of 16383 blocks of 128 tokens.
    assert engine.kv_tokens == 125 * 128
    assert engine.kv_capacity_tokens == 16_383 * 128
    assert engine.started_at == pytest.approx(1_795_332_013.27, abs=0.01)


def test_real_032_idle_capture() -> None:
    (engine,) = parse_vllm_page(fixture_page("vllm-0.32.0-cpu-idle.prom"))
    assert (engine.prompt_tokens, engine.cached_prompt_tokens, engine.generation_tokens) == (
        7,
        0,
        32,
    )
    assert (engine.running, engine.waiting, engine.kv_tokens) == (0, 0, 0)


def test_v0_066_page_uses_old_names_and_no_engine_label() -> None:
    (engine,) = parse_vllm_page(fixture_page("vllm-0.6.6-reconstructed.prom"))
    assert engine.model == "llama-3.1-8b" and engine.engine == ""
    assert engine.prompt_tokens == 2_231_714
    assert engine.generation_tokens == 619_178
    assert engine.cached_prompt_tokens == 0  # prefix caching off; V0 has no token count of hits
    assert (engine.running, engine.waiting) == (14, 2)
    # gpu_cache_usage_perc 0.044823 = 1136 of 25344 blocks of 16 tokens.
    assert engine.kv_tokens == 1136 * 16
    assert engine.kv_capacity_tokens == 25_344 * 16
    assert engine.started_at is None  # V0 pages have no _created series


def test_v1_0100_page_reads_renamed_kv_and_prefix_hits() -> None:
    (engine,) = parse_vllm_page(fixture_page("vllm-0.10.0-reconstructed.prom"))
    assert engine.prompt_tokens == 2_438_696
    assert engine.generation_tokens == 652_892
    assert engine.cached_prompt_tokens == 863_456  # prefix_cache_hits_total, in tokens
    assert (engine.running, engine.waiting) == (14, 2)
    assert engine.kv_tokens == 1079 * 16  # 0.042574 of 25344 blocks


def test_data_parallel_page_keeps_ranks_apart_and_divides_summed_blocks() -> None:
    engines = parse_vllm_page(fixture_page("vllm-0.10.0-dp2-reconstructed.prom"))
    by_rank = {e.engine: e for e in engines}
    assert set(by_rank) == {"0", "1"}
    assert by_rank["0"].prompt_tokens == 2_812_660 and by_rank["1"].prompt_tokens == 2_616_482
    assert by_rank["0"].generation_tokens == 706_309
    assert by_rank["1"].generation_tokens == 640_502
    assert sum(e.prompt_tokens for e in engines) == 5_429_142
    assert sum(e.generation_tokens for e in engines) == 1_346_811
    assert sum(e.running for e in engines) == 31 and sum(e.waiting for e in engines) == 2
    assert by_rank["0"].cached_prompt_tokens == 913_472
    # num_gpu_blocks="50688" is the sum over both ranks: each has 25344.
    assert by_rank["0"].kv_capacity_tokens == 25_344 * 16
    assert by_rank["0"].kv_tokens == round(0.059501 * 25_344) * 16
    assert by_rank["1"].kv_tokens == round(0.065814 * 25_344) * 16


def test_html_page_is_not_an_engine() -> None:
    with pytest.raises(CollectorError) as error:
        parse_vllm_page("<html><body>Welcome to nginx!</body></html>")
    assert error.value.reason == "no_engine_metrics"


@pytest.mark.parametrize(
    "line",
    [
        'vllm:prompt_tokens_total{engine="0",model_name="m" 12.0',
        'vllm:prompt_tokens_total{engine="0",model_name="m"} twelve',
        'vllm:prompt_tokens_total{engine="0",model_name="m"} -5',
        'vllm:prompt_tokens_total{engine="0",model_name="m"} NaN',
    ],
)
def test_malformed_token_lines_are_a_parse_error(line: str) -> None:
    page = fixture_page("vllm-0.32.0-cpu-busy.prom").replace(
        'vllm:prompt_tokens_total{engine="0",model_name="tiny-llama"} 163304.0', line
    )
    with pytest.raises(CollectorError) as error:
        parse_vllm_page(page)
    assert error.value.reason == "parse"


def test_truncated_page_missing_generation_counter_is_a_parse_error() -> None:
    page = fixture_page("vllm-0.32.0-cpu-busy.prom")
    cut = page.index("vllm:generation_tokens_total")
    with pytest.raises(CollectorError) as error:
        parse_vllm_page(page[:cut])
    assert error.value.reason == "parse"


def test_malformed_lines_of_other_families_do_not_matter() -> None:
    page = fixture_page("vllm-0.32.0-cpu-busy.prom") + "\nhttp_garbage{{{ not a metric\n"
    (engine,) = parse_vllm_page(page)
    assert engine.prompt_tokens == 163_304


def test_escaped_label_values_are_read() -> None:
    page = (
        'vllm:prompt_tokens_total{model_name="a \\"quoted\\" \\\\ name",engine="0"} 5\n'
        'vllm:generation_tokens_total{model_name="a \\"quoted\\" \\\\ name",engine="0"} 7\n'
    )
    (engine,) = parse_vllm_page(page)
    assert engine.model == 'a "quoted" \\ name'
    assert engine.kv_tokens is None and engine.running is None


def test_underscored_names_from_ray_or_openmetrics_escaping_are_read() -> None:
    page = fixture_page("vllm-0.32.0-cpu-busy.prom")
    underscored = page.replace("vllm:", "vllm_")
    assert "vllm:" not in underscored
    assert parse_vllm_page(underscored) == parse_vllm_page(page)
