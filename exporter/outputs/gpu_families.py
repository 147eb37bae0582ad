"""The node's GPUs as metric families: inventory and price, health, NVML readings.

A GPU that cannot be read keeps its info, price and health series (health 0)
and loses its reading series: an absent reading means unknown, never zero.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from llm_cost_exporter.accounting.gpu_fleet import GpuStatus
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.accounting.pod_attribution import UNALLOCATED_GPU
from llm_cost_exporter.collectors.readings import CLOCK_EVENT_REASONS, FEATURES, GpuReading
from llm_cost_exporter.outputs.families import (
    BYTES,
    CELSIUS,
    HERTZ,
    JOULES,
    NO_UNIT,
    RATIO,
    WATTS,
    count_of,
    counter,
    gauge,
    money,
)

GPU_LABELS = ("gpu", "uuid")
POD_LABELS = ("namespace", "pod", "container")
POD_INFO_HELP = (
    " `namespace`, `pod` and `container` hold it, from the kubelet: one series per "
    "container holding it or one of its MIG devices (several for a shared GPU), "
    "(unallocated) when none does."
)

READING_GAUGES = (
    (
        "gpu_memory_used_bytes",
        "memory_used_bytes",
        "GPU memory in use, without what the driver reserves (drivers before R510: with it).",
        BYTES,
    ),
    ("gpu_memory_total_bytes", "memory_total_bytes", "GPU memory installed.", BYTES),
    ("gpu_power_watts", "power_watts", "Power draw (a 1 s average on Ampere and newer).", WATTS),
)
DIAGNOSTIC_GAUGES = (
    ("gpu_temperature_celsius", "temperature_celsius", "GPU core temperature.", CELSIUS),
    ("gpu_sm_clock_hertz", "sm_clock_hertz", "Current SM clock.", HERTZ),
    (
        "gpu_sm_occupancy_ratio",
        "sm_occupancy",
        "Warps resident on the SMs over the maximum (GPM, Hopper and newer; 0-1).",
        RATIO,
    ),
)
"""Exported with metrics.gpu_diagnostics only, as are the clock events, the feature
support, the MIG mode and the utilization by each source."""


def _labels(status: GpuStatus) -> list[str]:
    return [status.gpu.label, status.gpu.uuid]


def gpu_families(state: NodeState) -> Iterator[Metric]:
    fleet = state.fleet
    owners = state.gpu_owners
    statuses = list(fleet.gpus.values())
    info_help = (
        "A GPU this node pays for; always 1. `source` is nvml, declared (cost.gpus, "
        "NVML unavailable) or missing (declared but not listed by NVML); `model` is "
        "what it serves, (unclaimed) for idle capacity."
    )
    info_labels = (*GPU_LABELS, "name", "price_key", "source", "model")
    pods = state.gpu_pods
    if pods is not None:
        info_help += POD_INFO_HELP
        info_labels += POD_LABELS
    info = gauge("gpu_info", info_help, info_labels, unit=NO_UNIT)
    hourly = gauge(
        "gpu_hourly_cost",
        "What one GPU of a price key costs per hour before overhead: rental price, or "
        "amortized purchase; llmcost_gpu_info names each GPU's price_key.",
        ("price_key",),
        unit=money(state.config.currency, "h"),
    )
    prices: dict[str, float] = {}
    for status in statuses:
        gpu = status.gpu
        owner = ",".join(owners.get(gpu.key, ()))
        labels = [*_labels(status), gpu.name, gpu.price_key, gpu.source, owner]
        if pods is None:
            info.add_metric(labels, 1)
        else:
            for holder in pods.get(gpu.key, UNALLOCATED_GPU).holders:
                info.add_metric([*labels, holder.namespace, holder.pod, holder.container], 1)
        prices.setdefault(gpu.price_key, gpu.hourly)
    for price_key, price in sorted(prices.items()):
        hourly.add_metric([price_key], price)
    yield info
    yield hourly
    diagnostics = state.config.metrics.gpu_diagnostics
    yield from _health(statuses, diagnostics)
    yield from _readings(statuses, state.config.nvml.utilization_source, diagnostics)
    yield from _mig(statuses, diagnostics)
    missing = gauge(
        "gpu_price_missing",
        "1 for a GPU NVML listed after start whose model has no price: it is not billed.",
        (*GPU_LABELS, "name"),
        unit=NO_UNIT,
    )
    for uuid, reading in sorted(fleet.unpriced.items()):
        missing.add_metric([str(reading.index), uuid, reading.name], 1)
    yield missing


def _health(statuses: list[GpuStatus], diagnostics: bool) -> Iterator[Metric]:
    healthy = gauge(
        "gpu_healthy",
        "1 if NVML answered for the GPU in the last cycle, 0 if it failed or fell off "
        "the bus (it is still billed).",
        GPU_LABELS,
        unit=NO_UNIT,
    )
    errors = counter(
        "gpu_errors",
        "Cycles in which the GPU could not be fully read: gpu_lost (nothing read) or "
        "query_failed (a query other than an unsupported one failed); a reason's series "
        "appears with its first error.",
        (*GPU_LABELS, "reason"),
        unit=count_of("error"),
    )
    supported = gauge(
        "gpu_feature_supported",
        "1 if NVML reads the feature on this GPU, 0 if it answers NOT_SUPPORTED or the "
        "driver lacks the call (FUNCTION_NOT_FOUND).",
        (*GPU_LABELS, "feature"),
        unit=NO_UNIT,
    )
    for status in statuses:
        if status.healthy is not None:
            healthy.add_metric(_labels(status), 1 if status.healthy else 0)
        if status.reading is not None:
            for reason, count in sorted(status.errors.items()):
                if count:
                    errors.add_metric([*_labels(status), reason], count)
        if diagnostics and status.reading is not None and status.reading.supported:
            for feature in FEATURES:
                value = status.reading.supported.get(feature, False)
                supported.add_metric([*_labels(status), feature], 1 if value else 0)
    yield from (healthy, errors, *([supported] if diagnostics else []))


def _readings(statuses: list[GpuStatus], preferred: str, diagnostics: bool) -> Iterator[Metric]:
    utilization = gauge(
        "gpu_utilization_ratio",
        "GPU utilization by source: busy_time = share of time any kernel ran "
        "(reads 1 with a single SM busy), sm_activity = share of SMs busy (GPM).",
        (*GPU_LABELS, "source"),
        unit=RATIO,
    )
    selected = gauge(
        "gpu_selected_utilization_ratio",
        "The GPU utilization alerts and dashboards use, from the source that "
        "nvml.utilization_source selects (auto: SM activity where available; "
        "sm_activity: busy time on GPUs without GPM).",
        (*GPU_LABELS, "source"),
        unit=RATIO,
    )
    gauges = [
        (gauge(name, doc, GPU_LABELS, unit=unit), attr)
        for name, attr, doc, unit in (*READING_GAUGES, *(DIAGNOSTIC_GAUGES if diagnostics else ()))
    ]
    energy = counter(
        "gpu_energy_joules",
        "Energy drawn by the GPU; monotonic across driver reloads (integrated from "
        "power where the GPU has no energy counter).",
        GPU_LABELS,
        unit=JOULES,
    )
    throttle = gauge(
        "gpu_clock_event_active",
        "1 while the named clock event (throttle) reason holds the GPU's clocks down.",
        (*GPU_LABELS, "reason"),
        unit=NO_UNIT,
    )
    for status in statuses:
        labels = _labels(status)
        if status.energy_joules_total is not None:
            energy.add_metric(labels, status.energy_joules_total)
        reading: GpuReading | None = status.reading
        if reading is None or not reading.healthy:
            continue
        for source, value in (
            ("busy_time", reading.busy_utilization),
            ("sm_activity", reading.sm_activity),
        ):
            if diagnostics and value is not None:
                utilization.add_metric([*labels, source], value)
        chosen = reading.utilization(preferred)
        if chosen is not None:
            selected.add_metric([*labels, chosen[1]], chosen[0])
        for family, attr in gauges:
            value = getattr(reading, attr)
            if value is not None:
                family.add_metric(labels, value)
        if diagnostics and reading.clock_event_reasons is not None:
            for reason, bit in CLOCK_EVENT_REASONS.items():
                active = 1 if reading.clock_event_reasons & bit else 0
                throttle.add_metric([*labels, reason], active)
    if diagnostics:
        yield utilization
    yield selected
    yield from (family for family, _ in gauges)
    yield energy
    if diagnostics:
        yield throttle


def _mig(statuses: list[GpuStatus], diagnostics: bool) -> Iterator[Metric]:
    mode = gauge("gpu_mig_mode_enabled", "1 if the GPU runs in MIG mode.", GPU_LABELS, unit=NO_UNIT)
    instance_labels = (*GPU_LABELS, "mig_uuid", "gpu_instance")
    instances = gauge(
        "gpu_mig_instance_info",
        "A MIG instance NVML lists on the GPU; always 1.",
        instance_labels,
        unit=NO_UNIT,
    )
    used = gauge(
        "gpu_mig_memory_used_bytes",
        "Memory in use on a MIG instance.",
        (*GPU_LABELS, "mig_uuid"),
        unit=BYTES,
    )
    total = gauge(
        "gpu_mig_memory_total_bytes",
        "Memory of a MIG instance.",
        (*GPU_LABELS, "mig_uuid"),
        unit=BYTES,
    )
    for status in statuses:
        reading = status.reading
        if reading is None or reading.mig_enabled is None:
            continue
        labels = _labels(status)
        if diagnostics:
            mode.add_metric(labels, 1 if reading.mig_enabled else 0)
        for mig in reading.mig_instances:
            instance = "" if mig.gpu_instance_id is None else str(mig.gpu_instance_id)
            instances.add_metric([*labels, mig.uuid, instance], 1)
            if mig.memory_used_bytes is not None:
                used.add_metric([*labels, mig.uuid], mig.memory_used_bytes)
            if mig.memory_total_bytes is not None:
                total.add_metric([*labels, mig.uuid], mig.memory_total_bytes)
    yield from (*([mode] if diagnostics else []), instances, used, total)
