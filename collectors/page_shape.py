"""An engine's last page, kept so that the next one is read by its values alone.

An engine prints the same wanted lines in the same order every cycle; only
their values change. Once a page has been read line by line without a fault,
its wanted lines' heads (name and labels, as raw bytes) and where each line's
value went are kept. A next page whose wanted lines have those heads in that
order, each value a plain number that the line-by-line reading would take as
it is, is then read by its values alone, without parsing a line or routing a
value. Anything else (a line more or less, another order, a value to judge)
reads the page line by line from there on, the lines before it included, as
if nothing had been kept: what is kept saves work and never changes a reading.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from operator import itemgetter, le
from typing import Any

from llm_cost_exporter.collectors.promtext import TAIL_BYTES, Labels

Route = tuple[str, tuple[str, str] | None, str | None, float, Labels | None]
"""Where a wanted line's value goes: its metric name, its (model, rank) (None: the line
is left out), its part label's value (None: the metric has no part label), the largest
usable value, and for an info series the labels it keeps (the value is not used)."""

Slot = tuple[dict[Any, float], Any, tuple[int, ...]]
"""A sum the page makes: the values dict it is in, its key there, and the positions of
the lines it adds, in page order."""

_INFINITY = float("inf")
_HEAD = itemgetter(0)
_TAIL = itemgetter(1)


class PageShape:
    """A page's wanted lines: their heads in page order, the values a following page's
    line must lie between to be taken as it is, and what the page's reading made, kept
    to be filled with the following page's values (`fill`)."""

    __slots__ = ("heads", "lowest", "highest", "made", "_slots")

    def __init__(
        self, heads: list[bytes], routes: list[Route], made: Any, slots: list[Slot]
    ) -> None:
        """`made` is what a reader of the page reads (EnginePage's sums); `slots` are the
        sums in it, each filled from the values at its positions."""
        self.heads = heads
        summed = [key is not None and info is None for _, key, _, _, info in routes]
        self.lowest = [0.0 if s else -_INFINITY for s in summed]
        """A summed value is usable from 0; any other line's value is not judged."""
        self.highest = [
            min(route[3], sys.float_info.max) if s else _INFINITY
            for s, route in zip(summed, routes, strict=True)
        ]
        """A summed value up to its series' largest, never infinite; NaN lies between no
        bounds, so it is always read line by line."""
        self.made = made
        self._slots = slots

    def fill(self, values: list[float]) -> Any:
        """`made`, its sums rewritten from a following page's `values`, added in page order
        from 0.0 as a reading line by line adds them (0.0 + -0.0 is 0.0, not -0.0). The
        objects are the shape's own: a page's reader must not keep them past its page."""
        for sums, key, positions in self._slots:
            total = 0.0
            for position in positions:
                total += values[position]
            sums[key] = total
        return self.made


class LastPage:
    """What one engine's collector keeps of its last page, from one cycle to the next."""

    __slots__ = ("shape",)

    def __init__(self) -> None:
        self.shape: PageShape | None = None


def followed_values(
    shape: PageShape, start: int, lines: list[tuple[bytes, bytes]]
) -> list[float] | None:
    """The values of `lines`, the page's wanted lines from the `start`-th on, if their heads
    are the shape's from there and each value is one the line-by-line reading takes as it
    is (a short plain number, usable where it is summed); else None."""
    end = start + len(lines)
    if list(map(_HEAD, lines)) != shape.heads[start:end]:
        return None
    tails = list(map(_TAIL, lines))
    if not tails:
        return []
    # The parser's own fast read: a short tail without `_`, which float() takes whole.
    if max(map(len, tails)) > TAIL_BYTES or b"_" in b"".join(tails):
        return None
    try:
        values = list(map(float, tails))
    except ValueError:
        return None
    if not all(map(le, shape.lowest[start:end], values)) or not all(
        map(le, values, shape.highest[start:end])
    ):
        return None
    return values


def positions_of(routes: list[Route]) -> Mapping[tuple[str, str | None], dict[Any, list[int]]]:
    """Per (metric, part label value) summed, per key in first-seen order, the positions of
    its lines in page order."""
    found: dict[tuple[str, str | None], dict[Any, list[int]]] = {}
    for position, (name, key, part, _, info) in enumerate(routes):
        if key is not None and info is None:
            found.setdefault((name, part), {}).setdefault(key, []).append(position)
    return found
