"""Cost accrual on its own: wall time priced by component, split among GPU owners."""

from __future__ import annotations

import pytest

from llm_cost_exporter.accounting.accrual import CostAccrual
from llm_cost_exporter.accounting.gpu_fleet import GpuFleet
from llm_cost_exporter.accounting.gpu_inventory import UNCLAIMED, build_inventory
from llm_cost_exporter.collectors.readings import GpuReading
from llm_cost_exporter.config import CostConfig, GpuGroup, OwnedHardware


def rented(count: int, **extra) -> tuple[CostConfig, GpuFleet]:
    cost = CostConfig(gpus=(GpuGroup("A100", count),), gpu_prices_per_hour={"A100": 3.20}, **extra)
    inventory = build_inventory([], [("A100", count)], cost.gpu_hourly_by_key, False)
    return cost, GpuFleet(inventory, cost.gpu_hourly_by_key, [("A100", count)])


@pytest.mark.parametrize(
    ("extra", "seconds", "spend"),
    [
        ({"overhead_ratio": 0.0}, 3600, {"gpu": 6.40, "node_extra": 0, "overhead": 0, "fixed": 0}),
        (
            {"overhead_ratio": 0.3, "node_extra_per_hour": 1.0, "fixed_per_month": 730.0},
            1800,
            {"gpu": 3.20, "node_extra": 0.5, "overhead": 1.11, "fixed": 0.5},
        ),
        ({"overhead_ratio": 0.25}, 0, {"gpu": 0, "node_extra": 0, "overhead": 0, "fixed": 0}),
    ],
)
def test_spend_by_component(extra, seconds, spend) -> None:
    cost, fleet = rented(2, **extra)
    accrual = CostAccrual(cost, fleet)
    owners = {key: (UNCLAIMED,) for key in fleet.gpus}
    accrual.advance(seconds, owners, [UNCLAIMED])
    assert accrual.components == ("gpu", "node_extra", "overhead", "fixed")
    assert accrual.spend == pytest.approx(spend)
    assert accrual.spend_total == pytest.approx(sum(spend.values()))
    per_hour = {k: v * 3600 / seconds for k, v in spend.items()} if seconds else None
    if per_hour:
        assert accrual.hourly == pytest.approx(per_hour)


def test_spend_keeps_accruing_and_the_hourly_rate_does_not_accumulate() -> None:
    cost, fleet = rented(1, overhead_ratio=0.0)
    accrual = CostAccrual(cost, fleet)
    owners = {key: ("m",) for key in fleet.gpus}
    for _ in range(4):
        accrual.advance(900, owners, [])
    assert accrual.spend_total == pytest.approx(3.20)
    assert accrual.hourly_total == pytest.approx(3.20)
    assert accrual.owner_spend == pytest.approx({"m": 3.20})
    assert accrual.owner_hourly == pytest.approx({"m": 3.20})


def test_owners_split_their_gpus_and_shared_costs_and_sum_to_the_node() -> None:
    cost, fleet = rented(3, overhead_ratio=0.5, node_extra_per_hour=0.9)
    keys = list(fleet.gpus)
    owners = {keys[0]: ("a",), keys[1]: ("a", "b"), keys[2]: (UNCLAIMED,)}
    accrual = CostAccrual(cost, fleet)
    accrual.advance(3600, owners, [])
    # a: 1.5 GPUs, b: 0.5, unclaimed: 1; node extra follows the GPU cost held
    assert accrual.owner_spend["a"] == pytest.approx((4.80 + 0.45) * 1.5)
    assert accrual.owner_spend["b"] == pytest.approx((1.60 + 0.15) * 1.5)
    assert accrual.owner_spend[UNCLAIMED] == pytest.approx((3.20 + 0.30) * 1.5)
    assert sum(accrual.owner_spend.values()) == pytest.approx(accrual.spend_total, rel=1e-12)


def test_without_gpus_the_idle_owners_carry_the_node() -> None:
    cost = CostConfig(node_extra_per_hour=2.0, overhead_ratio=0.0)
    accrual = CostAccrual(cost, GpuFleet([], {}, []))
    accrual.advance(3600, {}, ["a", "b"])
    assert accrual.owner_spend == pytest.approx({"a": 1.0, "b": 1.0})


def test_owned_gpus_bill_amortization_plus_metered_energy() -> None:
    cost = CostConfig(
        gpus=(GpuGroup("H100", 1),),
        owned=OwnedHardware({"H100": 26_280.0}, 36, energy_price_per_kwh=0.10, pue=1.5),
        overhead_ratio=0.0,
    )
    inventory = build_inventory(
        [(0, "GPU-1", "NVIDIA H100 80GB HBM3")], [("H100", 1)], cost.gpu_hourly_by_key, True
    )
    fleet = GpuFleet(inventory, cost.gpu_hourly_by_key, [("H100", 1)])
    owners = {"GPU-1": ("m",)}
    accrual = CostAccrual(cost, fleet)
    fleet.observe([GpuReading(0, "GPU-1", "NVIDIA H100 80GB HBM3", energy_joules=1e6)], 0.0)
    accrual.advance(0, owners, [])
    fleet.observe(
        [GpuReading(0, "GPU-1", "x", energy_joules=1e6 + 3.6e6, power_watts=1000.0)], 3600.0
    )
    accrual.advance(3600, owners, [])
    assert "energy" in accrual.components
    assert accrual.spend["gpu"] == pytest.approx(1.00)  # 26,280 over 36 x 730 h
    assert accrual.spend["energy"] == pytest.approx(1.0 * 0.10 * 1.5)  # 1 kWh
    assert accrual.hourly["energy"] == pytest.approx(1.0 * 0.10 * 1.5)  # 1 kW now
    fleet.observe([GpuReading(0, "GPU-1", "x", energy_joules=2e5)], 3700.0)  # driver reload
    accrual.advance(100, owners, [])
    # a driver reload zeroes NVML's counter: what it counted since then is billed, never less
    assert accrual.spend["energy"] == pytest.approx(0.15 + 2e5 / 3.6e6 * 0.10 * 1.5)
