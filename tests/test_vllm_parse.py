"""Every real or release-rendered vLLM page yields the figures written in it."""

from __future__ import annotations

import re

import pytest
from conftest import FIXTURES, fixture_page
from page_mutations import read_in_chunks

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.engine_page import renamed
from llm_cost_exporter.collectors.promtext import MAX_LINE_BYTES
from llm_cost_exporter.collectors.vllm import VllmPageReader, parse_vllm_page


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
        'vllm:prompt_tokens_total{engine="0",model_name="tiny-llama" 12.0',
        'vllm:prompt_tokens_total{engine="0",model_name="tiny-llama"} twelve',
        'vllm:prompt_tokens_total{engine="0",model_name="tiny-llama"} 1_000',
        'vllm:prompt_tokens_total{engine="0",model_name="tiny-llama"} -nan',
        'vllm:prompt_tokens_total{engine="0",model_name="tiny-llama"}',
        'vllm:prompt_tokens_total{engine="0",model_name="m"} 12.0',
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


# --- values no engine should send: rejected per series, the rest still read -------------

BUSY = fixture_page("vllm-0.32.0-cpu-busy.prom")
DP2 = fixture_page("vllm-0.10.0-dp2-reconstructed.prom")
V032_CONFIG_BLOCKS = 'num_gpu_blocks="16384"'


def with_value(page: str, series: str, value: str) -> str:
    """`page` with the value of the sample line starting with `series` replaced."""
    pattern = re.compile(rf"^({re.escape(series)}) \S+$", re.M)
    changed, count = pattern.subn(lambda m: f"{m.group(1)} {value}", page)
    assert count == 1, series
    return changed


GAUGE_EDGES = [
    ("vllm:num_requests_running", "running", "NaN", "non_finite"),
    ("vllm:num_requests_running", "running", "+Inf", "non_finite"),
    ("vllm:num_requests_running", "running", "-Inf", "non_finite"),
    ("vllm:num_requests_running", "running", "1e400", "non_finite"),
    ("vllm:num_requests_running", "running", "-1", "negative"),
    ("vllm:num_requests_running", "running", "9007199254740994", "out_of_range"),
    ("vllm:num_requests_waiting", "waiting", "nan", "non_finite"),
    ("vllm:num_requests_waiting", "waiting", "-0.5", "negative"),
    ("vllm:kv_cache_usage_perc", "kv_usage_ratio", "NaN", "non_finite"),
    ("vllm:kv_cache_usage_perc", "kv_usage_ratio", "+Inf", "non_finite"),
    ("vllm:kv_cache_usage_perc", "kv_usage_ratio", "-1e-9", "negative"),
    ("vllm:kv_cache_usage_perc", "kv_usage_ratio", "1.5", "out_of_range"),
    ("vllm:kv_cache_usage_perc", "kv_usage_ratio", "1.7976931348623157e308", "out_of_range"),
    ("vllm:generation_tokens_created", "started_at", "NaN", "non_finite"),
    ("vllm:generation_tokens_created", "started_at", "-1", "negative"),
]


@pytest.mark.parametrize(("metric", "field", "value", "reason"), GAUGE_EDGES)
def test_an_unusable_gauge_is_unknown_and_the_tokens_still_count(
    metric: str, field: str, value: str, reason: str
) -> None:
    series = f'{metric}{{engine="0",model_name="tiny-llama"}}'
    readings = parse_vllm_page(with_value(BUSY, series, value))
    (engine,) = readings
    assert getattr(engine, field) is None
    assert (engine.prompt_tokens, engine.generation_tokens) == (163_304, 70_319)
    assert readings.rejected == {reason: 1}
    assert metric in readings.first_rejected and reason in readings.first_rejected
    if field == "kv_usage_ratio":
        assert engine.kv_tokens is None and engine.kv_capacity_tokens == 16_383 * 128


@pytest.mark.parametrize(
    ("label", "value", "reason"),
    [
        ("num_gpu_blocks", "1e400", "non_finite"),
        ("num_gpu_blocks", "inf", "non_finite"),
        ("num_gpu_blocks", "-inf", "non_finite"),
        ("num_gpu_blocks", "nan", "non_finite"),
        ("num_gpu_blocks", "-5", "negative"),
        ("num_gpu_blocks", "1e300", "out_of_range"),
        ("num_gpu_blocks", "9007199254740994", "out_of_range"),
        ("num_gpu_blocks", "1", "out_of_range"),  # one block, and that one reserved
        ("num_gpu_blocks", "lots", "malformed"),
        ("block_size", "1e400", "non_finite"),
        ("block_size", "-128", "negative"),
        ("block_size", "1e20", "out_of_range"),
    ],
)
def test_an_unusable_kv_geometry_label_leaves_kv_unknown_and_the_tokens_count(
    label: str, value: str, reason: str
) -> None:
    original = 'num_gpu_blocks="16384"' if label == "num_gpu_blocks" else 'block_size="128"'
    page = BUSY.replace(original, f'{label}="{value}"')
    assert page != BUSY
    readings = parse_vllm_page(page)
    (engine,) = readings
    assert engine.kv_capacity_tokens is None and engine.kv_tokens is None
    assert engine.kv_usage_ratio == pytest.approx(0.00763, abs=1e-5)
    assert (engine.prompt_tokens, engine.generation_tokens) == (163_304, 70_319)
    assert readings.rejected == {reason: 1}


@pytest.mark.parametrize("value", ["None", ""])
def test_an_unset_kv_geometry_label_is_unknown_without_rejection(value: str) -> None:
    readings = parse_vllm_page(BUSY.replace(V032_CONFIG_BLOCKS, f'num_gpu_blocks="{value}"'))
    assert readings[0].kv_capacity_tokens is None and readings.rejected == {}


@pytest.mark.parametrize(
    ("series", "value", "reason"),
    [
        ('vllm:prompt_tokens_total{engine="1",model_name="llama-3.1-8b"}', "NaN", "non_finite"),
        ('vllm:prompt_tokens_total{engine="1",model_name="llama-3.1-8b"}', "1e400", "non_finite"),
        ('vllm:generation_tokens_total{engine="1",model_name="llama-3.1-8b"}', "-1", "negative"),
        (
            'vllm:prefix_cache_hits_total{engine="1",model_name="llama-3.1-8b"}',
            "+Inf",
            "non_finite",
        ),
        ('vllm:prompt_tokens_total{engine="1",model_name="llama-3.1-8b"}', "1e16", "out_of_range"),
    ],
)
def test_an_unusable_token_counter_keeps_only_its_rank_out(
    series: str, value: str, reason: str
) -> None:
    sound = {e.engine: e for e in parse_vllm_page(DP2)}
    readings = parse_vllm_page(with_value(DP2, series, value))
    assert [e.engine for e in readings] == ["0"]
    assert readings[0] == sound["0"]
    assert readings.rejected == {reason: 1}


def test_a_repeated_series_is_counted_once_and_the_repeat_rejected() -> None:
    line = 'vllm:prompt_tokens_total{engine="0",model_name="tiny-llama"} 163304.0\n'
    reordered = 'vllm:prompt_tokens_total{model_name="tiny-llama",engine="0"} 999.0\n'
    readings = parse_vllm_page(BUSY + line + reordered)
    assert readings[0].prompt_tokens == 163_304
    assert readings.rejected == {"duplicate": 2}
    assert list(readings) == list(parse_vllm_page(BUSY))


def test_both_spellings_of_a_name_are_not_counted_twice() -> None:
    underscored = "".join(
        line.replace("vllm:", "vllm_", 1) + "\n"
        for line in BUSY.splitlines()
        if line.startswith(("vllm:prompt_tokens_total", "vllm:generation_tokens_total"))
    )
    assert list(parse_vllm_page(BUSY + underscored)) == list(parse_vllm_page(BUSY))


def test_invalid_utf8_fails_a_wanted_line_and_is_ignored_elsewhere() -> None:
    page = BUSY.encode()
    bad_wanted = page.replace(
        b'model_name="tiny-llama"} 163304.0', b'model_name="tiny\xffllama"} 1'
    )
    with pytest.raises(CollectorError) as error:
        parse_vllm_page(bad_wanted)
    assert error.value.reason == "parse" and "UTF-8" in str(error.value)
    bad_elsewhere = page + b'python_info{implementation="\xff\xfe\xed\xa0\x80"} 1.0\n'
    assert list(parse_vllm_page(bad_elsewhere)) == list(parse_vllm_page(BUSY))


def test_only_newline_ends_a_line() -> None:
    """U+2028, NEL and a lone CR inside a model name do not split its line."""
    name = "a\\u2028b\u2028c\x85d\re"
    page = (
        f'vllm:prompt_tokens_total{{engine="0",model_name="{name}"}} 5\n'
        f'vllm:generation_tokens_total{{engine="0",model_name="{name}"}} 7\n'
    )
    (engine,) = parse_vllm_page(page)
    assert engine.model == name and engine.prompt_tokens == 5


def test_crlf_line_endings_read_the_same() -> None:
    assert list(parse_vllm_page(BUSY.replace("\n", "\r\n"))) == list(parse_vllm_page(BUSY))


def test_a_wanted_line_beyond_the_line_limit_is_a_parse_error_whole_or_streamed() -> None:
    padding = "x" * (MAX_LINE_BYTES + 1)
    page = BUSY.replace(
        'vllm:num_requests_running{engine="0"',
        f'vllm:num_requests_running{{pad="{padding}",engine="0"',
    ).encode()
    for read in (parse_vllm_page, lambda p: read_in_chunks(p, 4096)):
        with pytest.raises(CollectorError) as error:
            read(page)
        assert error.value.reason == "parse"


def test_an_unwanted_line_of_any_length_is_skipped_without_holding_it() -> None:
    page = (BUSY + 'python_info{x="' + "y" * (4 * MAX_LINE_BYTES) + '"} 1\n').encode()
    reader = VllmPageReader()
    held = 0
    for start in range(0, len(page), 4096):
        reader.feed(page[start : start + 4096])
        held = max(held, reader._page._parser._partial_size)
    assert held <= MAX_LINE_BYTES
    assert list(reader.readings()) == list(parse_vllm_page(BUSY))


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.prom")))
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000, 4096, 65536])
def test_streamed_read_equals_whole_page_read_on_every_fixture(name: str, chunk: int) -> None:
    page = (FIXTURES / name).read_bytes()
    whole = parse_vllm_page(page)
    streamed = read_in_chunks(page, chunk)
    assert list(streamed) == list(whole) and streamed.rejected == whole.rejected
    assert whole and whole.rejected == {}


def test_a_configured_name_makes_one_reading_per_rank_of_the_models_it_joins() -> None:
    """Two models of one rank under one configured name would be one engine jumping
    between two sets of counters: they are summed into one reading per rank."""
    page = "".join(
        f'vllm:{name}{{engine="{rank}",model_name="{model}"}} {value}\n'
        for rank, model, prompt, generation in (
            ("0", "a", 100, 10),
            ("0", "b", 50, 5),
            ("1", "a", 7, 1),
        )
        for name, value in (
            ("prompt_tokens_total", prompt),
            ("generation_tokens_total", generation),
        )
    )
    readings = renamed(parse_vllm_page(page), "served")
    assert [(r.model, r.engine, r.prompt_tokens, r.generation_tokens) for r in readings] == [
        ("served", "0", 150, 15),
        ("served", "1", 7, 1),
    ]
    assert renamed(parse_vllm_page(page), None) == parse_vllm_page(page)
