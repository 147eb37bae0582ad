"""vLLM pages yield finished requests, preemptions and the prompt tokens whose KV cache
was transferred in from another instance (the decode side of disaggregated serving).

The decode page is the real 0.32 busy capture with the series a decode instance
moves set to the numbers below (DECODE); everything else on it is the capture's.
"""

from __future__ import annotations

import re

import pytest
from conftest import fixture_page
from page_mutations import read_in_chunks

from llm_cost_exporter.collectors.vllm import parse_vllm_page

BUSY = "vllm-0.32.0-cpu-busy.prom"


def series(name: str, source: str | None = None) -> str:
    """A series of the capture's one engine, without its `vllm:` prefix."""
    labels = 'engine="0",model_name="tiny-llama"' + (f',source="{source}"' if source else "")
    return f"{name}{{{labels}}}"


DECODE = {
    # The capture's 163,304 prompt tokens, as a decode instance counts them: NIXL loads
    # all but the last prompt token of each of the 674 requests admitted (629 finished,
    # 45 running), which the decode instance computes itself.
    series("prompt_tokens_by_source_total", "local_compute"): 674,
    series("prompt_tokens_by_source_total", "local_cache_hit"): 0,
    series("prompt_tokens_by_source_total", "external_kv_transfer"): 162_630,
    series("prompt_tokens_cached_total"): 162_630,
    # Counted at admission: 370 tokens of requests admitted whose prefill step has not
    # been counted yet run ahead of the prompt tokens.
    series("prompt_tokens_cached_by_source_total", "device"): 0,
    series("prompt_tokens_cached_by_source_total", "p2p"): 163_000,
    series("prefix_cache_hits_total"): 0,
    series("external_prefix_cache_queries_total"): 163_000,
    series("external_prefix_cache_hits_total"): 163_000,
    series("num_preemptions_total"): 12,
}


def with_values(page: str, values: dict[str, float | str]) -> str:
    """`page` with each `vllm:` series named in `values` set to its value (or text)."""
    for name, value in values.items():
        shown = value if isinstance(value, str) else repr(float(value))
        line = re.compile(rf"^vllm:{re.escape(name)} \S+$", re.M)
        page, found = line.subn(f"vllm:{name} {shown}", page)
        assert found == 1, name
    return page


def without_family(page: str, family: str) -> str:
    """`page` less every line of `family` (its samples, HELP and TYPE)."""
    kept = [line for line in page.splitlines(keepends=True) if family not in line]
    assert len(kept) < len(page.splitlines())
    return "".join(kept)


def decode_page() -> str:
    return with_values(fixture_page(BUSY), DECODE)


@pytest.mark.parametrize(
    ("fixture", "requests"),
    [
        ("vllm-0.32.0-cpu-busy.prom", {"0": 629}),
        ("vllm-0.32.0-cpu-idle.prom", {"0": 1}),
        ("vllm-0.10.0-reconstructed.prom", {"0": 1397 + 440}),
        ("vllm-0.10.0-dp2-reconstructed.prom", {"0": 1564 + 449, "1": 1397 + 424}),
        ("vllm-0.6.6-reconstructed.prom", {"": 1697 + 308 + 2}),  # stop, length, abort
    ],
)
def test_requests_are_summed_over_finish_reasons_and_preemptions_read(fixture, requests) -> None:
    readings = parse_vllm_page(fixture_page(fixture))
    assert {r.engine: r.requests for r in readings} == requests
    assert {r.engine: r.preemptions for r in readings} == dict.fromkeys(requests, 0.0)


@pytest.mark.parametrize(
    ("fixture", "transferred"),
    [
        ("vllm-0.32.0-cpu-busy.prom", 0.0),  # counts transfers, had none
        ("vllm-0.32.0-cpu-idle.prom", 0.0),
        ("vllm-0.10.0-reconstructed.prom", None),  # cannot count them
        ("vllm-0.6.6-reconstructed.prom", None),
    ],
)
def test_pages_without_transfers_report_zero_or_unknown(fixture, transferred) -> None:
    (reading,) = parse_vllm_page(fixture_page(fixture))
    assert reading.transferred_prompt_tokens == transferred


def test_a_decode_instance_reports_its_tokens_as_counted_and_the_p2p_tier_as_transferred() -> None:
    (decode,) = parse_vllm_page(decode_page())
    # Included as vLLM counts them: the accounting takes the transferred ones out.
    assert decode.prompt_tokens == 163_304
    assert decode.cached_prompt_tokens == 162_630
    assert decode.transferred_prompt_tokens == 163_000
    assert decode.generation_tokens == 70_319
    assert (decode.requests, decode.preemptions) == (629, 12)
    assert (decode.running, decode.waiting) == (45, 0)


def test_without_the_tier_split_the_external_kv_transfer_source_is_taken() -> None:
    """Before `prompt_tokens_cached_by_source` (0.32) only the prompt-token source says
    how much came through the KV connector: transfers and offload-tier hits alike."""
    page = without_family(decode_page(), "vllm:prompt_tokens_cached_by_source")
    (decode,) = parse_vllm_page(page)
    assert decode.transferred_prompt_tokens == 162_630
    assert decode.cached_prompt_tokens == 162_630


def test_ray_and_openmetrics_names_are_read_the_same() -> None:
    page = decode_page().replace("vllm:", "vllm_")
    assert parse_vllm_page(page) == parse_vllm_page(decode_page())


def test_streamed_in_small_chunks_the_counts_are_the_same() -> None:
    page = decode_page().encode()
    assert read_in_chunks(page, 7) == parse_vllm_page(page)


def test_an_unusable_transfer_count_keeps_its_engine_out_of_the_cycle() -> None:
    """A partial prompt count would read as a drop: like the token counters, a rejected
    transfer count leaves the engine's tokens to the next sound read."""
    page = with_values(
        decode_page(), {series("prompt_tokens_cached_by_source_total", "p2p"): "NaN"}
    )
    readings = parse_vllm_page(page)
    assert list(readings) == []
    assert readings.rejected == {"non_finite": 1}


def test_an_unusable_request_count_is_unknown_and_the_rest_is_read() -> None:
    stop = 'request_success_total{engine="1",finished_reason="stop",model_name="llama-3.1-8b"}'
    page = with_values(fixture_page("vllm-0.10.0-dp2-reconstructed.prom"), {stop: -1})
    readings = parse_vllm_page(page)
    assert {r.engine: r.requests for r in readings} == {"0": 2013, "1": None}
    assert {r.engine: r.prompt_tokens for r in readings} == {"0": 2_812_660, "1": 2_616_482}
    assert readings.rejected == {"negative": 1}
