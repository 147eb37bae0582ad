"""Parse cost of every engine's page: our selective parsers against prometheus_client's.

The exporter reads every engine's page each interval, so the parse is its main
recurring CPU cost. The generic parser builds an object for every line of a
page; ours only parses the samples they need. Both run here on the same real or
engine-rendered pages, in the same process, and must agree on the tokens read.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from llm_cost_exporter.collectors.llamacpp import parse_llamacpp_page
from llm_cost_exporter.collectors.lmdeploy import parse_lmdeploy_page
from llm_cost_exporter.collectors.readings import EngineReading
from llm_cost_exporter.collectors.sglang import parse_sglang_page
from llm_cost_exporter.collectors.tgi import parse_tgi_page
from llm_cost_exporter.collectors.triton import parse_triton_page
from llm_cost_exporter.collectors.vllm import parse_vllm_page

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TARGET_SPEEDUP = 10.0


Selector = tuple[str, dict[str, str]]
"""A sample name and the label values a sample of it must have to count."""


@dataclass(frozen=True)
class EnginePage:
    """One engine's page, the parser that reads it, and how to count its tokens generically."""

    engine: str
    fixture: Path
    parse: Callable[[str], list[EngineReading]]
    prompt: tuple[Selector, ...]
    """Samples whose sum is all prompt tokens (cached included), as the reader takes them."""
    generation: tuple[Selector, ...]


def _selected(selectors: tuple[Selector, ...], name: str, labels: dict[str, str]) -> bool:
    return any(
        name == wanted and all(labels.get(k) == v for k, v in values.items())
        for wanted, values in selectors
    )


PAGES = (
    EnginePage(
        "vllm",
        FIXTURES / "vllm" / "vllm-0.32.0-cpu-busy.prom",
        parse_vllm_page,
        (("vllm:prompt_tokens_total", {}),),
        (("vllm:generation_tokens_total", {}),),
    ),
    EnginePage(
        "sglang",
        FIXTURES / "engines" / "sglang-0.5.23-rendered.prom",
        parse_sglang_page,
        tuple(
            ("sglang:prefill_effective_tokens_total", {"mode": mode})
            for mode in ("input", "device_hit", "host_hit", "storage_hit")
        ),
        (("sglang:generation_tokens_total", {}),),
    ),
    EnginePage(
        "llamacpp",
        FIXTURES / "engines" / "llamacpp-0c1e570-real.prom",
        parse_llamacpp_page,
        (("llamacpp:prompt_tokens_total", {}), ("llamacpp:prompt_tokens_cached_total", {})),
        (("llamacpp:tokens_predicted_total", {}),),
    ),
    EnginePage(
        "tgi",
        FIXTURES / "engines" / "tgi-3.3.7-from-source.prom",
        parse_tgi_page,
        (("tgi_request_input_length_sum", {}),),
        (("tgi_request_generated_tokens_sum", {}),),
    ),
    EnginePage(
        "lmdeploy",
        FIXTURES / "engines" / "lmdeploy-0.18.0-rendered.prom",
        parse_lmdeploy_page,
        (("lmdeploy:prompt_tokens_total", {}),),
        (("lmdeploy:generation_tokens_total", {}),),
    ),
    EnginePage(
        "triton",
        FIXTURES / "engines" / "triton-trtllm-0.18.2-from-source.prom",
        parse_triton_page,
        (("nv_llm_input_token_len_sum", {"response_metric_type": "total_input_tokens"}),),
        (("nv_llm_output_token_len_sum", {"response_metric_type": "total_output_tokens"}),),
    ),
)


def reference_parse(text: str) -> list:
    """The generic parser, consumed fully as a generic scraper would."""
    return list(text_string_to_metric_families(text))


def reference_tokens(page: EnginePage, text: str) -> tuple[float, float]:
    """Prompt and generation token totals as the generic parser reads them."""
    prompt = generation = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if _selected(page.prompt, sample.name, sample.labels):
                prompt += sample.value
            elif _selected(page.generation, sample.name, sample.labels):
                generation += sample.value
    return prompt, generation


def calibrate(func: Callable[[str], object], text: str, min_batch_s: float) -> int:
    """Calls per batch so one batch lasts at least ``min_batch_s``.

    Long batches keep timer resolution and loop overhead out of the result.
    """
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            func(text)
        elapsed = time.perf_counter() - start
        if elapsed >= min_batch_s:
            return number
        number *= 2 if elapsed <= 0 else max(2, int(min_batch_s / elapsed) + 1)


def interleaved_timings(
    funcs: dict[str, Callable[[str], object]], text: str, repeats: int, min_batch_s: float
) -> dict[str, list[float]]:
    """Per-call seconds of each function, one batch each in turn.

    Alternating the parsers batch by batch means a burst of load from
    elsewhere on the machine hits both, so the ratio stays meaningful.
    """
    numbers = {name: calibrate(func, text, min_batch_s) for name, func in funcs.items()}
    results: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeats):
        for name, func in funcs.items():
            number = numbers[name]
            start = time.perf_counter()
            for _ in range(number):
                func(text)
            results[name].append((time.perf_counter() - start) / number)
    return results


def measure(page: EnginePage, args: argparse.Namespace) -> float | None:
    """Print one engine's comparison; its speedup, or None if the parsers disagree."""
    text = page.fixture.read_text()
    print(
        f"\n{page.engine}: {page.fixture.name}, {len(text.splitlines())} lines, {len(text)} bytes"
    )
    readings = page.parse(text)
    ours = (sum(r.prompt_tokens for r in readings), sum(r.generation_tokens for r in readings))
    ref = reference_tokens(page, text)
    print(f"tokens (prompt, generation): ours {ours}, prometheus_client {ref}")
    if ours != ref:
        print(f"FAIL: the parsers disagree on {page.engine}'s token counts", file=sys.stderr)
        return None
    ours_name = f"parse ({page.engine})"
    timings = interleaved_timings(
        {ours_name: page.parse, "prometheus_client": reference_parse},
        text,
        args.repeats,
        args.min_batch_seconds,
    )
    medians = {name: statistics.median(t) for name, t in timings.items()}
    print(f"{'parser':<20}{'best ms':>10}{'median ms':>12}{'CPU % of 1 core':>18}")
    for name, values in timings.items():
        share = args.engines * medians[name] / args.interval * 100
        print(f"{name:<20}{min(values) * 1e3:>10.4f}{medians[name] * 1e3:>12.4f}{share:>17.4f}%")
    speedup = medians["prometheus_client"] / medians[ours_name]
    verdict = "met" if speedup >= TARGET_SPEEDUP else "MISSED"
    print(f"speedup (median): {speedup:.1f}x  target >= {TARGET_SPEEDUP:g}x: {verdict}")
    return speedup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--engine",
        action="append",
        choices=[page.engine for page in PAGES],
        help="engine to measure (repeatable; default all)",
    )
    parser.add_argument("--repeats", type=int, default=15, help="timed batches per parser")
    parser.add_argument(
        "--min-batch-seconds", type=float, default=0.3, help="minimum length of one batch"
    )
    parser.add_argument("--engines", type=int, default=8, help="engines on the projected node")
    parser.add_argument(
        "--interval", type=float, default=5.0, help="collection interval in seconds"
    )
    args = parser.parse_args(argv)
    print(
        f"(CPU share: parsing {args.engines} such pages every {args.interval:g} s, from the median)"
    )
    speedups = {
        page.engine: measure(page, args)
        for page in PAGES
        if not args.engine or page.engine in args.engine
    }
    print(f"\n{'engine':<12}{'speedup':>10}")
    for engine, speedup in speedups.items():
        print(f"{engine:<12}{'disagree' if speedup is None else f'{speedup:.1f}x':>10}")
    return 1 if None in speedups.values() else 0


if __name__ == "__main__":
    sys.exit(main())
