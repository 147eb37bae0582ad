"""End to end on a node running every engine: simulator → exporter → a real Prometheus.

One simulated engine of each type serves its own model on its own GPU, each at its
own steady load, in its engine's page format (names, types, labels, and the timing
of its counters: SGLang's per-step counters, TGI's and Triton's token histograms
that move when a request ends). What Prometheus computes from the exporter's
series must agree with what each engine really served (the simulator's ground
truth) within 1%: the token rate and the cost per 1M tokens, per engine.
"""

from __future__ import annotations

import time

import pytest
from conftest import minimal_config_dict
from realparts import PrometheusServer
from realparts.exporter_process import ExporterProcess
from realparts.samples import Samples, eventually, total
from realparts.simulator_process import SimulatorProcess

from llm_cost_exporter.collectors.registry import ENGINE_TYPES

pytestmark = pytest.mark.realparts

ENGINES = (
    # (engines[].type, simulator page format, share of capacity demanded, configured model)
    ("vllm", "v1", 0.5, None),
    ("sglang", "sglang", 0.3, None),
    ("llamacpp", "llamacpp", 0.7, None),  # its model from the engine's /v1/models
    ("tgi", "tgi", 0.4, None),  # its model from the engine's /info
    ("lmdeploy", "lmdeploy", 0.6, None),
    ("triton", "triton", 0.8, "triton-model"),  # Triton names its own models, not ours
)
CAPACITY = 2000.0
HOURLY = 3.20
"""Each engine's GPU, an A100: overhead 0, so each model's spend is $3.20/h."""
WINDOW = 30
ACCELERATION = 10.0
"""Traffic shapes run 10× faster while tokens/s stay real: a request's tokens reach
the end-of-request counters 3.3 s after they were served, not 33 s."""


def model_of(engine_type: str) -> str:
    return f"{engine_type}-model"


def every_model_generated(samples: Samples) -> bool:
    """Whether the exporter has counted generated tokens of every engine's model: the
    engines that count them when a request ends have ended one."""
    return all(
        total(
            samples,
            "llmcost_tokens_total",
            model=model or model_of(engine_type),
            kind="generation",
        )
        > 0
        for engine_type, _, _, model in ENGINES
    )


def test_the_node_runs_every_engine_type() -> None:
    assert {engine_type for engine_type, *_ in ENGINES} == ENGINE_TYPES


def test_each_engine_on_a_mixed_node_agrees_with_its_ground_truth(tmp_path) -> None:
    simulator = SimulatorProcess(
        tmp_path,
        "--engines", str(len(ENGINES)),
        "--model", ",".join(model_of(t) for t, *_ in ENGINES),
        "--page-format", ",".join(f for _, f, *_ in ENGINES),
        "--profile", "steady",
        "--capacity", str(CAPACITY),
        "--acceleration", str(ACCELERATION),
        "--tokens-in-wall-time",
    )  # fmt: skip
    window = f"{WINDOW}s"
    with simulator:
        for index, (_, _, level, _) in enumerate(ENGINES):
            simulator.control(profile="steady", level=level, engines=[index])
        engines = []
        for index, (engine_type, _, _, model) in enumerate(ENGINES):
            engine = {"url": simulator.engine_url(index), "type": engine_type, "gpus": [index]}
            if model is not None:
                engine["model"] = model
            engines.append(engine)
        config = minimal_config_dict(
            engines=engines,
            cost={
                "gpus": [{"model": "A100-80GB", "count": len(ENGINES)}],
                "gpu_prices_per_hour": {"A100-80GB": HOURLY},
                "overhead_ratio": 0.0,
            },
            collection={"interval": "250ms", "timeout": "200ms"},
            nvml={"enabled": False},
            windows=[window],
            metrics={"model_gauges": True},
        )
        with (
            ExporterProcess(config, tmp_path) as exporter,
            PrometheusServer([f"127.0.0.1:{exporter.port}"], scrape_interval="1s") as prometheus,
        ):
            prometheus.wait_until_scraped()
            # Past the first request's length, every end-of-request counter moves.
            eventually(
                lambda: every_model_generated(exporter.samples()),
                what="generated tokens counted for every engine's model",
            )
            first_truth, first_at = simulator.ground_truth(), time.time()
            time.sleep(WINDOW + 2)
            last_truth, last_at = simulator.ground_truth(), time.time()
            up = prometheus.query("llmcost_collector_up")
            rates = prometheus.query(f"sum by (model) (rate(llmcost_tokens_total[{window}]))")
            per_million = prometheus.query(
                f'llmcost_model_effective_cost_per_million_tokens{{window="{window}"}}'
            )
            cached = prometheus.query('llmcost_tokens_total{kind="cached_prompt"} > 0')

    assert {r["metric"]["collector"]: r["value"][1] for r in up} == dict.fromkeys(ENGINE_TYPES, "1")
    rate_of = {r["metric"]["model"]: float(r["value"][1]) for r in rates}
    per_million_of = {r["metric"]["model"]: float(r["value"][1]) for r in per_million}
    for index, (engine_type, _, level, model) in enumerate(ENGINES):
        name = model or model_of(engine_type)
        served = (
            last_truth["engines"][index]["tokens"]["total"]
            - first_truth["engines"][index]["tokens"]["total"]
        )
        true_rate = served / (last_at - first_at)
        print(f"{engine_type}: true {true_rate:.1f} tok/s, exported {rate_of.get(name)}")
        assert true_rate == pytest.approx(CAPACITY * level, rel=0.01), engine_type
        assert rate_of[name] == pytest.approx(true_rate, rel=0.01), engine_type
        true_per_million = HOURLY / 3600 / true_rate * 1e6
        assert per_million_of[name] == pytest.approx(true_per_million, rel=0.01), engine_type
    # Engines that count prefix-cache hits have them priced apart; TGI has no such count.
    with_cache = {r["metric"]["model"] for r in cached}
    assert model_of("vllm") in with_cache and model_of("sglang") in with_cache
    assert model_of("tgi") not in with_cache
