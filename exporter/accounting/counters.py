"""One raw counter read from a source that may restart (an engine, a GPU driver).

A counter only steps back for a reason. A source that restarts begins again
from zero, so its counters fall far below what they were; a value slightly
below the last one is jitter (a replica answering late, a rounding), not a
restart. Without a restart marker, a fall below RESTART_DROP_RATIO of the
highest value seen is a restart and the new value is the whole increase since
then; a smaller dip is ignored and the highest value is kept, so 1000 → 990 →
1000 adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

RESTART_DROP_RATIO = 0.5
"""A counter that falls below this share of its highest value restarted."""


def is_restart_drop(value: float, high: float) -> bool:
    """True if `value` fell so far below `high` that only a restart explains it."""
    return value < RESTART_DROP_RATIO * high


@dataclass
class RawCounter:
    """The highest value seen of one raw counter (None before the first reading)."""

    last: float | None = None

    def increase(self, value: float) -> float:
        """Increase since the previous observation; the first one is a baseline."""
        previous = self.last
        if previous is not None and value < previous and not is_restart_drop(value, previous):
            return 0.0
        self.last = value
        if previous is None:
            return 0.0
        return value if value < previous else value - previous
