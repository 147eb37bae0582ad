"""The node's GPUs held against the configuration, once at start: which GPUs to bill,
and what NVML contradicts. `check-config` and the daemon's start share it, so they
never disagree."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_cost_exporter.accounting.gpu_inventory import (
    BilledGpu,
    UnpricedGpu,
    build_inventory,
    check_claims,
)
from llm_cost_exporter.collectors.nvml import NvmlCollector
from llm_cost_exporter.config import Config, ConfigError


def billed_gpus(config: Config, nvml: NvmlCollector | None) -> list[BilledGpu]:
    """The GPUs to bill: what NVML lists (when it can), else what cost.gpus declares."""
    cost = config.cost
    table = "cost.owned.purchase_prices" if cost.owned else "cost.gpu_prices_per_hour"
    try:
        inventory = build_inventory(
            nvml.inventory() if nvml is not None and nvml.available else [],
            [(g.model, g.count) for g in cost.gpus],
            cost.gpu_hourly_by_key,
            nvml_available=nvml is not None and nvml.available,
        )
    except UnpricedGpu as error:
        raise ConfigError(f"{table}: {error}") from None
    if not inventory and cost.node_extra_per_hour <= 0:
        if nvml is None:
            source = "NVML is disabled"
        elif nvml.available:
            source = "NVML lists no GPU"
        else:
            source = f"NVML is unavailable ({nvml.unavailable_reason or 'not initialized in time'})"
        raise ConfigError(
            f"cost.gpus: nothing to bill on this node: {source} and cost.gpus declares none "
            "(declare the GPUs, or set cost.node_extra_per_hour for a CPU-only node)"
        )
    return inventory


@dataclass(frozen=True)
class NvmlFindings:
    """The configuration held against what NVML lists: shared by check-config and start."""

    claims: list[str] = field(default_factory=list)
    """engines[].gpus naming no GPU of the node: the daemon refuses to start."""
    utilization: list[str] = field(default_factory=list)
    """nvml.utilization_source sm_activity on GPUs without GPM: the daemon uses busy
    time on them (source label busy_time) and says so once."""
    unchecked: list[str] = field(default_factory=list)
    """What could not be checked, and why."""

    @property
    def problems(self) -> list[str]:
        return self.claims + self.utilization


def check_against_nvml(
    config: Config, nvml: NvmlCollector | None, billed: list[BilledGpu]
) -> NvmlFindings:
    """engines[].gpus and nvml.utilization_source against the GPUs NVML listed at start.

    `billed` is `billed_gpus`'s answer. Reads only what the collector learned at
    start: safe on the event loop.
    """
    claims = [engine.gpus for engine in config.engines]
    wants_sm = config.nvml.utilization_source == "sm_activity"
    asked = [
        *(["engines[].gpus"] if any(claims) else []),
        *(["nvml.utilization_source"] if wants_sm else []),
    ]
    if nvml is None or not nvml.available:
        if not asked:
            return NvmlFindings()
        why = (
            "NVML is disabled"
            if nvml is None
            else f"NVML is unavailable ({nvml.unavailable_reason or 'not initialized in time'})"
        )
        return NvmlFindings(unchecked=[f"{' and '.join(asked)} against the node's GPUs: {why}"])
    listed = nvml.inventory()
    # cost.gpus declared beyond what NVML identified, less those it counted unnamed.
    missing = sum(1 for gpu in billed if gpu.source == "missing")
    beyond_count = max(missing - (nvml.listed - len(listed)), 0)
    claim_check = check_claims(claims, listed, nvml.listed, beyond_count)
    utilization = []
    gaps = nvml.sm_activity_gaps
    if wants_sm and gaps:
        index, name, why = gaps[0]
        more = f" (and {len(gaps) - 1} more GPU(s))" if len(gaps) > 1 else ""
        utilization.append(
            f"nvml.utilization_source: sm_activity, but GPU {index} ({name}) has no SM "
            f"activity{more}: {why}; use auto or busy_time"
        )
    return NvmlFindings(claim_check.problems, utilization, claim_check.unverifiable)


def one_line(problems: list[str]) -> str:
    """The first problem, and how many more there are."""
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem(s))" if more else "")
