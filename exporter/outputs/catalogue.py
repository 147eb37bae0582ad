"""Everything one cycle exports, computed once and handed to every output."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.core import Metric

from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.outputs.base import Output
from llm_cost_exporter.outputs.node_families import node_families
from llm_cost_exporter.outputs.process_families import process_families


def cycle_families(state: NodeState, outputs: Sequence[Output]) -> list[Metric]:
    """The node's families, then those the outputs report about themselves, then the
    process's: the page order of `/metrics`."""
    return [
        *node_families(state),
        *(family for output in outputs for family in output.own_families()),
        *process_families(),
    ]
