"""What one node costs a Prometheus stays within the design's budget.

The node is rendered by the exporter's own loop and page (tests/golden_pages.py
``sized_node``), as tests/benchmarks/bench_series.py measures it: 8 engines
serving 8 models on 8 GPUs, traffic in every window.
"""

from __future__ import annotations

import re

from golden_pages import sized_node

from llm_cost_exporter.outputs.process_families import process_families

BUDGET = 250
"""Series per node of 8 engines on 8 GPUs (the design's performance budget)."""


def series(page: bytes) -> list[str]:
    return [line for line in page.decode().splitlines() if line and not line.startswith("#")]


def family_of(line: str) -> str:
    return re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0)


def test_an_eight_gpu_eight_engine_node_stays_within_its_series_budget() -> None:
    process = sum(len(family.samples) for family in process_families())
    found = series(sized_node(8, 8))
    assert len(found) + process <= BUDGET
    # It is a serving node: every live figure a serving node exports is there.
    names = {family_of(line) for line in found}
    assert {
        "llmcost_tokens_total",
        "llmcost_effective_cost_per_million_tokens",
        "llmcost_breakeven_utilization_ratio",
        "llmcost_gpu_selected_utilization_ratio",
    } <= names


def test_a_healthy_node_exports_no_row_of_zeros_for_events_that_never_happened() -> None:
    """Error and event counters start with their first event, not as zeros per reason."""
    names = [family_of(line) for line in series(sized_node(8, 8))]
    for family in (
        "llmcost_collector_errors_total",
        "llmcost_collector_rejected_series_total",
        "llmcost_gpu_errors_total",
        "llmcost_engine_dips_total",
        "llmcost_model_limit_exceeded_total",
        "llmcost_kv_transferred_prompt_tokens_total",
    ):
        assert family not in names, family
    # Restarts stay a counter from zero: the review reads each engine's first one.
    assert names.count("llmcost_engine_restarts_total") == 8


def test_each_added_engine_and_gpu_costs_a_bounded_number_of_series() -> None:
    one, eight = len(series(sized_node(1, 1))), len(series(sized_node(8, 8)))
    assert (eight - one) / 7 <= 26
