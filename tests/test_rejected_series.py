"""Rejected series through the collection loop: counted by reason, the sound ones still read.

A data-parallel page whose rank 1 sends a NaN token counter for one cycle
(and rank 0 a NaN gauge) must lose no token and count none twice: the rank
comes back from its last good value, no restart is seen, and
llmcost_collector_rejected_series_total says what was left out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

from conftest import fixture_page, minimal_config_dict
from prometheus_client.parser import text_string_to_metric_families

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.readings import REJECT_REASONS
from llm_cost_exporter.collectors.vllm import VllmCollector
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon.loop import CollectionLoop
from llm_cost_exporter.outputs.prometheus import PrometheusPage

DP2 = fixture_page("vllm-0.10.0-dp2-reconstructed.prom")
TARGET = "http://engine:8000/metrics"
MODEL = "llama-3.1-8b"
COUNTER = re.compile(
    r"^(vllm:(prompt_tokens|generation_tokens|prefix_cache_hits)_total"
    r'\{engine="(\d)",model_name="[^"]*"\}) (\S+)$',
    re.M,
)


def grown(prompt: float, generation: float, **bad: str) -> str:
    """The dp2 page with every rank's prompt and generation counters grown; `bad` maps
    a series (rank 1's prompt: `prompt_tokens_1`) to the value it sends instead."""

    def replace(match: re.Match[str]) -> str:
        series, kind, rank, value = match.groups()
        if f"{kind}_{rank}" in bad:
            return f"{series} {bad[f'{kind}_{rank}']}"
        step = {"prompt_tokens": prompt, "generation_tokens": generation}.get(kind, 0.0)
        return f"{series} {float(value) + step!r}"

    return COUNTER.sub(replace, DP2)


class CyclePages:
    """A PageSource giving the next page each cycle."""

    def __init__(self, pages: list[str]) -> None:
        self._pages = pages

    async def read(self, feed: Callable[[bytes], None]) -> None:
        feed(self._pages.pop(0).encode())


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def rejected(found: dict, reason: str) -> float | None:
    """The count, or None before the reason's first rejection (no series until then)."""
    labels = (("collector", "vllm"), ("reason", reason), ("target", TARGET))
    return found.get(("llmcost_collector_rejected_series_total", labels))


async def test_a_rank_sending_nan_for_a_cycle_loses_no_token_and_counts_none_twice(
    caplog,
) -> None:
    nan_gauge = 'vllm:num_requests_running{engine="0",model_name="llama-3.1-8b"} NaN'
    pages = [
        grown(0, 0),
        grown(1000, 100, prompt_tokens_1="NaN").replace(
            'vllm:num_requests_running{engine="0",model_name="llama-3.1-8b"} 16.0', nan_gauge
        ),
        grown(2000, 200),
    ]
    config = config_from_mapping(minimal_config_dict(engines=[{"url": TARGET}]))
    state = NodeState(config, {}, ApiPrices(0.8, 0.08, 4.0), wall_clock=lambda: 2e9)
    page = PrometheusPage()
    clock = iter(range(100, 1000, 5))
    loop = CollectionLoop(
        state,
        [VllmCollector(TARGET, CyclePages(pages))],
        None,
        [page],
        5.0,
        3.0,
        clock=lambda: float(next(clock)),
    )
    bodies = []
    with caplog.at_level(logging.INFO, logger="llm_cost_exporter.accounting.node"):
        for _ in range(3):
            await loop.run_once()
            bodies.append(samples(page.body))

    first, during, after = bodies
    assert all(rejected(first, r) is None for r in REJECT_REASONS)
    assert rejected(during, "non_finite") == 2
    assert rejected(after, "non_finite") == 2  # a counter: it keeps what it counted
    assert all(rejected(after, r) is None for r in REJECT_REASONS if r != "non_finite")
    up = ("llmcost_collector_up", (("collector", "vllm"), ("target", TARGET)))
    assert during[up] == 1 and after[up] == 1

    # Rank 0 was counted during the bad cycle, rank 1 from its last good value after it.
    tokens = state.tokens.models[MODEL]
    assert tokens.prompt_all == 2 * 2000 and tokens.tokens["generation"] == 2 * 200
    assert state.targets[("vllm", TARGET)].restarts == 0
    generation = ("llmcost_tokens_total", (("kind", "generation"), ("model", MODEL)))
    assert (first[generation], during[generation], after[generation]) == (0, 100, 400)

    # Neither rank's running count was usable in the bad cycle: the gauge is absent, not 0.
    running = ("llmcost_requests_running", (("model", MODEL),))
    assert running not in during and after[running] == 31

    logged = [r.getMessage() for r in caplog.records if TARGET in r.getMessage()]
    assert len([m for m in logged if "series rejected, e.g." in m]) == 1
    assert "vllm:" in next(m for m in logged if "series rejected, e.g." in m)
    assert len([m for m in logged if "no series rejected any more" in m]) == 1


def test_documented_reject_reasons_are_the_real_ones() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    row = next(
        line for line in readme.splitlines() if "`llmcost_collector_rejected_series_total`" in line
    )
    documented = re.findall(r"`(\w+)`", row.split("|")[4])
    assert documented == list(REJECT_REASONS)
