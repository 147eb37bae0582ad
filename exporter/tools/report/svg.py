"""Inline SVG charts for the review: plain markup that needs no script and no asset.

The report is one file handed around by mail and printed, so each chart is a
string of SVG elements meant to sit inside the HTML (no ``xmlns``: the HTML
parser supplies it). Every chart is an image with a text summary for screen
readers, a native ``<title>`` tooltip on each mark, and the same output for the
same input: nothing depends on the clock, randomness or the machine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from llm_cost_exporter.tools.report.model import WEEKDAYS
from llm_cost_exporter.tools.report.units import Unit, display, in_currency, is_money

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
NO_DATA = "#d1d5db"
NO_DATA_HATCH = "#9ca3af"
BAR = "#2563eb"
BAR_FONT = 12
CHAR_WIDTH = 0.6  # average width of a sans-serif character, in font sizes, for layout only

# Utilization colours, light to dark; distinct from the grey of "no data".
SCALE = (
    (0.0, (239, 246, 255)),
    (0.25, (191, 219, 254)),
    (0.5, (96, 165, 250)),
    (0.75, (29, 78, 216)),
    (1.0, (23, 37, 84)),
)

_DEFUSE = (
    (re.compile(r"://"), "&#58;//"),
    (re.compile(r"(?i)(url)\("), r"\1&#40;"),
    (re.compile(r"(?i)(src|href)="), r"\1&#61;"),
    (re.compile(r"@"), "&#64;"),
)


def text(value: object) -> str:
    """Escape text for HTML and SVG, and keep label text from reading as a reference.

    Names come from Prometheus labels and may hold anything, including a URL
    or CSS-like text; the document promises to contain no reference at all, so
    those characters are written as character references, which read the same.
    """
    out = escape(str(value), quote=True)
    for pattern, replacement in _DEFUSE:
        out = pattern.sub(replacement, out)
    return out


def _num(value: float) -> str:
    """Coordinates with one decimal: enough for a screen, stable across runs."""
    out = f"{value:.1f}"
    return "0.0" if out == "-0.0" else out


def _svg(
    width: float, height: float, summary: str, body: Sequence[str], kind: str, size: int
) -> str:
    return (
        f'<svg class="chart chart-{kind}" role="img" aria-label="{text(summary)}" '
        f'viewBox="0 0 {_num(width)} {_num(height)}" width="{_num(width)}" '
        f'height="{_num(height)}" font-family="{text(FONT)}" font-size="{size}" fill="{INK}">'
        f"<title>{text(summary)}</title>{''.join(body)}</svg>"
    )


def _text_width(label: str, size: float = 11) -> float:
    return len(label) * CHAR_WIDTH * size


def _shorten(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# Line chart --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One line of a line chart; None values leave a gap rather than a zero."""

    label: str
    values: Sequence[float | None]
    colour: str
    dashed: bool = False


@dataclass(frozen=True)
class Reference:
    """A horizontal line across the whole chart, such as a planned figure."""

    label: str
    value: float | None
    colour: str
    dashed: bool = True


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round axis ticks covering low..high, so the axis reads 0, 2.5, 5 and not 0, 2.37."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


MAX_TICK_DECIMALS = 6


def _decimals_needed(values: Sequence[float]) -> int:
    """The fewest decimals that write every value exactly (nice ticks need few)."""
    for decimals in range(MAX_TICK_DECIMALS + 1):
        if all(abs(v - round(v, decimals)) <= 1e-9 * max(1.0, abs(v)) for v in values):
            return decimals
    return MAX_TICK_DECIMALS


def tick_labels(ticks: Sequence[float], unit: Unit, currency: str = "USD") -> list[str]:
    """Axis labels with the precision the step needs: ``$6``, ``$0.50``, ``25%``, ``740 h``.

    An axis marks positions, not figures, so it drops the decimals a figure is
    kept to: every label of an axis has as many as its finest tick needs, and
    money that is not whole shows at least cents.
    """
    scale = 100.0 if unit == "ratio" else 1.0
    values = [t * scale for t in ticks]
    decimals = _decimals_needed(values)
    if is_money(unit) and decimals:
        decimals = max(decimals, 2)
    out = []
    for value in values:
        number = f"{abs(value):,.{decimals}f}"
        sign = "-" if value < 0 and number.strip("0.,") else ""
        if is_money(unit):
            out.append(sign + in_currency(number, currency))
        elif unit == "ratio":
            out.append(f"{sign}{number}%")
        elif unit == "factor":
            out.append(f"{sign}{number}\u00d7")
        elif unit == "hours":
            out.append(f"{sign}{number} h")
        else:
            out.append(f"{sign}{number}")
    return out


def _runs(values: Sequence[float | None]) -> list[list[int]]:
    """Indices of consecutive values with data: each run becomes one unbroken line."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, value in enumerate(values):
        if _finite(value):
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def _line_summary(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    references: Sequence[Reference],
    unit: Unit,
    currency: str,
) -> str:
    parts = [f"{title}: {len(labels)} points"]
    if labels:
        parts[0] += f" from {labels[0]} to {labels[-1]}"
    for line in series:
        present = [v for v in line.values if _finite(v)]
        if not present:
            parts.append(f"{line.label}: no data")
            continue
        described = (
            f"{line.label} from {display(min(present), unit, currency)} "
            f"to {display(max(present), unit, currency)}"
        )
        missing = len(line.values) - len(present)
        if missing:
            described += f", {missing} without data"
        parts.append(described)
    for ref in references:
        if _finite(ref.value):
            parts.append(f"{ref.label} {display(ref.value, unit, currency)}")
    return "; ".join(parts) + "."


def _legend(entries: Sequence[tuple[str, str, bool]], x: float, y: float) -> list[str]:
    """A row of line samples with their labels, above the plot."""
    out = []
    for label, colour, dashed in entries:
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        out.append(
            f'<line x1="{_num(x)}" y1="{_num(y)}" x2="{_num(x + 22)}" y2="{_num(y)}" '
            f'stroke="{colour}" stroke-width="2.5"{dash}/>'
            f'<text x="{_num(x + 28)}" y="{_num(y + 4)}">{text(label)}</text>'
        )
        x += 28 + _text_width(label, 12) + 20
    return out


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    references: Sequence[Reference] = (),
    unit: Unit = "money_per_million",
    currency: str = "USD",
    title: str = "",
    width: float = 1000,
    height: float = 320,
) -> str:
    """A daily series with optional reference lines; days without a value break the line."""
    summary = _line_summary(title, labels, series, references, unit, currency)
    values = [v for line in series for v in line.values if _finite(v)]
    values += [ref.value for ref in references if _finite(ref.value)]
    ticks = nice_ticks(min([0.0, *values]), max([0.0, *values]) if values else 1.0)
    labels_y = tick_labels(ticks, unit, currency)
    left = 14 + max(_text_width(t, 12) for t in labels_y)
    top, right, bottom = 36.0, 16.0, 40.0
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high = ticks[0], ticks[-1]

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    def x_of(i: int) -> float:
        return left + plot_w * (i + 0.5) / max(len(labels), 1)

    body = _legend(
        [(s.label, s.colour, s.dashed) for s in series]
        + [(r.label, r.colour, r.dashed) for r in references if _finite(r.value)],
        left,
        14,
    )
    body += _y_axis(ticks, labels_y, y_of, left, width - right)
    body += _x_axis(labels, x_of, top + plot_h, plot_w)
    for ref in references:
        if _finite(ref.value):
            body.append(_reference_line(ref, y_of(ref.value), left, width - right, unit, currency))
    for index, line in enumerate(series):
        body += _series_marks(index, line, labels, x_of, y_of, unit, currency)
    if not values:
        body.append(
            f'<text x="{_num(left + plot_w / 2)}" y="{_num(top + plot_h / 2)}" '
            f'text-anchor="middle" fill="{MUTED}">no data</text>'
        )
    return _svg(width, height, summary, body, "line", 12)


def _y_axis(ticks, shown, y_of, x0: float, x1: float) -> list[str]:
    out = []
    for tick, label in zip(ticks, shown, strict=True):
        y = _num(y_of(tick))
        out.append(
            f'<line x1="{_num(x0)}" y1="{y}" x2="{_num(x1)}" y2="{y}" stroke="{GRID}"/>'
            f'<text class="tick" x="{_num(x0 - 6)}" y="{y}" dy="0.35em" text-anchor="end" '
            f'fill="{MUTED}">{text(label)}</text>'
        )
    return out


def _x_axis(labels: Sequence[str], x_of, y: float, plot_w: float) -> list[str]:
    """Sparse date labels: as many as fit without overlapping, evenly spaced."""
    if not labels:
        return []
    widest = max(_text_width(label, 12) for label in labels) + 16
    every = max(1, math.ceil(len(labels) / max(1, int(plot_w // widest))))
    out = []
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = _num(x_of(i))
        out.append(
            f'<line x1="{x}" y1="{_num(y)}" x2="{x}" y2="{_num(y + 4)}" stroke="{MUTED}"/>'
            f'<text x="{x}" y="{_num(y + 18)}" text-anchor="middle" '
            f'fill="{MUTED}">{text(label)}</text>'
        )
    return out


def _reference_line(ref: Reference, y: float, x0: float, x1: float, unit, currency) -> str:
    dash = ' stroke-dasharray="6 4"' if ref.dashed else ""
    return (
        f'<line class="reference" x1="{_num(x0)}" y1="{_num(y)}" x2="{_num(x1)}" '
        f'y2="{_num(y)}" stroke="{ref.colour}" stroke-width="2"{dash}>'
        f"<title>{text(ref.label)}: {text(display(ref.value, unit, currency))}</title></line>"
    )


def _series_marks(
    index: int, line: Series, labels: Sequence[str], x_of, y_of, unit: Unit, currency: str
) -> list[str]:
    """One polyline per run of days with data, and a dot with a tooltip on every day."""
    dash = ' stroke-dasharray="6 4"' if line.dashed else ""
    out = []
    for run in _runs(line.values):
        if len(run) < 2:
            continue
        points = " ".join(f"{_num(x_of(i))},{_num(y_of(line.values[i]))}" for i in run)
        out.append(
            f'<polyline class="line" data-series="{index}" points="{points}" fill="none" '
            f'stroke="{line.colour}" stroke-width="2" stroke-linejoin="round"{dash}/>'
        )
    for i, value in enumerate(line.values):
        if not _finite(value):
            continue
        label = labels[i] if i < len(labels) else str(i)
        out.append(
            f'<circle class="point" data-series="{index}" cx="{_num(x_of(i))}" '
            f'cy="{_num(y_of(value))}" r="2.5" fill="{line.colour}"><title>'
            f"{text(line.label)}, {text(label)}: {text(display(value, unit, currency))}"
            "</title></circle>"
        )
    return out


# Heatmap -----------------------------------------------------------------------------------


def colour_for(value: float) -> str:
    """The fill for a share between 0 and 1 (clipped), interpolated along SCALE."""
    v = min(max(value, 0.0), 1.0)
    for (p0, c0), (p1, c1) in zip(SCALE, SCALE[1:], strict=False):
        if v <= p1:
            f = (v - p0) / (p1 - p0)
            rgb = (round(a + (b - a) * f) for a, b in zip(c0, c1, strict=True))
            return "#" + "".join(f"{c:02x}" for c in rgb)
    return "#" + "".join(f"{c:02x}" for c in SCALE[-1][1])


def _hour_span(hour: int) -> str:
    return f"{hour:02d}:00\u2013{(hour + 1) % 24:02d}:00"


def _heatmap_summary(title: str, values: Sequence[float | None]) -> str:
    known = [(v, i) for i, v in enumerate(values) if _finite(v)]
    if not known:
        return f"{title}: 7 days by 24 hours, no data."
    high, hi = max(known, key=lambda p: (p[0], -p[1]))
    low, lo = min(known, key=lambda p: (p[0], p[1]))
    summary = (
        f"{title}: 7 days by 24 hours; highest {display(high, 'ratio')} on "
        f"{WEEKDAYS[hi // 24]} {_hour_span(hi % 24)}, lowest {display(low, 'ratio')} on "
        f"{WEEKDAYS[lo // 24]} {_hour_span(lo % 24)}"
    )
    missing = len(values) - len(known)
    return summary + (f"; {missing} hours without data." if missing else ".")


def heatmap(
    values: Sequence[float | None],
    *,
    title: str = "",
    notes: Sequence[str | None] | None = None,
) -> str:
    """Utilization by hour of week: 7 rows (Mon..Sun) by 24 columns, Monday 00:00 first.

    ``notes`` adds text to each cell's tooltip (for instance the average token
    rate), so the exact figures stay one hover away without cluttering the grid.
    """
    cells = list(values)[:168] + [None] * max(0, 168 - len(values))
    cell_w, cell_h, pad = 26.0, 20.0, 2.0
    left, top = 40.0, 22.0
    width = left + 24 * (cell_w + pad) + 8
    grid_bottom = top + 7 * (cell_h + pad)
    height = grid_bottom + 46
    body = []
    for hour in range(0, 24, 2):
        x = left + hour * (cell_w + pad) + cell_w / 2
        body.append(
            f'<text x="{_num(x)}" y="{_num(top - 7)}" text-anchor="middle" '
            f'fill="{MUTED}">{hour:02d}</text>'
        )
    for day, name in enumerate(WEEKDAYS):
        y = top + day * (cell_h + pad)
        body.append(
            f'<text x="{_num(left - 8)}" y="{_num(y + cell_h / 2)}" dy="0.35em" '
            f'text-anchor="end" fill="{MUTED}">{name}</text>'
        )
        for hour in range(24):
            index = day * 24 + hour
            note = notes[index] if notes is not None and index < len(notes) else None
            x = left + hour * (cell_w + pad)
            body.append(
                _cell(x, y, cell_w, cell_h, cells[index], f"{name} {_hour_span(hour)}", note)
            )
    body += _heatmap_legend(left, grid_bottom + 14)
    return _svg(width, height, _heatmap_summary(title, cells), body, "heatmap", 11)


def _cell(
    x: float, y: float, w: float, h: float, value: float | None, when: str, note: str | None
) -> str:
    extra = f"; {note}" if note else ""
    if not _finite(value):
        return (
            f'<rect class="cell nodata" x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" '
            f'height="{_num(h)}" rx="2" fill="{NO_DATA}"><title>{when}: no data{text(extra)}'
            f'</title></rect><path d="M{_num(x + 3)} {_num(y + h - 3)}L{_num(x + w - 3)} '
            f'{_num(y + 3)}" stroke="{NO_DATA_HATCH}" stroke-width="1" pointer-events="none"/>'
        )
    return (
        f'<rect class="cell" x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" '
        f'rx="2" fill="{colour_for(value)}"><title>{when}: {display(value, "ratio")}'
        f"{text(extra)}</title></rect>"
    )


def _heatmap_legend(x: float, y: float) -> list[str]:
    """A stepped colour ramp from 0 to 100%, and the grey swatch for hours without data."""
    steps, step_w, h = 20, 12.0, 10.0
    out = [f'<text x="{_num(x)}" y="{_num(y + h - 1)}" fill="{MUTED}">utilization</text>']
    ramp_x = x + 70
    for i in range(steps):
        out.append(
            f'<rect x="{_num(ramp_x + i * step_w)}" y="{_num(y)}" width="{_num(step_w)}" '
            f'height="{_num(h)}" fill="{colour_for(i / (steps - 1))}"/>'
        )
    shares = (0.0, 0.5, 1.0)
    for share, shown, anchor in zip(
        shares, tick_labels(shares, "ratio"), ("start", "middle", "end"), strict=True
    ):
        lx = ramp_x + share * steps * step_w
        out.append(
            f'<text class="tick" x="{_num(lx)}" y="{_num(y + h + 13)}" text-anchor="{anchor}" '
            f'fill="{MUTED}">{shown}</text>'
        )
    nx = ramp_x + steps * step_w + 28
    out.append(
        f'<rect x="{_num(nx)}" y="{_num(y)}" width="{_num(h * 1.6)}" height="{_num(h)}" '
        f'fill="{NO_DATA}"/><path d="M{_num(nx + 2)} {_num(y + h - 1)}L{_num(nx + h * 1.6 - 2)} '
        f'{_num(y + 1)}" stroke="{NO_DATA_HATCH}"/>'
        f'<text x="{_num(nx + h * 1.6 + 6)}" y="{_num(y + h - 1)}" fill="{MUTED}">no data</text>'
    )
    return out


# Bar chart ---------------------------------------------------------------------------------


def bar_chart(
    items: Sequence[tuple[str, float | None]],
    *,
    unit: Unit,
    currency: str = "USD",
    title: str = "",
    show_share: bool = True,
    width: float = 480,
) -> str:
    """Horizontal bars with value labels, for a breakdown such as spend by component.

    Bars are drawn from zero; a negative or missing value gets no bar but keeps
    its label, so nothing silently disappears from the chart.
    """
    total = sum(v for _, v in items if _finite(v) and v > 0)
    peak = max([v for _, v in items if _finite(v)] + [0.0])
    shown = [_shorten(label, 26) for label, _ in items]
    label_w = min(200.0, 12 + max([_text_width(s, BAR_FONT) for s in shown] + [40.0]))
    values_text = [_bar_value(v, total, unit, currency, show_share) for _, v in items]
    value_w = 12 + max([_text_width(s, BAR_FONT) for s in values_text] + [30.0])
    width = max(width, label_w + value_w + 88)  # long labels widen the chart, never clip it
    bar_w = width - label_w - value_w - 8
    row_h, bar_h, top = 26.0, 16.0, 6.0
    height = top * 2 + row_h * max(len(items), 1)
    body = []
    rows = zip(items, shown, values_text, strict=True)
    for i, ((label, value), short, value_text) in enumerate(rows):
        y = top + i * row_h
        length = bar_w * value / peak if _finite(value) and value > 0 and peak > 0 else 0.0
        body.append(
            f'<text x="{_num(label_w - 8)}" y="{_num(y + row_h / 2)}" dy="0.35em" '
            f'text-anchor="end"><title>{text(label)}</title>{text(short)}</text>'
            f'<rect class="bar" x="{_num(label_w)}" y="{_num(y + (row_h - bar_h) / 2)}" '
            f'width="{_num(length)}" height="{_num(bar_h)}" rx="2" fill="{BAR}">'
            f"<title>{text(label)}: {text(value_text)}</title></rect>"
            f'<text x="{_num(label_w + length + 6)}" y="{_num(y + row_h / 2)}" dy="0.35em" '
            f'fill="{INK}">{text(value_text)}</text>'
        )
    if not items:
        body.append(f'<text x="{_num(width / 2)}" y="20" text-anchor="middle">no data</text>')
    summary = f"{title}: " + (
        "; ".join(f"{label} {vt}" for (label, _), vt in zip(items, values_text, strict=True))
        or "no data"
    )
    return _svg(width, height, summary + ".", body, "bar", BAR_FONT)


def _bar_value(value: float | None, total: float, unit: Unit, currency: str, share: bool) -> str:
    shown = display(value, unit, currency)
    if share and _finite(value) and total > 0:
        shown += f" ({display(value / total, 'ratio')})"
    return shown


# Week chart --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """A second y axis: the same positions in another unit (``value x factor``)."""

    label: str
    factor: float
    show: Callable[[float], str]


def _step_path(values: Sequence[float], x_of: Callable[[float], float], y_of) -> str:
    """One horizontal segment per hour, joined by vertical steps: a count held for the hour."""
    d = [f"M{_num(x_of(0))} {_num(y_of(values[0]))}H{_num(x_of(1))}"]
    for i in range(1, len(values)):
        d.append(f"V{_num(y_of(values[i]))}H{_num(x_of(i + 1))}")
    return "".join(d)


def week_chart(
    area: Series,
    steps: Sequence[Series],
    *,
    summary: str,
    axis_label: str,
    notes: Sequence[str] = (),
    right: Axis | None = None,
    width: float = 1000,
    height: float = 330,
) -> str:
    """The 168 hours of a week, Monday 00:00 first: a filled profile and step lines over it.

    ``area`` is drawn as a shaded line through each hour's middle (hours without
    a value leave a gap); each of ``steps`` holds its value for the whole hour.
    Both share the left axis; ``right`` labels the same gridlines in another
    unit. ``notes`` become each hour's tooltip, so every exact figure is a
    hover away.
    """
    hours = len(area.values)
    values = [v for v in area.values if _finite(v)] + [
        v for line in steps for v in line.values if _finite(v)
    ]
    ticks = nice_ticks(0.0, max(values) if values else 1.0)
    left_labels = tick_labels(ticks, "count")
    right_labels = [right.show(t * right.factor) for t in ticks] if right else []
    left = 14 + max(_text_width(t, 12) for t in [*left_labels, axis_label])
    right_w = 14 + max(_text_width(t, 12) for t in [*right_labels, right.label]) if right else 16
    top, bottom = 52.0, 30.0
    plot_w, plot_h = width - left - right_w, height - top - bottom
    low, high = ticks[0], ticks[-1]

    def x_of(slot: float) -> float:
        return left + plot_w * slot / max(hours, 1)

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    body = _week_legend(area, steps, left)
    body.append(
        f'<text x="{_num(left - 6)}" y="{_num(top - 10)}" text-anchor="end" '
        f'fill="{MUTED}">{text(axis_label)}</text>'
    )
    if right:
        body.append(
            f'<text x="{_num(width - right_w + 6)}" y="{_num(top - 10)}" '
            f'fill="{MUTED}">{text(right.label)}</text>'
        )
    for tick, label, index in zip(ticks, left_labels, range(len(ticks)), strict=True):
        y = _num(y_of(tick))
        body.append(
            f'<line x1="{_num(left)}" y1="{y}" x2="{_num(width - right_w)}" y2="{y}" '
            f'stroke="{GRID}"/><text class="tick" x="{_num(left - 6)}" y="{y}" dy="0.35em" '
            f'text-anchor="end" fill="{MUTED}">{text(label)}</text>'
        )
        if right:
            body.append(
                f'<text class="tick" x="{_num(width - right_w + 6)}" y="{y}" dy="0.35em" '
                f'fill="{MUTED}">{text(right_labels[index])}</text>'
            )
    for day, name in enumerate(WEEKDAYS):
        if day:
            x = _num(x_of(day * 24))
            body.append(
                f'<line x1="{x}" y1="{_num(top)}" x2="{x}" y2="{_num(top + plot_h)}" '
                f'stroke="{GRID}"/>'
            )
        body.append(
            f'<text x="{_num(x_of(day * 24 + 12))}" y="{_num(top + plot_h + 18)}" '
            f'text-anchor="middle" fill="{MUTED}">{name}</text>'
        )
    body += _week_area(area, x_of, y_of, low)
    for index, line in enumerate(steps, start=1):
        if len(line.values) and all(_finite(v) for v in line.values):
            dash = ' stroke-dasharray="6 4"' if line.dashed else ""
            body.append(
                f'<path class="steps" data-series="{index}" '
                f'd="{_step_path(line.values, x_of, y_of)}" fill="none" stroke="{line.colour}" '
                f'stroke-width="2.5"{dash}/>'
            )
    for slot, note in enumerate(notes[:hours]):
        body.append(
            f'<rect class="hour" x="{_num(x_of(slot))}" y="{_num(top)}" '
            f'width="{_num(x_of(slot + 1) - x_of(slot))}" height="{_num(plot_h)}" '
            f'fill="{INK}" fill-opacity="0"><title>{text(note)}</title></rect>'
        )
    return _svg(width, height, summary, body, "week", 12)


def _week_legend(area: Series, steps: Sequence[Series], x: float) -> list[str]:
    out = [
        f'<rect x="{_num(x)}" y="8" width="22" height="12" fill="{area.colour}" '
        f'fill-opacity="0.25" stroke="{area.colour}"/>'
        f'<text x="{_num(x + 28)}" y="18">{text(area.label)}</text>'
    ]
    x += 28 + _text_width(area.label, 12) + 20
    return out + _legend([(s.label, s.colour, s.dashed) for s in steps], x, 14)


def _week_area(area: Series, x_of, y_of, base: float) -> list[str]:
    """The profile: a shaded band under each run of hours with data, and its line."""
    out = []
    for run in _runs(area.values):
        points = [f"{_num(x_of(i + 0.5))},{_num(y_of(area.values[i]))}" for i in run]
        floor = _num(y_of(base))
        edge = f"{_num(x_of(run[-1] + 0.5))},{floor} {_num(x_of(run[0] + 0.5))},{floor}"
        out.append(
            f'<polygon points="{" ".join(points)} {edge}" fill="{area.colour}" '
            f'fill-opacity="0.18" stroke="none"/>'
            f'<polyline class="line" data-series="0" points="{" ".join(points)}" fill="none" '
            f'stroke="{area.colour}" stroke-width="1.5" stroke-linejoin="round"/>'
        )
    return out
