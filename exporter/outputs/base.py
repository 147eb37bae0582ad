"""The output seam: where each cycle's metric families go.

The collection loop computes the families once per cycle from the node state
and hands the same list to every configured output. An output must not block:
it renders or queues, and does its own I/O elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prometheus_client.core import Metric


class Output(Protocol):
    """Receives every cycle's metric families."""

    def publish(self, families: Sequence[Metric]) -> None: ...
