"""Capacity learned from sustained peak throughput, kept across restarts.

Without a configured capacity we take the highest throughput the node (and
each model on a shared node) has sustained over a whole `learn_window`: short
bursts do not count. The peaks are kept in the state file with the counters,
so a restart does not forget them.
"""

from __future__ import annotations

from typing import Any

from llm_cost_exporter.accounting import persisted
from llm_cost_exporter.accounting.history import History

LEGACY_KEY = "learned_capacity_tokens_per_second"
"""The one key of the capacity-only state file written by earlier versions."""


def sustained_throughput(history: History, window_seconds: float) -> float | None:
    """Tokens/s over the last full window, or None until a full window is covered."""
    delta = history.delta(window_seconds)
    if delta is None or delta.time < window_seconds * 0.999:
        return None
    return delta.tokens / delta.time


class LearnedCapacity:
    """The running sustained peaks of the node and of each model; kept in the state file."""

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self.peak: float | None = None
        self.model_peaks: dict[str, float] = {}

    def observe(self, history: History) -> None:
        throughput = sustained_throughput(history, self.window_seconds)
        if throughput is not None and throughput > (self.peak or 0.0):
            self.peak = throughput

    def observe_model(self, model: str, history: History) -> None:
        throughput = sustained_throughput(history, self.window_seconds)
        if throughput is not None and throughput > self.model_peaks.get(model, 0.0):
            self.model_peaks[model] = throughput

    def to_state(self) -> dict[str, Any]:
        """The same shape as the capacity-only state file of earlier versions."""
        return {LEGACY_KEY: self.peak, "models": dict(self.model_peaks)}

    def restore(self, data: Any) -> None:
        """Resume from `to_state`'s output (or an old capacity-only state file)."""
        data = persisted.mapping(data)
        node = persisted.optional_amount(data.get(LEGACY_KEY), LEGACY_KEY)
        models = persisted.amounts(data.get("models", {}), "models")
        self.peak = node or None
        self.model_peaks = {model: peak for model, peak in models.items() if peak > 0}
