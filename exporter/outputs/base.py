"""The output seam: where each cycle's metric families go.

The collection loop computes the families once per cycle from the node state
and hands the same list to every configured output. An output must not block:
it renders or queues, and does its own I/O elsewhere. An output may report on
itself (the OTLP output counts its exports): its families join the cycle's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from prometheus_client.core import Metric


class Output(Protocol):
    """Receives every cycle's metric families."""

    def publish(self, families: Sequence[Metric]) -> None: ...

    def own_families(self) -> Iterable[Metric]:
        """Families about the output itself, read when the cycle's families are computed."""
        ...

    def close(self) -> None:
        """Deliver what is pending, within the output's own bounds; called once at shutdown
        after the last publish."""
        ...
