"""Small inline SVG line charts over time, for the landing page.

Server-rendered markup that needs no script and no asset: each chart is an
image with a text summary, labelled axes (wall-clock time, UTC, across; the
figure's unit up) and a legend. The page scales it to the screen's width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape

from llm_cost_exporter.tools.report.svg import nice_ticks

WIDTH, HEIGHT = 480.0, 210.0
TOP, RIGHT, BOTTOM = 44.0, 12.0, 24.0
FONT_SIZE = 12
CHAR_WIDTH = 0.6
"""Average width of a sans-serif character, in font sizes, for layout only."""
MUTED, GRID = "#6b7280", "#e5e7eb"

TIME_STEPS = (
    *(1, 2, 5, 10, 15, 30),
    *(60, 120, 300, 600, 900, 1800),
    *(3600, 7200, 10800, 21600, 43200, 86400),
)
"""Seconds between time ticks, the smallest that keeps at most `count` of them."""


@dataclass(frozen=True)
class Line:
    """One series of a chart, a value (or None for a gap) at each of the chart's times."""

    key: str
    label: str
    values: Sequence[float | None]
    colour: str
    dashed: bool = False


@dataclass(frozen=True)
class LinearScale:
    """Maps `low`..`high` onto `start`..`end` (pixels; `end` may be below `start`)."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        if self.high == self.low:
            return (self.start + self.end) / 2
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


def time_ticks(start: float, end: float, count: int = 5) -> tuple[list[float], int]:
    """Round wall times (epoch seconds) within start..end, and the step between them."""
    length = max(end - start, 1e-9)
    step = next((s for s in TIME_STEPS if length / s <= count), TIME_STEPS[-1])
    first = math.ceil(start / step - 1e-9) * step
    return _steps(first, end, step), step


def _steps(first: float, end: float, step: int) -> list[float]:
    count = math.floor((end - first) / step + 1e-9) + 1
    return [first + i * step for i in range(max(count, 0))]


def time_label(when: float, step: int) -> str:
    """`14:05`, with seconds when ticks are less than a minute apart."""
    moment = datetime.fromtimestamp(when, timezone.utc)
    return moment.strftime("%H:%M:%S" if step < 60 else "%H:%M")


def value_range(values: Sequence[float], ceiling: float | None = None) -> tuple[list[float], bool]:
    """Round ticks from 0 to the highest value, and whether values above `ceiling` were
    cut (one outlier, such as an idle window's cost per 1M, would flatten the rest)."""
    finite = [v for v in values if math.isfinite(v)]
    high = max([0.0, *finite])
    low = min([0.0, *finite])
    clipped = ceiling is not None and ceiling > 0 and high > ceiling
    if clipped:
        high = ceiling
    if high <= low:
        high = low + 1.0
    return nice_ticks(low, high), clipped


def _num(value: float) -> str:
    out = f"{value:.1f}"
    return "0.0" if out == "-0.0" else out


def _path(times: Sequence[float], values: Sequence[float | None], x, y, low, high) -> str:
    """`M x y L x y …`, a new `M` after each gap; values outside low..high are held at the
    edge so the line stays in the plot."""
    parts, pen_down = [], False
    for when, value in zip(times, values, strict=True):
        if value is None or not math.isfinite(value):
            pen_down = False
            continue
        held = min(max(value, low), high)
        parts.append(f"{'L' if pen_down else 'M'}{_num(x(when))} {_num(y(held))}")
        pen_down = True
    return " ".join(parts)


def line_chart(
    key: str,
    title: str,
    times: Sequence[float],
    lines: Sequence[Line],
    format_for: Callable[[Sequence[float]], Callable[[float], str]],
    unit: str,
    ceiling: float | None = None,
) -> str:
    """A chart of `lines` over `times` (epoch seconds, oldest first). `format_for(ticks)`
    writes the values of the y axis (the ticks decide the decimals), `unit` names them;
    values above `ceiling` are cut at it, and the legend says so."""
    values = [v for line in lines for v in line.values if v is not None and math.isfinite(v)]
    ticks, clipped = value_range(values, ceiling)
    shown = format_for(ticks)
    labels = [shown(t) for t in ticks]
    left = 10 + max(len(label) for label in labels) * CHAR_WIDTH * FONT_SIZE
    y = LinearScale(ticks[0], ticks[-1], HEIGHT - BOTTOM, TOP)
    start, end = (times[0], times[-1]) if times else (0.0, 1.0)
    x = LinearScale(start, end, left, WIDTH - RIGHT)
    body = []
    for tick, label in zip(ticks, labels, strict=True):
        body.append(
            f'<line x1="{_num(left)}" y1="{_num(y(tick))}" x2="{_num(WIDTH - RIGHT)}" '
            f'y2="{_num(y(tick))}" stroke="{GRID}"/><text x="{_num(left - 5)}" '
            f'y="{_num(y(tick))}" dy="0.35em" text-anchor="end" fill="{MUTED}">'
            f"{escape(label)}</text>"
        )
    body.append(
        f'<text x="4" y="34" fill="{MUTED}">{escape(unit)}</text>'
        f'<text x="{_num(left - 5)}" y="{_num(HEIGHT - 6)}" text-anchor="end" '
        f'fill="{MUTED}">UTC</text>'
    )
    if times:
        marks, step = time_ticks(start, end)
        half = len(time_label(start, step)) * CHAR_WIDTH * FONT_SIZE / 2
        for when in marks:
            if not left + half <= x(when) <= WIDTH - half:
                continue  # its label would run past the plot
            body.append(
                f'<text x="{_num(x(when))}" y="{_num(HEIGHT - 6)}" text-anchor="middle" '
                f'fill="{MUTED}">{time_label(when, step)}</text>'
            )
    body += _legend(lines, left, shown(ticks[-1]) if clipped else None)
    for line in lines:
        d = _path(times, line.values, x, y, ticks[0], ticks[-1])
        if d:
            dash = ' stroke-dasharray="5 4"' if line.dashed else ""
            body.append(
                f'<path class="line" data-series="{escape(line.key)}" d="{d}" fill="none" '
                f'stroke="{line.colour}" stroke-width="2" stroke-linejoin="round"{dash}/>'
            )
    if not values:
        body.append(
            f'<text x="{_num((left + WIDTH) / 2)}" y="{_num(HEIGHT / 2)}" '
            f'text-anchor="middle" fill="{MUTED}">collecting…</text>'
        )
    summary = _summary(title, lines, shown, len(times))
    return (
        f'<svg class="chart" data-chart="{escape(key)}" role="img" '
        f'aria-label="{escape(summary)}" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" '
        f'font-size="{FONT_SIZE}" font-family="system-ui,sans-serif">'
        f"<title>{escape(summary)}</title>{''.join(body)}</svg>"
    )


def _legend(lines: Sequence[Line], x: float, cut_at: str | None) -> list[str]:
    out = []
    for line in lines:
        dash = ' stroke-dasharray="5 4"' if line.dashed else ""
        out.append(
            f'<line x1="{_num(x)}" y1="12" x2="{_num(x + 18)}" y2="12" stroke="{line.colour}" '
            f'stroke-width="2.5"{dash}/><text x="{_num(x + 23)}" y="16">'
            f"{escape(line.label)}</text>"
        )
        x += 23 + len(line.label) * CHAR_WIDTH * FONT_SIZE + 14
    if cut_at is not None:
        out.append(
            f'<text x="{_num(WIDTH - RIGHT)}" y="34" text-anchor="end" fill="{MUTED}">'
            f"cut at {escape(cut_at)}</text>"
        )
    return out


def _summary(title: str, lines: Sequence[Line], shown: Callable[[float], str], n: int) -> str:
    parts = [f"{title}: {n} points"]
    for line in lines:
        known = [v for v in line.values if v is not None and math.isfinite(v)]
        if known:
            parts.append(f"{line.label} from {shown(min(known))} to {shown(max(known))}")
        else:
            parts.append(f"{line.label}: no data")
    return "; ".join(parts) + "."
