"""The README's metric table and configuration example match the code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml
from conftest import fixture_page, minimal_config_dict, render_page
from prometheus_client.parser import text_string_to_metric_families

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.base import REASONS
from llm_cost_exporter.collectors.readings import GpuReading, GpuSnapshot, MigInstance
from llm_cost_exporter.collectors.vllm import parse_vllm_page
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.outputs.otlp.output import OtlpOutput
from llm_cost_exporter.outputs.prometheus import PrometheusPage

README = (Path(__file__).parent.parent / "README.md").read_text()
GOLDEN = Path(__file__).parent / "golden"


def readme_metric_table() -> dict[str, tuple[str, frozenset[str]]]:
    rows = re.findall(r"^\| `(llmcost_[a-z_]+)` \|\s*(\w+)\s*\|([^|]*)\|", README, re.MULTILINE)
    return {name: (kind, frozenset(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def gpu_snapshot(energy_joules: float) -> GpuSnapshot:
    """A GPM GPU in full health, a MIG GPU, a lost GPU and one of an unpriced model."""
    full = GpuReading(
        0,
        "GPU-0",
        "NVIDIA H100 80GB HBM3",
        busy_utilization=1.0,
        memory_used_bytes=1e9,
        memory_total_bytes=8e10,
        power_watts=700,
        energy_joules=energy_joules,
        temperature_celsius=60,
        sm_clock_hertz=1.98e9,
        clock_event_reasons=0x4,
        sm_activity=0.3,
        sm_occupancy=0.2,
        mig_enabled=False,
        supported={"gpm": True},
    )
    mig = GpuReading(
        1,
        "GPU-1",
        "NVIDIA H100 80GB HBM3",
        mig_enabled=True,
        mig_instances=(MigInstance("MIG-1", 1, 1e9, 1e10),),
        supported={"busy_utilization": False},
    )
    lost = GpuReading(2, "GPU-2", "NVIDIA H100 80GB HBM3", healthy=False, error="gpu_lost")
    unpriced = GpuReading(3, "GPU-3", "Tesla T4")
    return GpuSnapshot("550.54.15", (full, mig, lost, unpriced))


def render_families(state: NodeState) -> dict[str, tuple[str, frozenset[str]]]:
    return page_families(render_page(state))


def page_families(page: str) -> dict[str, tuple[str, frozenset[str]]]:
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


def exported_families() -> dict[str, tuple[str, frozenset[str]]]:
    """Every family the exporter can export, each with samples: a rented node
    reading its engines, and an owned node reading its GPUs."""
    config = config_from_mapping(
        minimal_config_dict(
            api_prices={"models": {"tiny-llama": {"input": 0.8, "output": 4.0}}},
            capacity={"tokens_per_second": 2000},
            projection={
                "utilization": 0.6,
                "tokens_per_month": 1e9,
                "cost_per_million_tokens": 1,
                "token_mix": {"prompt": 0.6, "cached_prompt": 0.1, "generation": 0.3},
            },
        )
    )
    state = NodeState(config, {"tiny-llama": ApiPrices(0.8, 0.8, 4.0)}, None)
    state.learned.peak = 1500.0
    idle = parse_vllm_page(fixture_page("vllm-0.32.0-cpu-idle.prom"))
    busy = parse_vllm_page(fixture_page("vllm-0.32.0-cpu-busy.prom"))
    # A decode engine of a disaggregated pair: its transferred tokens' series appears.
    busy = [dataclasses.replace(busy[0], transferred_prompt_tokens=1000.0), *busy[1:]]
    unpriced = parse_vllm_page(fixture_page("vllm-0.10.0-reconstructed.prom"))
    state.record_engine_readings("vllm", "http://a/metrics", idle + unpriced, 0.01)
    state.advance(0.0)
    state.record_engine_readings("vllm", "http://a/metrics", busy + unpriced, 0.01)
    state.record_failure("vllm", "http://b/metrics", "timeout", "slow", 3.0, engine=True)
    state.advance(10.0)
    families = render_families(state)

    owned = config_from_mapping(
        minimal_config_dict(
            cost={"owned": {"purchase_prices": {"H100": 30000}, "energy_price_per_kwh": 0.12}},
            capacity={"tokens_per_second": 2000},
        )
    )
    state = NodeState(owned, {}, ApiPrices(0.8, 0.8, 4.0), gpus=[])
    state.record_engine_readings("vllm", "http://a/metrics", idle, 0.01)
    state.record_gpu_snapshot("nvml", "local", gpu_snapshot(1000.0), 0.001, 0.0)
    state.advance(0.0)
    state.record_engine_readings("vllm", "http://a/metrics", busy, 0.01)
    state.record_gpu_snapshot("nvml", "local", gpu_snapshot(8000.0), 0.001, 10.0)
    state.advance(10.0)
    # An engine serving more models than allowed, whose counters then step back, then
    # sends a NaN: the series that appear with their first event.
    limited = NodeState(
        config_from_mapping(minimal_config_dict(limits={"models_per_engine": 1})),
        {},
        ApiPrices(0.8, 0.8, 4.0),
    )
    limited.record_engine_readings("vllm", "http://a/metrics", busy + unpriced, 0.01)
    limited.advance(0.0)
    limited.record_engine_readings("vllm", "http://a/metrics", idle, 0.01)
    limited.advance(10.0)
    nan_running = re.sub(
        r"^(vllm:num_requests_running\{[^}]*\}) .*$",
        r"\1 NaN",
        fixture_page("vllm-0.32.0-cpu-busy.prom"),
        flags=re.M,
    )
    limited.record_engine_readings("vllm", "http://a/metrics", parse_vllm_page(nan_running), 0.01)
    limited.advance(20.0)
    events = render_families(limited)
    # On Kubernetes the kubelet names the pods: its golden page is what the code renders
    # (test_golden_metrics), with the pod labels and the per-pod cost.
    kubernetes = page_families((GOLDEN / "kubernetes-node.prom").read_text())
    # Where OTLP is on, its output reports on itself beside the node's families.
    page = PrometheusPage()
    page.publish(list(OtlpOutput(owned.otlp, {}, lambda: 0.0).own_families()))
    otlp = page_families(page.body.decode())
    for name, (kind, labels) in [
        *render_families(state).items(),
        *events.items(),
        *kubernetes.items(),
        *otlp.items(),
    ]:
        previous = families.get(name, (kind, frozenset()))
        families[name] = (kind, labels | previous[1])
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
    assert config.cost.gpu_hourly_by_key == {"H100": 2.49}
    assert len(config.engines) == 2
    assert config.engines[0].gpus == (0, 1, 2, 3)
    assert config.projection.token_mix == {"prompt": 0.55, "cached_prompt": 0.15, "generation": 0.3}
    owned_block = next(b for b in blocks if "owned:" in b)
    owned = config_from_mapping({**data, "cost": yaml.safe_load(owned_block)["cost"]})
    assert owned.cost.gpu_hourly_by_key == {"H100": 30000 / (36 * 730)}
    assert owned.cost.owned.pue == 1.3
