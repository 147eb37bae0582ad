"""The README's metric table and configuration example match the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from conftest import fixture_page, minimal_config_dict
from prometheus_client.parser import text_string_to_metric_families

from collectors.base import REASONS
from collectors.vllm import parse_vllm_page
from exporter.config import config_from_mapping
from exporter.costmodel import ApiPrices
from exporter.exposition import Exposition
from exporter.node import NodeState

README = (Path(__file__).parent.parent / "README.md").read_text()


def readme_metric_table() -> dict[str, tuple[str, frozenset[str]]]:
    rows = re.findall(r"^\| `(llmcost_[a-z_]+)` \|\s*(\w+)\s*\|([^|]*)\|", README, re.MULTILINE)
    return {name: (kind, frozenset(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def exported_families() -> dict[str, tuple[str, frozenset[str]]]:
    """Every family the exporter can export, each with samples."""
    config = config_from_mapping(
        minimal_config_dict(
            api_prices={"models": {"tiny-llama": {"input": 0.8, "output": 4.0}}},
            capacity={"tokens_per_second": 2000},
            projection={"utilization": 0.6, "tokens_per_month": 1e9, "cost_per_million_tokens": 1},
        )
    )
    state = NodeState(config, {"tiny-llama": ApiPrices(0.8, 0.8, 4.0)}, None)
    state.learned.peak = 1500.0
    idle = parse_vllm_page(fixture_page("vllm-0.32.0-cpu-idle.prom"))
    busy = parse_vllm_page(fixture_page("vllm-0.32.0-cpu-busy.prom"))
    unpriced = parse_vllm_page(fixture_page("vllm-0.10.0-reconstructed.prom"))
    state.record_engine_readings("http://a/metrics", idle + unpriced, 0.01)
    state.advance(0.0)
    state.record_engine_readings("http://a/metrics", busy + unpriced, 0.01)
    state.record_failure("vllm", "http://b/metrics", "timeout", "slow", 3.0)
    state.advance(10.0)
    page = Exposition(state).render().decode()
    families = {}
    for family in text_string_to_metric_families(page):
        if family.name.startswith("process_"):
            continue
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels)
        name = family.name + ("_total" if family.type == "counter" else "")
        families[name] = (family.type, frozenset(labels))
    return families


def test_metric_reference_matches_what_is_exported() -> None:
    documented = readme_metric_table()
    exported = exported_families()
    assert len(documented) > 20
    assert set(exported) - set(documented) == set(), "exported but not in the README"
    assert set(documented) - set(exported) == set(), "in the README but never exported"
    for name, (kind, labels) in exported.items():
        assert documented[name] == (kind, labels), name


def test_documented_failure_reasons_are_the_real_ones() -> None:
    row = next(line for line in README.splitlines() if "`llmcost_collector_errors_total`" in line)
    documented = re.findall(r"`(\w+)`", row.split("|")[4])
    assert documented == list(REASONS)


def test_interface_metric_names_exist() -> None:
    required = {
        "llmcost_tokens_total",
        "llmcost_cost_total",
        "llmcost_api_equivalent_cost_total",
        "llmcost_effective_cost_per_million_tokens",
        "llmcost_api_equivalent_cost_per_million_tokens",
        "llmcost_throughput_utilization_ratio",
        "llmcost_breakeven_utilization_ratio",
        "llmcost_tokens_in_flight",
        "llmcost_collector_up",
    }
    assert required <= set(exported_families())


def test_metric_names_follow_conventions() -> None:
    for name, (kind, labels) in exported_families().items():
        assert ":" not in name
        assert (kind == "counter") == name.endswith("_total"), name
        assert not labels & {"instance", "node", "cluster", "currency"} or name.endswith("_info")


def test_full_configuration_example_is_valid() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README, re.DOTALL)
    example = next(b for b in blocks if "api_prices:" in b)
    data = yaml.safe_load(example)
    # The example's catalog reference is resolved at start; here we check the rest.
    data["api_prices"]["default"] = {"input": 0.8, "output": 4.0}
    config = config_from_mapping(data)
    assert config.cost.gpu_per_hour == 8 * 2.49
    assert len(config.engines) == 2
