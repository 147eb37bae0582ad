"""Capacity learned from sustained peak throughput, kept across restarts.

Without a configured capacity we take the highest throughput the node (and
each model on a shared node) has sustained over a whole `learn_window`: short
bursts do not count. The peaks are written to a small JSON state file so a
restart does not forget them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from llm_cost_exporter.accounting.history import History

log = logging.getLogger(__name__)


def sustained_throughput(history: History, window_seconds: float) -> float | None:
    """Tokens/s over the last full window, or None until a full window is covered."""
    delta = history.delta(window_seconds)
    if delta is None or delta.time < window_seconds * 0.999:
        return None
    return delta.tokens / delta.time


def _positive(value: Any) -> float | None:
    number = float(value)
    return number if number > 0 else None


class LearnedCapacity:
    """The running sustained peaks of the node and of each model, persisted when they rise."""

    def __init__(self, window_seconds: float, state_file: str | None) -> None:
        self.window_seconds = window_seconds
        self._path = Path(state_file) if state_file else None
        self.peak: float | None = None
        self.model_peaks: dict[str, float] = {}
        self._load()

    def _load(self) -> None:
        if self._path is None or not self._path.exists():
            return
        try:
            data = json.loads(self._path.read_text())
            node = data["learned_capacity_tokens_per_second"]
            self.peak = _positive(node) if node else None
            models = data.get("models", {})
            self.model_peaks = {
                str(m): peak for m, v in models.items() if (peak := _positive(v)) is not None
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("state file %s unreadable, learning capacity afresh: %s", self._path, error)
            self.peak, self.model_peaks = None, {}

    def observe(self, history: History) -> None:
        throughput = sustained_throughput(history, self.window_seconds)
        if throughput is None or throughput <= (self.peak or 0.0):
            return
        self.peak = throughput
        self._save()

    def observe_model(self, model: str, history: History) -> None:
        throughput = sustained_throughput(history, self.window_seconds)
        if throughput is None or throughput <= self.model_peaks.get(model, 0.0):
            return
        self.model_peaks[model] = throughput
        self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".llmcost-state-")
            with os.fdopen(fd, "w") as handle:
                json.dump(
                    {"learned_capacity_tokens_per_second": self.peak, "models": self.model_peaks},
                    handle,
                )
            os.replace(tmp, self._path)
        except OSError as error:
            log.warning("cannot write state file %s: %s", self._path, error)
