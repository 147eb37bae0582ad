"""End to end: a disaggregated vLLM pair watched by two real exporter daemons.

The simulator serves a prefill engine and a decode engine under the same traffic;
each "node" runs its own exporter reading its own engine. Both pages count the
pair's prompt tokens (computed on one, transferred in on the other), yet summed
across the two `/metrics` the prompt tokens are the pair's, once: the decode node
shows them as KV-transferred instead. Requests and preemptions are each node's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import minimal_config_dict
from realparts.exporter_process import ExporterProcess
from realparts.samples import Samples, eventually, total, value
from realparts.simulator_process import SimulatorProcess

pytestmark = pytest.mark.realparts

ROLES = ("prefill", "decode")


def _exporter(simulator: SimulatorProcess, index: int, workdir: Path) -> ExporterProcess:
    workdir.mkdir()
    config = minimal_config_dict(
        engines=[{"url": simulator.engine_url(index)}],
        collection={"interval": "100ms", "timeout": "80ms"},
    )
    return ExporterProcess(config, workdir)


def _figures(samples: Samples) -> dict[str, float | None]:
    return {
        "prompt": value(samples, "llmcost_tokens_total", model="m", kind="prompt"),
        "cached_prompt": value(samples, "llmcost_tokens_total", model="m", kind="cached_prompt"),
        "generation": value(samples, "llmcost_tokens_total", model="m", kind="generation"),
        "transferred": value(samples, "llmcost_kv_transferred_prompt_tokens_total", model="m"),
        "requests": value(samples, "llmcost_requests_total", model="m"),
        "preemptions": value(samples, "llmcost_preemptions_total", model="m"),
    }


def test_two_nodes_count_the_pairs_prompt_tokens_once(tmp_path: Path) -> None:
    # Idle until both exporters have read their engine once: counting starts from zero.
    simulator = SimulatorProcess(
        tmp_path,
        "--engines", "2",
        "--role", ",".join(ROLES),
        "--model", "m",
        "--profile", "idle",
        "--acceleration", "20",
    )  # fmt: skip
    with simulator:
        prefill_node = _exporter(simulator, 0, tmp_path / "prefill-node")
        decode_node = _exporter(simulator, 1, tmp_path / "decode-node")
        with prefill_node, decode_node:
            # 1.5x capacity: served at capacity, the rest waits and preempts.
            simulator.control(profile="steady", level=1.5)
            eventually(
                lambda: simulator.ground_truth()["engines"][1]["preemptions"] >= 20,
                what="the pair served under overload",
            )
            simulator.control(profile="idle")
            truth = {e["role"]: e for e in simulator.ground_truth()["engines"]}
            expected = {
                "prefill": {
                    "prompt": truth["prefill"]["tokens"]["prompt"],
                    "cached_prompt": 0,
                    # Its first tokens, generated again on the decode node, stay counted.
                    "generation": truth["prefill"]["repeated_generation_tokens"],
                    # No KV cache arrives here: the series starts with a first transfer.
                    "transferred": None,
                    "requests": truth["prefill"]["requests"],
                    "preemptions": truth["prefill"]["preemptions"],
                },
                "decode": {
                    "prompt": 0,
                    "cached_prompt": 0,
                    "generation": truth["decode"]["tokens"]["generation"],
                    "transferred": truth["decode"]["transferred_prompt_tokens"],
                    "requests": truth["decode"]["requests"],
                    "preemptions": truth["decode"]["preemptions"],
                },
            }
            nodes = {"prefill": prefill_node, "decode": decode_node}
            samples: dict[str, Samples] = {}

            def caught_up() -> bool:
                samples.update({role: node.samples() for role, node in nodes.items()})
                return all(_figures(samples[role]) == expected[role] for role in ROLES)

            try:
                eventually(caught_up, what="both exporters counted what the pair served")
            except AssertionError:
                shown = {role: _figures(samples[role]) for role in ROLES}
                raise AssertionError(f"counted {shown}, expected {expected}") from None

    once = sum(e["tokens"]["prompt"] + e["tokens"]["cached_prompt"] for e in truth.values())
    counted = sum(
        total(samples[role], "llmcost_tokens_total", kind=kind)
        for role in ROLES
        for kind in ("prompt", "cached_prompt")
    )
    print(f"pair prompt tokens: once {once}, counted {counted}")
    assert counted == once > 0
    # The decode engine received what the prefill engine computed, up to the moment
    # between the two engines' switches to idle.
    assert truth["decode"]["transferred_prompt_tokens"] == pytest.approx(once, rel=0.01)
    assert truth["decode"]["preemptions"] >= 20
