"""The live history behind the landing page's charts and its "since when".

The exporter keeps one point of running totals per cycle (accounting.history).
The page samples it at evenly spaced ages through `History.delta` alone, so a
chart costs a fixed number of look-ups however long the history is. Each
sample carries the figures of the page's window ending there, computed as the
headline's are (window_figures), so the newest sample is the headline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llm_cost_exporter.accounting.history import History
from llm_cost_exporter.accounting.windows import WindowFigures, window_figures

SAMPLES = 120
"""Points per chart: enough for a smooth line, few enough for a small page."""


@dataclass(frozen=True)
class Sample:
    """The history at one cycle, `age` seconds before the newest."""

    age: float
    figures: WindowFigures | None
    """Over the window ending at this cycle; None at the oldest cycle kept."""
    spend: float
    """Spent since the oldest cycle kept."""


def sample_history(
    history: History,
    window_seconds: float,
    capacity: float | None,
    fallback_api_cost_per_million: float | None,
    count: int = SAMPLES,
) -> list[Sample]:
    """Up to `count` cycles, oldest first, evenly spaced over the whole history kept."""
    whole = history.delta(math.inf)
    if whole is None or whole.time <= 0 or count < 2:
        return []
    samples: list[Sample] = []
    seen: float | None = None
    for index in range(count):
        to_newest = history.delta(whole.time * (1 - index / (count - 1)))
        back = history.delta(whole.time * (1 - index / (count - 1)) + window_seconds)
        if to_newest is None or back is None or to_newest.time == seen:
            continue
        seen = to_newest.time
        figures = window_figures(back.minus(to_newest), capacity, fallback_api_cost_per_million)
        samples.append(Sample(to_newest.time, figures, whole.spend - to_newest.spend))
    return samples


def beating(figures: WindowFigures | None) -> bool | None:
    """Self-hosting was cheaper than the API over the window; None when unknown."""
    ratio = figures.cost_ratio if figures is not None else None
    if ratio is None or math.isnan(ratio):
        return None
    return ratio <= 1


@dataclass(frozen=True)
class Since:
    """How long the verdict of now has held."""

    age: float
    """Seconds before the newest cycle that the verdict first held."""
    whole_history: bool
    """It held at every cycle with figures: it may be older than the history kept."""


def verdict_since(samples: list[Sample], now: bool) -> Since | None:
    """Since when the samples, newest back, agree with the verdict `now`."""
    judged = [s for s in samples if beating(s.figures) is not None]
    if not judged:
        return None
    run = None
    for sample in reversed(judged):
        if beating(sample.figures) != now:
            break
        run = sample
    if run is None:
        return Since(0.0, False)
    return Since(run.age, run is judged[0])
