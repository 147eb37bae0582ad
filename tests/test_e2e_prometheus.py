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
        "--restart-every", "45",
    )  # fmt: skip
    with simulator:
        config = minimal_config_dict(
            engines=[{"url": simulator.engine_url(i)} for i in (0, 1)],
            collection={"interval": "250ms", "timeout": "200ms"},
            capacity={"tokens_per_second": 2 * CAPACITY},
            windows=["1m"],
        )
        with (
            ExporterProcess(config, tmp_path) as exporter,
            PrometheusServer([f"127.0.0.1:{exporter.port}"], scrape_interval="1s") as prometheus,
        ):
            prometheus.wait_until_scraped(timeout=20)
            time.sleep(5)
            first_truth, first_at = simulator.ground_truth(), time.time()
            time.sleep(65)
            last_truth, last_at = simulator.ground_truth(), time.time()
            rate = prometheus.query_scalar("sum(rate(llmcost_tokens_total[1m]))")
            cost_per_million = prometheus.query_scalar(
                'llmcost_effective_cost_per_million_tokens{window="1m"}'
            )
            promql_cost_per_million = prometheus.query_scalar(
                "sum(rate(llmcost_cost_total[1m])) / sum(rate(llmcost_tokens_total[1m])) * 1e6"
            )
            resets = prometheus.query("resets(llmcost_tokens_total[2m]) > 0")
            restarts = prometheus.query_scalar("sum(llmcost_engine_restarts_total)")
            utilization = prometheus.query_scalar(
                'llmcost_throughput_utilization_ratio{window="1m"}'
            )
            per_model = prometheus.query("sum by (model) (rate(llmcost_tokens_total[1m]))")

    print(f"rate={rate} cost_per_million={cost_per_million} promql={promql_cost_per_million}")
    true_rate = (total_tokens(last_truth) - total_tokens(first_truth)) / (last_at - first_at)
    print(f"true_rate={true_rate} restarts={restarts} utilization={utilization}")
    assert true_rate == pytest.approx(2 * CAPACITY * LEVEL, rel=0.01)
    assert rate == pytest.approx(true_rate, rel=0.01)
    true_cost_per_million = HOURLY / 3600 / true_rate * 1e6
    assert cost_per_million == pytest.approx(true_cost_per_million, rel=0.01)
    assert promql_cost_per_million == pytest.approx(true_cost_per_million, rel=0.01)
    assert utilization == pytest.approx(LEVEL, rel=0.01)
    # Engines restarted (every 45 simulated seconds), yet no series ever went down.
    assert restarts is not None and restarts >= 2
    assert resets == []
    assert {r["metric"]["model"] for r in per_model} == {"model-a", "model-b"}
    for result in per_model:
        assert float(result["value"][1]) == pytest.approx(CAPACITY * LEVEL, rel=0.02)
