"""Weekly schedules an operator can configure: replicas by hour of the week. Pure.

Two kinds: a scaling schedule that always serves all traffic, with a minimum
run per scale step (a cron-driven autoscaler should not flap for one busy
hour), and the simplest hybrid schedule, one replica count in a weekday
window and another at all other times, the way "route nights and weekends to
the API" is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llm_cost_exporter.tools.report.model import HOURS_PER_WEEK


@dataclass
class _Run:
    start: int  # first slot, on the circular week
    length: int
    level: int


def _runs(levels: Sequence[int]) -> list[_Run]:
    """Maximal runs of equal levels on the circular week; the wrap joins Sunday to Monday."""
    n = len(levels)
    if len(set(levels)) <= 1:
        return [_Run(0, n, levels[0] if n else 0)]
    origin = next(i for i in range(n) if levels[i] != levels[i - 1])
    runs: list[_Run] = []
    for step in range(n):
        slot = (origin + step) % n
        if runs and levels[slot] == runs[-1].level:
            runs[-1].length += 1
        else:
            runs.append(_Run(slot, 1, levels[slot]))
    return runs


def _set(levels: list[int], start: int, length: int, level: int) -> None:
    for step in range(length):
        levels[(start + step) % len(levels)] = level


def with_minimum_runs(needed: Sequence[int], min_run: int) -> tuple[int, ...]:
    """A week that never has fewer replicas than ``needed`` and holds each step ``min_run`` hours.

    The shortest step is mended first. A dip (lower than a neighbour) is raised
    to its nearest higher neighbour, which merges the two; a peak is extended
    into its higher neighbour (cheaper to raise) until it lasts ``min_run``.
    Each mend only ever raises hours, so the week keeps serving its traffic and
    the loop ends. This is a rule an operator can follow by hand, not a search
    for the cheapest such week.
    """
    levels = list(needed)
    if min_run <= 1 or not levels:
        return tuple(levels)
    while True:
        runs = _runs(levels)
        short = [i for i, r in enumerate(runs) if r.length < min_run]
        if len(runs) <= 1 or not short:
            return tuple(levels)
        index = min(short, key=lambda i: (runs[i].length, runs[i].start))
        run = runs[index]
        before, after = runs[index - 1], runs[(index + 1) % len(runs)]
        higher = [r.level for r in (before, after) if r.level > run.level]
        if higher:
            _set(levels, run.start, run.length, min(higher))
            continue
        # A peak: grow it into the higher neighbour, the later one on a tie.
        into_after = after.level >= before.level
        neighbour = after if into_after else before
        grow = min(min_run - run.length, neighbour.length)
        if into_after:
            _set(levels, run.start + run.length, grow, run.level)
        else:
            _set(levels, neighbour.start + neighbour.length - grow, grow, run.level)


@dataclass(frozen=True)
class WindowSchedule:
    """``day`` replicas on weekdays from ``start`` to ``end`` o'clock, ``other`` at all other times.

    ``start == end`` means one count all week (``day`` is then unused).
    """

    start: int
    end: int
    day: int
    other: int

    def replicas(self, weekday: int, hour: int) -> int:
        if self.start < self.end and weekday < 5 and self.start <= hour < self.end:
            return self.day
        return self.other

    def week(self) -> tuple[int, ...]:
        return tuple(self.replicas(slot // 24, slot % 24) for slot in range(HOURS_PER_WEEK))


def cheapest_window_schedule(
    cost: Callable[[int, int, int], float],
    counts: Sequence[int],
    min_run: int,
) -> WindowSchedule:
    """The cheapest :class:`WindowSchedule` whose window and rest each last ``min_run`` hours.

    ``cost(weekday, hour, replicas)`` is what that hour of the week costs,
    summed over the period, with that many replicas; ``counts`` are the
    replica counts allowed. The window's and the rest's best counts are
    independent, so each window is costed in time linear in the counts.
    """
    weekday = [[0.0] * 24 for _ in counts]  # per count, weekday cost by hour of the day
    weekend = [0.0] * len(counts)
    for c, count in enumerate(counts):
        for day in range(7):
            for hour in range(24):
                value = cost(day, hour, count)
                if day < 5:
                    weekday[c][hour] += value
                else:
                    weekend[c] += value
    prefix = [[0.0] for _ in counts]
    for c in range(len(counts)):
        for hour in range(24):
            prefix[c].append(prefix[c][-1] + weekday[c][hour])

    def best(window_cost: Callable[[int], float]) -> tuple[float, int]:
        return min((window_cost(c), c) for c in range(len(counts)))

    whole, c_all = best(lambda c: prefix[c][24] + weekend[c])
    chosen, total = WindowSchedule(0, 0, counts[c_all], counts[c_all]), whole
    for start in range(24):
        for end in range(start + 1, 25):
            length = end - start
            if length < min_run or (length < 24 and 24 - length < min_run):
                continue
            inside, c_in = best(lambda c, s=start, e=end: prefix[c][e] - prefix[c][s])
            outside, c_out = best(
                lambda c, s=start, e=end: prefix[c][24] - (prefix[c][e] - prefix[c][s]) + weekend[c]
            )
            if c_in != c_out and inside + outside < total:
                chosen = WindowSchedule(start, end, counts[c_in], counts[c_out])
                total = inside + outside
    return chosen
