"""One raw counter read from a source that may restart (an engine, a GPU driver).

A value lower than the last one, or a known restart, means the source began
again from zero: its new value is the whole increase since then.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RawCounter:
    """The last raw value seen of one engine counter."""

    last: float | None = None

    def increase(self, value: float, restarted: bool) -> float:
        """Increase since the previous observation; the first one is a baseline."""
        previous, self.last = self.last, value
        if previous is None:
            return 0.0
        if restarted or value < previous:
            return value
        return value - previous
