"""End to end on real parts: simulator → exporter → a real Prometheus server.

After a known load, what Prometheus computes from our series must agree with
what the simulator really served (its ground truth), within 1%.
"""

from __future__ import annotations

import time

import pytest
from conftest import minimal_config_dict
from realparts import PrometheusServer
from realparts.exporter_process import ExporterProcess
from realparts.simulator_process import SimulatorProcess

pytestmark = pytest.mark.realparts

CAPACITY = 2000.0
LEVEL = 0.5
HOURLY = 3.20
WINDOW = 30
"""Seconds: the exporter's window and the PromQL rates'. A reading lags the engine by
up to one 100 ms collection, under 0.35% of the window."""
RESTART_EVERY = 25
"""Simulated seconds: each engine restarts once inside the window Prometheus reads."""


def total_tokens(truth: dict) -> float:
    return sum(engine["tokens"]["total"] for engine in truth["engines"])


def test_prometheus_agrees_with_ground_truth(tmp_path) -> None:
    simulator = SimulatorProcess(
        tmp_path,
        "--engines", "2",
        "--model", "model-a,model-b",
        "--profile", "steady",
        "--level", str(LEVEL),
        "--capacity", str(CAPACITY),
        "--restart-every", str(RESTART_EVERY),
    )  # fmt: skip
    window = f"{WINDOW}s"
    with simulator:
        config = minimal_config_dict(
            engines=[{"url": simulator.engine_url(i)} for i in (0, 1)],
            collection={"interval": "100ms", "timeout": "80ms"},
            capacity={"tokens_per_second": 2 * CAPACITY},
            windows=[window],
        )
        with (
            ExporterProcess(config, tmp_path) as exporter,
            PrometheusServer([f"127.0.0.1:{exporter.port}"], scrape_interval="1s") as prometheus,
        ):
            prometheus.wait_until_scraped()
            first_truth, first_at = simulator.ground_truth(), time.time()
            time.sleep(WINDOW + 2)  # the window holds scrapes only, a second past the first
            last_truth, last_at = simulator.ground_truth(), time.time()
            rate = prometheus.query_scalar(f"sum(rate(llmcost_tokens_total[{window}]))")
            cost_per_million = prometheus.query_scalar(
                f'llmcost_effective_cost_per_million_tokens{{window="{window}"}}'
            )
            promql_cost_per_million = prometheus.query_scalar(
                f"sum(rate(llmcost_cost_total[{window}])) "
                f"/ sum(rate(llmcost_tokens_total[{window}])) * 1e6"
            )
            resets = prometheus.query("resets(llmcost_tokens_total[2m]) > 0")
            restarts = prometheus.query_scalar("sum(llmcost_engine_restarts_total)")
            utilization = prometheus.query_scalar(
                f'llmcost_throughput_utilization_ratio{{window="{window}"}}'
            )
            per_model = prometheus.query(f"sum by (model) (rate(llmcost_tokens_total[{window}]))")

    print(f"rate={rate} cost_per_million={cost_per_million} promql={promql_cost_per_million}")
    true_rate = (total_tokens(last_truth) - total_tokens(first_truth)) / (last_at - first_at)
    print(f"true_rate={true_rate} restarts={restarts} utilization={utilization}")
    print(f"per_model={[(r['metric']['model'], r['value'][1]) for r in per_model]}")
    assert true_rate == pytest.approx(2 * CAPACITY * LEVEL, rel=0.01)
    assert rate == pytest.approx(true_rate, rel=0.01)
    true_cost_per_million = HOURLY / 3600 / true_rate * 1e6
    assert cost_per_million == pytest.approx(true_cost_per_million, rel=0.01)
    assert promql_cost_per_million == pytest.approx(true_cost_per_million, rel=0.01)
    assert utilization == pytest.approx(LEVEL, rel=0.01)
    # Engines restarted (every RESTART_EVERY simulated seconds), yet no series ever went down.
    assert restarts is not None and restarts >= 2
    assert resets == []
    assert {r["metric"]["model"] for r in per_model} == {"model-a", "model-b"}
    for result in per_model:
        assert float(result["value"][1]) == pytest.approx(CAPACITY * LEVEL, rel=0.02)
