"""Turning an engine's raw counters into increases that survive restarts.

An engine restart zeroes its counters. Prometheus copes with that for its own
series, but we sum several engines into one per-model counter, so we must
take increases ourselves: a counter that went down (or whose `_created` time
changed) restarted, and its new value is the whole increase since then.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass
class EngineCounters:
    """Raw counters of one engine process, with its restart detection."""

    started_at: float | None = None
    counters: dict[str, RawCounter] = field(default_factory=dict)

    def increases(
        self, values: dict[str, float], started_at: float | None, count_from_zero: bool = False
    ) -> tuple[dict[str, float], bool]:
        """Return per-counter increases and whether the engine restarted.

        `count_from_zero` makes a first observation count in full: used when
        the engine is known to have started after we began watching it.
        """
        first_seen = not self.counters
        restarted = (
            not first_seen
            and started_at is not None
            and self.started_at is not None
            and started_at != self.started_at
        )
        if not first_seen and not restarted:
            restarted = any(
                name in self.counters
                and self.counters[name].last is not None
                and value < self.counters[name].last
                for name, value in values.items()
            )
        self.started_at = started_at
        result: dict[str, float] = {}
        for name, value in values.items():
            counter = self.counters.setdefault(name, RawCounter())
            if first_seen and count_from_zero:
                counter.last = 0.0
            result[name] = counter.increase(value, restarted)
        return result, restarted


def split_prompt_tokens(
    prompt_total: float, cached_total: float, previous_uncached: float, previous_cached: float
) -> tuple[float, float]:
    """Split accumulated prompt tokens into (uncached, cached), both monotonic.

    Engines count cache hits and prompt tokens at slightly different moments,
    so the cached count may briefly run ahead; neither exported kind may ever
    go down, so each is held at its previous value until the other catches up.
    """
    cached = max(previous_cached, min(cached_total, prompt_total))
    uncached = max(previous_uncached, prompt_total - cached)
    return uncached, cached
