"""Cumulative totals over time, so windowed figures come from counter deltas.

Every collection cycle appends one point of running totals. A window's figure
is then the difference between the newest point and the one a window-length
earlier: the same thing `increase()` does in Prometheus, never an average of
instantaneous gauges.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class Totals:
    """Running totals at one instant (time in seconds, monotonic clock)."""

    time: float
    spend: float
    tokens: float
    api_equivalent: float
    unpriced_tokens: float
    """Tokens of models without an API price: their API cost is unknown."""
    energy_spend: float = 0.0

    def minus(self, earlier: Totals) -> Totals:
        return Totals(
            time=self.time - earlier.time,
            spend=self.spend - earlier.spend,
            tokens=self.tokens - earlier.tokens,
            api_equivalent=self.api_equivalent - earlier.api_equivalent,
            unpriced_tokens=self.unpriced_tokens - earlier.unpriced_tokens,
            energy_spend=self.energy_spend - earlier.energy_spend,
        )


class History:
    """Points of running totals, kept for the longest window we report."""

    def __init__(self, retention_seconds: float) -> None:
        self._retention = retention_seconds
        self._times: list[float] = []
        self._points: list[Totals] = []

    def append(self, point: Totals) -> None:
        self._times.append(point.time)
        self._points.append(point)
        # Keep one point older than the retention so the longest window stays full.
        cut = bisect.bisect_left(self._times, point.time - self._retention) - 1
        if cut > 64:
            del self._times[:cut]
            del self._points[:cut]

    def latest(self) -> Totals | None:
        return self._points[-1] if self._points else None

    def delta(self, window_seconds: float) -> Totals | None:
        """Change over the last `window_seconds`, or over all history if shorter.

        The returned `time` field is the span actually covered.
        """
        if len(self._points) < 2:
            return None
        newest = self._points[-1]
        index = bisect.bisect_right(self._times, newest.time - window_seconds) - 1
        return newest.minus(self._points[max(index, 0)])
