"""The state file: every counter resumes, the downtime is billed, a bad file costs one line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import fixture_page, minimal_config_dict
from golden_pages import GOLDEN, _gpu, _snapshot
from prometheus_client.parser import text_string_to_metric_families
from realparts.kubelet import pod, response
from realparts.samples import eventually
from realparts.timeouts import scaled

from llm_cost_exporter.accounting import costmodel
from llm_cost_exporter.accounting.accrual import CostAccrual
from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.gpu_fleet import GpuFleet
from llm_cost_exporter.accounting.gpu_inventory import build_inventory
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.kubelet.devices import pod_devices
from llm_cost_exporter.collectors.readings import EngineReading, EngineReadings, GpuSnapshot
from llm_cost_exporter.collectors.vllm import parse_vllm_page
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon.assembly import resolve_prices
from llm_cost_exporter.daemon.state_file import StateFile, write_atomically

API = ApiPrices(0.80, 0.08, 4.00)
WALL = 1_795_340_000.0
"""After the fixture engines' `_created` time."""


class Wall:
    def __init__(self, now: float = WALL) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def owned_config(state_file: Path, **overrides):
    data = {
        "engines": [
            {"url": "http://127.0.0.1:8000/metrics", "gpus": [0]},
            {"url": "http://127.0.0.1:8001/metrics", "gpus": [1]},
        ],
        "cost": {
            "gpus": [{"model": "H100", "count": 2}],
            "owned": {
                "purchase_prices": {"H100": 30000},
                "energy_price_per_kwh": 0.15,
                "pue": 1.3,
            },
            "node_extra_per_hour": 0.5,
            "overhead_ratio": 0.25,
            "fixed_per_month": 730,
        },
        "api_prices": {"models": {"tiny-llama": {"input": 0.8, "output": 4.0}}},
        "capacity": {"learn": True, "learn_window": "10s"},
        "windows": ["1m"],
        "limits": {"models_per_engine": 1},
        "state_file": str(state_file),
        **overrides,
    }
    return config_from_mapping(data)


def owned_node(config, wall: Wall) -> NodeState:
    inventory = build_inventory(
        [(g.index, g.uuid, g.name) for g in _snapshot(0).gpus],
        [(g.model, g.count) for g in config.cost.gpus],
        config.cost.gpu_hourly_by_key,
        nvml_available=True,
    )
    models, default = resolve_prices(config)
    return NodeState(config, models, default, wall_clock=wall, gpus=inventory)


def grown(
    readings: list[EngineReading], factor: float, created: float | None = None
) -> list[EngineReading]:
    return [
        EngineReading(
            **{
                **r.__dict__,
                "prompt_tokens": r.prompt_tokens * factor,
                "cached_prompt_tokens": r.cached_prompt_tokens * factor,
                "generation_tokens": r.generation_tokens * factor,
                "started_at": created or r.started_at,
                "requests": r.requests * factor,
                # The page counts none: some preempted, some cached tokens transferred in.
                "preemptions": 3.0 * factor,
                "transferred_prompt_tokens": r.cached_prompt_tokens * factor / 2,
            }
        )
        for r in readings
    ]


BUSY = parse_vllm_page(fixture_page("vllm-0.32.0-cpu-busy.prom"))
"""Model tiny-llama, priced."""
OTHER = [
    EngineReading(**{**r.__dict__, "model": model})
    for r in BUSY
    for model in ("unpriced-model", "one-too-many")  # the second is beyond the limit
]


def gpus(cycle: int) -> GpuSnapshot:
    """Two H100s drawing energy; the second falls off the bus every third cycle."""
    second = (
        _gpu(1, cycle, healthy=False, error="gpu_lost", busy_utilization=None)
        if cycle % 3 == 2
        else _gpu(1, cycle)
    )
    return GpuSnapshot("550.54.15", (_gpu(0, cycle), second))


B = "http://127.0.0.1:8001/metrics"
"""The engine that serves one model more than limits.models_per_engine."""


def run_cycles(state: NodeState, wall: Wall, start: int, cycles: int) -> None:
    """Engines that grow, restart and dip, an NVML whose GPUs draw energy (one is lost
    now and then), an engine that fails now and then, a kubelet whose pods take turns
    on a GPU: every counter moves."""
    for cycle in range(start, start + cycles):
        wall.now = WALL + cycle * 5.0
        if cycle < 4:  # then it restarts, and counts from 0.1 of the page's values again
            engine = grown(BUSY, 1 + cycle)
        else:
            engine = grown(BUSY, (cycle - 3) / 10, created=WALL + 3.5 * 5.0)
        engine = EngineReadings(engine, {"non_finite": cycle % 2})  # a NaN gauge now and then
        state.record_engine_readings("vllm", "http://127.0.0.1:8000/metrics", engine, 0.01)
        if cycle % 3 == 2:
            state.record_failure(
                "vllm", "http://127.0.0.1:8001/metrics", "timeout", "slow", 3.0, engine=True
            )
        else:
            factor = cycle * 0.95 if cycle % 4 == 1 else 1 + cycle  # a dip now and then
            state.record_engine_readings(
                "vllm", "http://127.0.0.1:8001/metrics", grown(OTHER, factor), 0.01
            )
        state.record_gpu_snapshot("nvml", "local", gpus(cycle), 0.01, cycle * 5.0)
        holder = pod("ns", f"pod-{cycle % 2}", gpus(cycle).gpus[0].uuid)
        devices = pod_devices(response([holder]))
        state.record_pod_devices("pod_resources", "kubelet.sock", devices, 0.01, cycle * 5.0)
        state.advance(cycle * 5.0)


def counters(state: NodeState) -> dict[tuple[str, tuple], float]:
    """Every sample of every counter family the page shows."""
    from conftest import render_page

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(render_page(state))
        if family.type == "counter"
        for sample in family.samples
        if sample.name.startswith("llmcost_") and sample.name.endswith("_total")
    }


def golden_counter_families() -> set[str]:
    names = set()
    for page in GOLDEN.glob("*.prom"):
        for line in page.read_text().splitlines():
            if line.startswith("# TYPE ") and line.endswith(" counter"):
                names.add(line.split()[2])
    return names


def test_every_counter_resumes_exactly(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    wall = Wall()
    config = owned_config(path)
    before = owned_node(config, wall)
    run_cycles(before, wall, 0, 6)
    seen = counters(before)
    moving = {name for (name, _), value in seen.items() if value > 0}
    # Every counter family of the golden pages moved, except the downtime, which only
    # a resumed exporter bills.
    expected = golden_counter_families() - {
        "llmcost_downtime_billed_seconds_total",
        "llmcost_downtime_billed_cost_total",
    }
    assert expected - moving == set()
    StateFile(path).save_now(before)

    after = owned_node(config, Wall(wall.now))
    assert StateFile(path).resume(after) == "resumed"
    # Targets resume when they report, as they do in the first cycle; a GPU's errors are
    # shown with its reading (a healthy one adds none, and its energy is a new baseline).
    for collector, target in before.targets:
        after.status(collector, target, engine=collector == "vllm")
    after.record_gpu_snapshot("nvml", "local", gpus(6), 0.01, 1000.0)
    assert counters(after) == seen
    assert after.learned.peak == before.learned.peak
    assert after.learned.model_peaks == before.learned.model_peaks


def test_a_resumed_node_counts_like_one_that_never_stopped(tmp_path: Path) -> None:
    """Saved, then resumed by the next cycle, the counters after more cycles are the same:
    the interval from the save to the resumed first cycle is billed as downtime at the
    saved rates, as the steady node accrued it. Only GPU energy differs by an interval:
    NVML's first reading after the restart is a new baseline, and the interval's energy
    is billed at the last power reading instead."""
    path = tmp_path / "state.json"
    config = owned_config(path)
    wall_a, wall_b = Wall(), Wall()
    steady = owned_node(config, wall_a)
    run_cycles(steady, wall_a, 0, 10)

    first = owned_node(config, wall_b)
    run_cycles(first, wall_b, 0, 5)
    StateFile(path).save_now(first)
    second = owned_node(config, wall_b)
    assert StateFile(path).resume(second) == "resumed"
    run_cycles(second, wall_b, 5, 5)
    assert second.downtime_billed_seconds == 5.0

    expected, resumed = counters(steady), counters(second)
    # Which names were folded beyond the model limits is not kept: the one still
    # folded is counted once more by the resumed process.
    exceeded = ("llmcost_model_limit_exceeded_total", (("collector", "vllm"), ("target", B)))
    assert resumed.pop(exceeded) == expected.pop(exceeded) + 1
    energy = {k for k in expected if "energy" in k[0] or k[0] in COST_FAMILIES}
    energy |= {k for k in expected if k[0].startswith("llmcost_downtime_")}
    assert {k: v for k, v in resumed.items() if k not in energy} == {
        k: v for k, v in expected.items() if k not in energy
    }
    for component in ("gpu", "node_extra", "fixed"):
        key = ("llmcost_cost_total", (("component", component),))
        assert resumed[key] == pytest.approx(expected[key], rel=1e-12)
    lost = {k: expected[k] - resumed[k] for k in energy if "energy" in k[0]}
    interval = 30_000.0 * 3  # joules both GPUs draw in one cycle (see _gpu)
    joules = sum(v for k, v in lost.items() if k[0] == "llmcost_gpu_energy_joules_total")
    assert joules == interval


COST_FAMILIES = {"llmcost_cost_total", "llmcost_model_cost_total", "llmcost_pod_cost_total"}


# --- the downtime ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("saved_at", "now", "max_gap", "seconds"),
    [
        (1000.0, 1030.0, 3600.0, 30.0),
        (1000.0, 1000.0, 3600.0, 0.0),
        (1000.0, 1000.0 + 7200.0, 3600.0, 3600.0),  # stale: at most the max gap
        (1000.0, 990.0, 3600.0, 0.0),  # the clock went back: nothing
        (1000.0, 1000.0 + 3600.0, 3600.0, 3600.0),
    ],
)
def test_downtime_seconds(saved_at, now, max_gap, seconds) -> None:
    assert costmodel.downtime_seconds(saved_at, now, max_gap) == seconds


@pytest.mark.parametrize(
    ("hourly", "owner_hourly", "seconds", "spend", "owner_spend"),
    [
        # $3.60/h of GPU and $1.08/h of overhead for 10 s: exactly 1 and 0.3 cents
        (
            {"gpu": 3.6, "overhead": 1.08},
            {"m": 4.68},
            10.0,
            {"gpu": 0.01, "overhead": 0.003},
            {"m": 0.013},
        ),
        # two owners, an hour
        (
            {"gpu": 4.0, "node_extra": 1.0},
            {"a": 3.0, "b": 2.0},
            3600.0,
            {"gpu": 4.0, "node_extra": 1.0},
            {"a": 3.0, "b": 2.0},
        ),
        # a component the node no longer has (energy, now rented) is not billed, and
        # the owners' shares shrink with it
        (
            {"gpu": 3.0, "energy": 1.0},
            {"a": 2.0, "b": 2.0},
            3600.0,
            {"gpu": 3.0},
            {"a": 1.5, "b": 1.5},
        ),
        ({"gpu": 3.0}, {"a": 3.0}, 0.0, {"gpu": 0.0}, {"a": 0.0}),
    ],
)
def test_downtime_is_billed_at_the_saved_rates(
    hourly, owner_hourly, seconds, spend, owner_spend
) -> None:
    config = config_from_mapping(
        minimal_config_dict(cost={"gpu_prices_per_hour": {"A100": 1}, "node_extra_per_hour": 1})
    )
    accrual = CostAccrual(config.cost, GpuFleet([], {}, []))
    billed = accrual.bill_downtime(seconds, hourly, owner_hourly)
    assert billed == pytest.approx(sum(spend.values()), rel=1e-12)
    assert {c: v for c, v in accrual.spend.items() if v or c in spend} == pytest.approx(spend)
    assert accrual.owner_spend == pytest.approx(owner_spend)


def rented_node(path: Path, wall: Wall, **overrides) -> NodeState:
    config = config_from_mapping(
        minimal_config_dict(
            nvml={"enabled": False},
            cost={
                "gpus": [{"model": "A100-80GB", "count": 1}],
                "gpu_prices_per_hour": {"A100-80GB": 3.60},
                "overhead_ratio": 0.25,
            },
            state_file=str(path),
            **overrides,
        )
    )
    return NodeState(config, {}, API, wall_clock=wall)


@pytest.mark.parametrize(
    ("down_for", "max_gap", "billed", "level", "message"),
    [
        (30.0, "1h", 30.0, logging.INFO, "saved 30.0s ago: billed 30.0s of downtime at 4.5000"),
        (7200.0, "1h", 3600.0, logging.WARNING, "more than state_max_gap (3600s)"),
        (-50.0, "1h", 0.0, logging.WARNING, "saved 50.0s in the future"),
    ],
)
def test_the_first_cycle_bills_the_downtime_in_one_line(
    tmp_path, caplog, down_for, max_gap, billed, level, message
) -> None:
    path = tmp_path / "state.json"
    wall = Wall(WALL)
    before = rented_node(path, wall, state_max_gap=max_gap)
    before.advance(0.0)
    wall.now += 100.0
    before.advance(100.0)
    spent = before.accrual.spend_total
    assert spent == pytest.approx(4.5 * 100 / 3600)
    state_file = StateFile(path)
    state_file.save_now(before)
    saved_at = json.loads(path.read_text())["saved_at"]

    after_wall = Wall(saved_at + down_for)
    after = rented_node(path, after_wall, state_max_gap=max_gap)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert StateFile(path).resume(after) == "resumed"
        after.advance(5000.0)
    records = [r for r in caplog.records if "downtime" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == level
    assert message in records[0].getMessage()
    cost = 4.5 * billed / 3600
    assert after.downtime_billed_seconds == billed
    assert after.downtime_billed_cost == pytest.approx(cost, rel=1e-12)
    assert after.accrual.spend_total == pytest.approx(spent + cost, rel=1e-12)
    assert sum(after.accrual.owner_spend.values()) == pytest.approx(spent + cost, rel=1e-12)
    assert after.accrual.spend["gpu"] == pytest.approx(3.6 * (100 + billed) / 3600, rel=1e-12)


def test_tokens_served_while_down_are_counted(tmp_path) -> None:
    """Same `_created`: the value less the saved one. A newer one: in full."""
    path = tmp_path / "state.json"
    wall = Wall()
    before = rented_node(path, wall)
    reading = EngineReading("m", "0", 1000, 100, 500, 1, 0, None, None, None, 1.0)
    before.record_engine_readings("vllm", "t", [reading], 0.0)
    before.advance(0.0)
    StateFile(path).save_now(before)
    assert before.tokens.tokens_total == 0  # a baseline

    same = rented_node(path, Wall(WALL + 60))
    StateFile(path).resume(same)
    later = EngineReading("m", "0", 1600, 150, 800, 1, 0, None, None, None, 1.0)
    same.record_engine_readings("vllm", "t", [later], 0.0)
    assert same.tokens.tokens_total == 600 + 300
    assert same.targets[("vllm", "t")].restarts == 0

    restarted = rented_node(path, Wall(WALL + 60))
    StateFile(path).resume(restarted)
    fresh = EngineReading("m", "0", 70, 0, 30, 1, 0, None, None, None, WALL + 30)
    restarted.record_engine_readings("vllm", "t", [fresh], 0.0)
    assert restarted.tokens.tokens_total == 100
    assert restarted.targets[("vllm", "t")].restarts == 1


# --- files that cannot be used -----------------------------------------------------


def saved_file(tmp_path: Path) -> Path:
    path = tmp_path / "state.json"
    wall = Wall()
    node = rented_node(path, wall)
    node.advance(0.0)
    wall.now += 60
    node.advance(60.0)
    StateFile(path).save_now(node)
    return path


def _edit(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


BAD_FILES = {
    "not JSON": lambda p: p.write_text("{not json"),
    "truncated": lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]),
    "empty": lambda p: p.write_text(""),
    "invalid UTF-8": lambda p: p.write_bytes(b'{"format": "\xff\xfe"}'),
    "deeply nested": lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
    "a list": lambda p: p.write_text("[1, 2]"),
    "another program's JSON": lambda p: p.write_text('{"hello": "world"}'),
    "NaN spend": lambda p: p.write_text(p.read_text().replace('"gpu":', '"gpu": NaN, "x":', 1)),
    "negative spend": lambda p: _edit(p, lambda d: d["node"]["cost"]["spend"].update(gpu=-1.0)),
    "a string count": lambda p: _edit(
        p, lambda d: d["node"]["downtime"].update(billed_seconds="12")
    ),
    "no saved_at": lambda p: _edit(p, lambda d: d.pop("saved_at")),
    "no tokens": lambda p: _edit(p, lambda d: d["node"].pop("tokens")),
    "identity not a mapping": lambda p: _edit(p, lambda d: d.update(identity=[1])),
}


@pytest.mark.parametrize("spoil", BAD_FILES.values(), ids=list(BAD_FILES))
def test_an_unreadable_file_is_one_line_and_set_aside(tmp_path, caplog, spoil) -> None:
    path = saved_file(tmp_path)
    spoil(path)
    spoiled = path.read_bytes()
    node = rented_node(path, Wall())
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert StateFile(path).resume(node) == "unreadable"
        node.advance(0.0)
    assert len(caplog.records) == 1, caplog.text
    assert caplog.records[0].levelno == logging.WARNING
    assert "unreadable" in caplog.text and "counters start from zero" in caplog.text
    assert not path.exists()
    assert path.with_name("state.json.unreadable").read_bytes() == spoiled
    assert node.accrual.spend_total == 0 and node.downtime_billed_seconds == 0
    assert node.tokens.models == {}


FOREIGN = {
    "another currency": (
        lambda d: d["identity"].update(currency="EUR"),
        "its money is in EUR, this exporter's in USD",
    ),
    "a newer format": (lambda d: d.update(version=99), "written by a newer version"),
}


@pytest.mark.parametrize(("change", "reason"), FOREIGN.values(), ids=list(FOREIGN))
def test_a_foreign_file_is_one_line_and_set_aside(tmp_path, caplog, change, reason) -> None:
    path = saved_file(tmp_path)
    _edit(path, change)
    node = rented_node(path, Wall())
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert StateFile(path).resume(node) == "foreign"
    assert len(caplog.records) == 1 and reason in caplog.text, caplog.text
    assert path.with_name("state.json.foreign").exists() and not path.exists()
    assert node.accrual.spend_total == 0


def test_a_file_from_a_node_with_other_gpus_is_foreign(tmp_path, caplog) -> None:
    path = tmp_path / "state.json"
    wall = Wall()
    node = owned_node(owned_config(path), wall)
    run_cycles(node, wall, 0, 2)
    StateFile(path).save_now(node)
    _edit(
        path,
        lambda d: d["identity"].update(gpus=["GPU-elsewhere-0", "GPU-elsewhere-1"], host="b7"),
    )
    other = owned_node(owned_config(path), wall)
    with caplog.at_level(logging.INFO):
        assert StateFile(path).resume(other) == "foreign"
    assert "none of its GPUs is on this node (it was written on 'b7')" in caplog.text
    # One GPU in common (a GPU replaced): still this node's.
    StateFile(path).save_now(node)
    _edit(path, lambda d: d["identity"]["gpus"].__setitem__(0, "GPU-replaced"))
    assert StateFile(path).resume(owned_node(owned_config(path), wall)) == "resumed"


def test_a_missing_file_is_one_info_line(tmp_path, caplog) -> None:
    path = tmp_path / "state.json"
    with caplog.at_level(logging.INFO):
        assert StateFile(path).resume(rented_node(path, Wall())) == "missing"
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.INFO


# --- writing ---------------------------------------------------------------------


def test_an_unwritable_file_is_one_warning_until_it_works_again(tmp_path, caplog) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    state_file = StateFile(blocker / "state.json")
    node = rented_node(blocker / "state.json", Wall())
    node.advance(0.0)
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            state_file.save_now(node)
    assert len(caplog.records) == 1 and "cannot write state file" in caplog.text
    blocker.unlink()
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            state_file.save_now(node)
    assert [r.getMessage().endswith("is written again") for r in caplog.records] == [False, True]
    assert (blocker / "state.json").exists()


def test_an_older_snapshot_never_replaces_a_newer_one(tmp_path) -> None:
    state_file = StateFile(tmp_path / "state.json")
    assert state_file.write({"n": 2}, 2)
    assert not state_file.write({"n": 1}, 1)
    assert json.loads((tmp_path / "state.json").read_text()) == {"n": 2}


CRASH_MID_WRITE = """
import os, sys
from pathlib import Path
from llm_cost_exporter.daemon import state_file
def crash(*args):
    os._exit(9)  # the process dies after the new data is on disk, before the rename
os.replace = crash
state_file.write_atomically(Path(sys.argv[1]), '{"new": true}')
"""


def test_a_crash_mid_write_leaves_the_old_file(tmp_path, caplog) -> None:
    path = saved_file(tmp_path)
    old = path.read_bytes()
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_MID_WRITE, str(path)], capture_output=True, check=False
    )
    assert crashed.returncode == 9, crashed.stderr.decode()
    assert path.read_bytes() == old
    leftovers = list(tmp_path.glob(".state.json.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].read_text() == '{"new": true}'
    with caplog.at_level(logging.INFO):
        assert StateFile(path).resume(rented_node(path, Wall())) == "resumed"
    assert list(tmp_path.glob(".state.json.*.tmp")) == []


def test_write_atomically_replaces_whole_and_leaves_nothing_behind(tmp_path) -> None:
    path = tmp_path / "deep" / "state.json"
    write_atomically(path, "one")
    write_atomically(path, "two")
    assert path.read_text() == "two"
    assert sorted(os.listdir(path.parent)) == ["state.json"]


def test_a_hung_write_holds_up_neither_the_cycle_nor_the_shutdown(tmp_path, caplog, monkeypatch):
    from llm_cost_exporter.daemon import state_file as module

    release = threading.Event()
    real_write = module.write_atomically
    writes = []

    def hung(path: Path, text: str) -> None:
        writes.append(text)
        release.wait()
        real_write(path, text)

    monkeypatch.setattr(module, "write_atomically", hung)
    path = tmp_path / "state.json"
    node = rented_node(path, Wall())
    node.advance(0.0)
    state_file = StateFile(path)

    async def cycles_then_shutdown() -> list[str]:
        try:
            for _ in range(3):  # the first write hangs; the next cycles neither wait nor write
                await asyncio.wait_for(state_file.save(node, timeout=0.05), 5)
            state_file.save_now(node, timeout=0.05)
            return [r.getMessage() for r in caplog.records]
        finally:
            release.set()  # or the event loop would wait for the writer thread at exit

    with caplog.at_level(logging.INFO):
        messages = asyncio.run(cycles_then_shutdown())
    assert len(writes) == 1
    assert len(messages) == 2, messages
    assert "takes longer than 0.05s" in messages[0]
    assert "an earlier write is still running" in messages[1]
    state_file.save_now(node)
    assert json.loads(path.read_text())["format"] == "llm-cost-exporter state"


def test_a_bug_in_one_write_is_logged_and_the_next_cycle_writes(tmp_path, caplog) -> None:
    path = tmp_path / "state.json"
    node = rented_node(path, Wall())
    node.advance(0.0)
    state_file = StateFile(path)
    real_document = state_file.document

    def unserializable(state: NodeState, saved_at: float):
        sequence, document = real_document(state, saved_at)
        return sequence, {**document, "bug": object()}

    state_file.document = unserializable  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        asyncio.run(state_file.save(node, timeout=scaled(30)))
    assert not path.exists()
    assert "writing state file" in caplog.text and "failed unexpectedly" in caplog.text
    state_file.document = real_document  # type: ignore[method-assign]
    asyncio.run(state_file.save(node, timeout=scaled(30)))
    assert json.loads(path.read_text())["format"] == "llm-cost-exporter state"


def test_a_write_left_running_by_an_ended_loop_does_not_stop_the_next_loops_writes(
    tmp_path, monkeypatch
) -> None:
    from llm_cost_exporter.daemon import state_file as module

    release = threading.Event()
    real_write = module.write_atomically

    def slow(path: Path, text: str) -> None:
        release.wait()
        real_write(path, text)

    monkeypatch.setattr(module, "write_atomically", slow)
    path = tmp_path / "state.json"
    wall = Wall()
    node = rented_node(path, wall)
    node.advance(0.0)
    state_file = StateFile(path)
    asyncio.run(state_file.save(node, timeout=0.01))  # its loop ends before its write
    release.set()
    wall.now += 60
    node.advance(60.0)

    def saved_by_a_later_loop() -> bool:
        asyncio.run(state_file.save(node, timeout=scaled(30)))
        return path.exists() and json.loads(path.read_text())["saved_at"] == wall.now

    eventually(saved_by_a_later_loop, what="a write by a later loop")


def test_a_link_planted_at_the_temporary_name_is_not_written_through(tmp_path) -> None:
    path = tmp_path / "state.json"
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    planted = tmp_path / f".state.json.{os.getpid()}.{threading.get_ident()}.tmp"
    planted.symlink_to(victim)
    write_atomically(path, "new")
    assert victim.read_text() == "untouched"
    assert path.read_text() == "new" and not path.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "victim"]
