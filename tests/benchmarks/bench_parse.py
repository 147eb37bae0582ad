"""Parse cost of a busy vLLM page: our selective parser against prometheus_client's.

The exporter reads every engine's page each interval, so the parse is its main
recurring CPU cost. The generic parser builds an object for all ~600 lines;
ours only parses the couple of dozen samples it needs. Both run here on the
same real capture, in the same process, and must agree on the token counts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from llm_cost_exporter.collectors.vllm import parse_vllm_page

DEFAULT_FIXTURE = (
    Path(__file__).resolve().parent.parent / "fixtures" / "vllm" / "vllm-0.32.0-cpu-busy.prom"
)
TARGET_SPEEDUP = 10.0


def reference_parse(text: str) -> list:
    """The generic parser, consumed fully as a generic scraper would."""
    return list(text_string_to_metric_families(text))


def reference_tokens(text: str) -> tuple[float, float]:
    """Prompt and generation token totals as the generic parser reads them."""
    totals = {"vllm:prompt_tokens_total": 0.0, "vllm:generation_tokens_total": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals["vllm:prompt_tokens_total"], totals["vllm:generation_tokens_total"]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE, help="page to parse")
    parser.add_argument("--repeats", type=int, default=15, help="timed batches per parser")
    parser.add_argument(
        "--min-batch-seconds", type=float, default=0.3, help="minimum length of one batch"
    )
    parser.add_argument("--engines", type=int, default=8, help="engines on the projected node")
    parser.add_argument(
        "--interval", type=float, default=5.0, help="collection interval in seconds"
    )
    args = parser.parse_args(argv)

    text = args.fixture.read_text()
    print(f"page: {args.fixture.name}, {len(text.splitlines())} lines, {len(text)} bytes")

    readings = parse_vllm_page(text)
    ours = (sum(r.prompt_tokens for r in readings), sum(r.generation_tokens for r in readings))
    ref = reference_tokens(text)
    print(f"tokens (prompt, generation): ours {ours}, prometheus_client {ref}")
    if ours != ref:
        print("FAIL: the parsers disagree on the token counts", file=sys.stderr)
        return 1

    timings = interleaved_timings(
        {"parse_vllm_page": parse_vllm_page, "prometheus_client": reference_parse},
        text,
        args.repeats,
        args.min_batch_seconds,
    )
    medians = {name: statistics.median(t) for name, t in timings.items()}
    print(f"\n{'parser':<20}{'best ms':>10}{'median ms':>12}{'CPU % of 1 core':>18}")
    for name, values in timings.items():
        share = args.engines * medians[name] / args.interval * 100
        print(f"{name:<20}{min(values) * 1e3:>10.4f}{medians[name] * 1e3:>12.4f}{share:>17.4f}%")
    print(
        f"(CPU share: parsing {args.engines} such pages every {args.interval:g} s, from the median)"
    )
    speedup = medians["prometheus_client"] / medians["parse_vllm_page"]
    verdict = "met" if speedup >= TARGET_SPEEDUP else "MISSED"
    print(f"\nspeedup (median): {speedup:.1f}x  target >= {TARGET_SPEEDUP:g}x: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
