"""The simulated GPUs: their physics against the engine on them, and how the demo reads
and bills them."""

from __future__ import annotations

import asyncio
import math
import re

import pytest
from simulated_pages import MONDAY, SimClock

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.daemon.demo import (
    DEMO_API_PRICES,
    DEMO_LISTEN_ADDRESS,
    SimulatedGpuCollector,
    demo_config,
    demo_engines,
    demo_gpus,
)
from llm_cost_exporter.tools.simulator.engine import SimulatedEngine
from llm_cost_exporter.tools.simulator.gpus import (
    A100_80GB,
    BUSY_SATURATION_LOAD,
    LLAMA_3_1_8B,
    SM_ACTIVITY_AT_CAPACITY,
    SimulatedGpu,
    busy_utilization,
    gpu_uuid,
    power_watts,
    sm_activity,
)
from llm_cost_exporter.tools.simulator.profiles import make_profile

CAPACITY = 2000.0
IDLE_W, MAX_W = A100_80GB.idle_watts, A100_80GB.max_watts
AT_REST = LLAMA_3_1_8B.runtime_bytes + LLAMA_3_1_8B.weights_bytes
"""Memory in use with no request running: the runtime and the weights."""


def _gpu(clock: SimClock, profile: str, acceleration: float = 60.0, **params: object):
    engine = SimulatedEngine(
        "llama-3.1-8b",
        CAPACITY,
        make_profile(profile, **params),
        acceleration=acceleration,
        tokens_in_wall_time=True,
        clock=clock,
        seed=3,
    )
    return SimulatedGpu(0, engine, LLAMA_3_1_8B), engine


FULL_BUSY = 1 - math.exp(-1 / BUSY_SATURATION_LOAD)


@pytest.mark.parametrize(
    ("load", "busy", "sm", "watts"),
    [
        pytest.param(0.0, 0.0, 0.0, IDLE_W, id="idle"),
        pytest.param(
            BUSY_SATURATION_LOAD,
            1 - math.exp(-1),
            BUSY_SATURATION_LOAD * SM_ACTIVITY_AT_CAPACITY,
            IDLE_W + (MAX_W - IDLE_W) * BUSY_SATURATION_LOAD,
            id="a few requests",
        ),
        pytest.param(
            0.5,
            1 - math.exp(-0.5 / BUSY_SATURATION_LOAD),
            0.5 * SM_ACTIVITY_AT_CAPACITY,
            (IDLE_W + MAX_W) / 2,
            id="half",
        ),
        pytest.param(1.0, FULL_BUSY, SM_ACTIVITY_AT_CAPACITY, MAX_W, id="full"),
        pytest.param(1.6, FULL_BUSY, SM_ACTIVITY_AT_CAPACITY, MAX_W, id="beyond capacity"),
        pytest.param(-0.2, 0.0, 0.0, IDLE_W, id="below zero"),
    ],
)
def test_utilization_and_power_follow_load(
    load: float, busy: float, sm: float, watts: float
) -> None:
    assert busy_utilization(load) == pytest.approx(busy)
    assert sm_activity(load) == pytest.approx(sm)
    assert power_watts(A100_80GB, load) == pytest.approx(watts)
    # Busy time never reads below SM activity: one busy SM makes the GPU busy.
    assert 0.0 <= sm_activity(load) <= busy_utilization(load) <= 1.0


@pytest.mark.parametrize(
    ("profile", "params", "load"),
    [
        ("idle", {}, 0.0),
        ("steady", {"level": 0.25}, 0.25),
        ("steady", {"level": 0.9}, 0.9),
        ("steady", {"level": 1.6}, 1.0),  # demand beyond capacity: served at capacity
    ],
)
def test_a_gpu_reads_the_load_of_its_engine(profile: str, params: dict, load: float) -> None:
    clock = SimClock()
    gpu, engine = _gpu(clock, profile, **params)
    clock.t += 10
    state = gpu.read()
    assert state.load == pytest.approx(load)
    assert state.power_watts == pytest.approx(IDLE_W + (MAX_W - IDLE_W) * load)
    assert state.sm_activity == pytest.approx(SM_ACTIVITY_AT_CAPACITY * load)
    assert 0.0 <= state.sm_activity <= state.busy_utilization <= 1.0
    assert state.idle == (load == 0.0)
    assert state.sm_clock_hertz == (
        A100_80GB.idle_clock_hertz if load == 0.0 else A100_80GB.boost_clock_hertz
    )
    # Memory: the weights, and the KV cache of the requests the engine reports running.
    page = engine.page_state()
    kv_bytes = page.used_blocks * page.block_size * LLAMA_3_1_8B.kv_bytes_per_token
    assert state.memory_used_bytes == AT_REST + kv_bytes
    assert (kv_bytes == 0) == (load == 0.0)
    assert state.memory_used_bytes <= state.memory_total_bytes == A100_80GB.memory_total_bytes


@pytest.mark.parametrize(
    ("profile", "params", "seconds", "watts"),
    [
        ("idle", {}, 100.0, IDLE_W),
        ("steady", {"level": 0.5}, 100.0, (IDLE_W + MAX_W) / 2),
        ("steady", {"level": 2.0}, 37.5, MAX_W),
    ],
)
def test_energy_is_power_over_wall_time(
    profile: str, params: dict, seconds: float, watts: float
) -> None:
    clock = SimClock()
    gpu, _ = _gpu(clock, profile, **params)
    before = gpu.read().energy_joules
    clock.t += seconds
    after = gpu.read().energy_joules
    assert after - before == pytest.approx(watts * seconds, rel=1e-9)


@pytest.mark.parametrize(
    ("profile", "params"),
    [("diurnal", {"peak_to_trough": 12}), ("spiky", {"seed": 7})],
)
@pytest.mark.parametrize("read_every", [2.0, 45.0])
def test_energy_integrates_the_load_the_engine_served(
    profile: str, params: dict, read_every: float
) -> None:
    """Over a simulated day, the energy is idle power over the wall time plus the
    headroom to the cap per token of capacity for every token served, however often
    the GPU is read."""
    clock = SimClock(MONDAY + 6 * 3600)
    gpu, engine = _gpu(clock, profile, **params)
    start = clock.t
    energy_at_start = gpu.read().energy_joules
    while clock.t - start < 86_400 / 60:
        clock.t += read_every
        state = gpu.read()
    served = engine.ground_truth()["tokens"]["total"]
    assert served > 0
    expected = IDLE_W * (clock.t - start) + (MAX_W - IDLE_W) / CAPACITY * served
    # The engine counts whole tokens: a token's worth of energy at most apart.
    assert state.energy_joules - energy_at_start == pytest.approx(
        expected, abs=(MAX_W - IDLE_W) / CAPACITY + 1e-6 * expected
    )


@pytest.mark.parametrize(
    ("profile", "params", "lowest", "highest"),
    [
        ("diurnal", {"peak_to_trough": 12, "peak": 0.9}, 0.075, 0.9),
        ("spiky", {"seed": 7, "base": 0.2, "burst_level": 3.0}, 0.2, 1.0),
    ],
)
def test_readings_stay_within_the_gpu_through_a_day(
    profile: str, params: dict, lowest: float, highest: float
) -> None:
    """A weekday of traffic read every 2 s: every reading within what the GPU can show,
    the load from the profile's trough to its peak (capped at capacity)."""
    clock = SimClock()
    gpu, _ = _gpu(clock, profile, **params)
    loads, energy = set(), 0.0
    for _ in range(720):
        clock.t += 2
        state = gpu.read()
        loads.add(round(state.load, 3))
        assert 0.0 <= state.load <= 1.0
        assert 0.0 <= state.sm_activity <= state.busy_utilization <= 1.0
        assert IDLE_W <= state.power_watts <= MAX_W
        assert AT_REST <= state.memory_used_bytes <= state.memory_total_bytes
        assert state.energy_joules > energy
        energy = state.energy_joules
    assert (min(loads), max(loads)) == (lowest, highest)


def test_gpu_uuids_are_nvml_shaped_distinct_and_stable() -> None:
    uuids = [gpu_uuid(i) for i in range(8)]
    shape = re.compile(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    assert all(shape.fullmatch(u) for u in uuids), uuids
    assert len(set(uuids)) == 8
    assert uuids == [gpu_uuid(i) for i in range(8)]


def test_demo_collector_is_named_simulated_and_reads_both_sources() -> None:
    engines = demo_engines()
    collector = SimulatedGpuCollector(demo_gpus(engines))
    assert collector.name == "simulated_gpu"
    snapshot = asyncio.run(collector.collect())
    assert [(g.index, g.name) for g in snapshot.gpus] == [(0, A100_80GB.name), (1, A100_80GB.name)]
    for reading, engine in zip(snapshot.gpus, engines, strict=True):
        load = engine.served_rate(engine.sim_time) / engine.capacity
        assert reading.sm_activity == pytest.approx(sm_activity(load))
        assert reading.busy_utilization == pytest.approx(busy_utilization(load))
        assert reading.utilization("auto") == (reading.sm_activity, "sm_activity")
        assert reading.utilization("busy_time") == (reading.busy_utilization, "busy_time")
        assert reading.power_watts == pytest.approx(power_watts(A100_80GB, load))
        assert reading.memory_used_bytes is not None and reading.energy_joules is not None
        assert reading.healthy and reading.error is None


def test_demo_bills_the_simulated_gpus_in_place_of_the_declared_ones() -> None:
    """cost.gpus declares two A100s; once read, the two simulated ones are billed instead,
    by UUID, at the same price: never four."""
    config = demo_config(1, DEMO_LISTEN_ADDRESS)
    state = NodeState(config, {}, ApiPrices(**DEMO_API_PRICES))
    declared = state.accrual.hourly_total
    collector = SimulatedGpuCollector(demo_gpus(demo_engines()))
    snapshot = asyncio.run(collector.collect())
    state.record_gpu_snapshot(collector.name, collector.target, snapshot, 0.0, 1.0)
    billed = state.fleet.inventory()
    assert sorted(g.uuid for g in billed) == sorted(g.uuid for g in snapshot.gpus)
    assert [(g.index, g.hourly, g.source) for g in billed] == [(0, 3.20, "nvml"), (1, 3.20, "nvml")]
    state.advance(2.0)
    assert set(state.gpu_owners) == {g.uuid for g in snapshot.gpus}
    assert state.accrual.hourly_total == pytest.approx(declared, rel=1e-12)
