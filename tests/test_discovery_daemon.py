"""The daemon with engine discovery and no configured engine: pods added on its node
become targets whose tokens are counted in full against the simulator's ground truth,
pods deleted stop being read; and a discovery without a node name stops the start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import minimal_config_dict
from realparts.exporter_process import ExporterProcess
from realparts.fake_kubernetes import FakeKubernetes, pod_object, scraped_pod
from realparts.samples import eventually, total, value
from realparts.simulator_process import SimulatorProcess
from realparts.timeouts import scaled

from llm_cost_exporter.accounting.tokens import TokenLedger
from llm_cost_exporter.collectors.readings import EngineReading
from llm_cost_exporter.config import ConfigError, config_from_mapping

NODE = "gpu-node-1"


def discovery_config(api: FakeKubernetes, **discovery: Any) -> dict[str, Any]:
    return minimal_config_dict(
        nvml={"enabled": False},
        collection={"interval": "500ms", "timeout": "400ms"},
        kubernetes={"discovery": api.discovery_settings(**discovery)},
    )


def engine_pod(name: str, simulator: SimulatorProcess, index: int) -> dict[str, Any]:
    return scraped_pod(name, simulator.port, f"/engine/{index}/metrics", node=NODE)


def test_discovered_pods_are_read_and_counted_to_the_token(tmp_path: Path) -> None:
    with FakeKubernetes(tmp_path) as api:
        api.add_pod(pod_object("other-node", node="gpu-node-2", annotations={}))
        config = discovery_config(api, node_name=NODE)
        with ExporterProcess(config, tmp_path) as exporter:
            # Engines that start after the exporter: every token they serve is new.
            with SimulatorProcess(tmp_path, "--engines", "2", "--profile", "steady") as sim:
                url = [sim.engine_url(i) for i in range(2)]
                api.add_pod(engine_pod("vllm-a", sim, 0))
                api.add_pod(engine_pod("vllm-b", sim, 1))
                eventually(
                    lambda: all(
                        value(exporter.samples(), "llmcost_collector_up", target=u) == 1
                        for u in url
                    ),
                    what="both pods are read",
                )
                samples = exporter.samples()
                info = value(samples, "llmcost_engine_info", target=url[0])
                assert info == 1 and value(samples, "llmcost_engine_info", pod="vllm-b") == 1
                assert value(samples, "llmcost_collector_up", collector="kubernetes") == 1

                sim.control(profile="idle")

                def all_counted() -> float:
                    served = sim.page_tokens(0, 1)
                    counted = total(exporter.samples(), "llmcost_tokens_total")
                    return served if served > 0 and counted == served else 0.0

                served = eventually(all_counted, what="every token the pods served counted")

                api.delete_pod("inference", "vllm-b")
                eventually(
                    lambda: (
                        value(exporter.samples(), "llmcost_collector_up", target=url[1]) is None
                    ),
                    what="the deleted pod's series go",
                )
                samples = exporter.samples()
                assert value(samples, "llmcost_engine_info", pod="vllm-b") is None
                assert value(samples, "llmcost_collector_up", target=url[0]) == 1
                assert total(samples, "llmcost_tokens_total") == served, "counters stay"
            log = exporter.log()
    assert "Traceback" not in log
    assert "vllm-a" in log and "no longer read" in log


def test_discovery_without_a_node_name_stops_the_start_in_one_line(tmp_path: Path) -> None:
    with FakeKubernetes(tmp_path) as api:
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(discovery_config(api)))
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    done = subprocess.run(
        [sys.executable, "-m", "llm_cost_exporter", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=scaled(60),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "kubernetes.discovery.node_name" in lines[0], done.stderr


def reading(prompt: float, created: float | None) -> EngineReading:
    return EngineReading(
        model="m",
        engine="0",
        prompt_tokens=prompt,
        cached_prompt_tokens=0.0,
        generation_tokens=0.0,
        running=None,
        waiting=None,
        kv_usage_ratio=None,
        kv_capacity_tokens=None,
        kv_tokens=None,
        started_at=created,
    )


@pytest.mark.parametrize(
    ("created", "hint", "counted"),
    [
        (150.0, None, 0.0),  # the same process as before it was forgotten: baselined again
        (250.0, None, 40.0),  # started after it was forgotten: every token is new
        (None, 250.0, 40.0),  # no _created on the page: the pod's container start decides
        (None, None, 0.0),
    ],
)
def test_a_target_that_comes_back_counts_only_what_is_new(
    created: float | None, hint: float | None, counted: float
) -> None:
    ledger = TokenLedger({}, None, started_wall=100.0)
    ledger.add("http://10.0.0.5:8000/metrics", reading(10.0, 150.0), now=160.0)
    ledger.forget_target("http://10.0.0.5:8000/metrics", now=200.0)
    assert ledger.targets() == set()
    before = ledger.tokens_total
    ledger.add("http://10.0.0.5:8000/metrics", reading(40.0, created), now=300.0, started_hint=hint)
    assert ledger.tokens_total - before == counted


def test_with_discovery_no_engine_is_assumed_and_check_config_says_where_they_come_from(
    tmp_path: Path,
) -> None:
    discovery = {"kubernetes": {"discovery": {"enabled": True, "node_name": NODE}}}
    assert config_from_mapping(minimal_config_dict(**discovery)).engines == ()
    assert config_from_mapping(minimal_config_dict(**discovery, engines=[])).engines == ()
    with pytest.raises(ConfigError, match=r"^engines: must be a non-empty list"):
        config_from_mapping(minimal_config_dict(engines=[]))
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(minimal_config_dict(nvml={"enabled": False}, **discovery)))
    done = subprocess.run(
        [sys.executable, "-m", "llm_cost_exporter", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert done.returncode == 0, done.stderr
    assert f"# Engines: discovered from the pods on node {NODE}" in done.stdout
