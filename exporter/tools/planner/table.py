"""What ``plan`` prints: the policies side by side in plain text, within 100 columns.

The figures are rounded and shown by :func:`exporter.report.units.display`
and the sentences come from :mod:`exporter.report.advice_words`, as in the
review's HTML, so the terminal and the page say the same thing to the cent.
A column of names wraps onto more lines before the table grows past the width.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from llm_cost_exporter.tools.planner.model import (
    AS_RUN,
    HYBRID_SCHEDULE,
    SCHEDULED,
    Advice,
    Outcome,
)
from llm_cost_exporter.tools.report.advice_words import (
    assumptions,
    breakeven,
    percent,
    sensitivity_verdict,
    verdict,
)
from llm_cost_exporter.tools.report.measures import unit_of
from llm_cost_exporter.tools.report.tabular import POLICY_MEASURES, policy_value
from llm_cost_exporter.tools.report.units import display

WIDTH = 100
GAP = "  "
CHEAPEST = "* "
MIN_WRAP = 12  # a wrapped column never gets narrower than this

HEADERS = {
    "cost": ("", "Cost"),
    "cost_per_million_tokens": ("Per 1M", "tokens"),
    "self_hosted_share": ("Self-", "hosted"),
    "utilization": ("Utili-", "zation"),
    "hours_below_breakeven": ("Hours below", "break-even"),
    "saving_vs_as_run": ("Saving vs", "as run"),
    "saving_vs_all_api": ("Saving vs", "all API"),
}
TABLE_MEASURES = tuple(m for m in POLICY_MEASURES if m in HEADERS)


@dataclass(frozen=True)
class Column:
    header: tuple[str, ...]  # lines, bottom-aligned
    right: bool = True  # numbers align right; words align left
    wrap: bool = False  # may wrap onto more lines to keep the table within the width


def grid(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int = WIDTH) -> str:
    """An aligned table; a wrapping column takes whatever width the others leave it."""
    widths = [
        max([len(line) for line in c.header] + [len(row[i]) for row in rows])
        for i, c in enumerate(columns)
    ]
    wrapping = [i for i, c in enumerate(columns) if c.wrap]
    over = sum(widths) + len(GAP) * (len(columns) - 1) - width
    if over > 0 and wrapping:
        i = wrapping[0]
        if widths[i] - over < MIN_WRAP and i == 0 and len(columns) > 1:
            return _stacked(columns, rows, width)
        longest_word = max(
            [len(w) for row in rows for w in row[i].split()] + [len(h) for h in columns[i].header]
        )
        widths[i] = max(widths[i] - over, MIN_WRAP, longest_word)
    cells = [
        [_wrap(row[i], widths[i]) if columns[i].wrap else [row[i]] for i in range(len(columns))]
        for row in rows
    ]
    depth = max(len(c.header) for c in columns)
    head = [[""] * (depth - len(c.header)) + list(c.header) for c in columns]
    lines = [_line(columns, widths, [h[d] for h in head]) for d in range(depth)]
    lines.append(GAP.join("-" * w for w in widths))
    for row in cells:
        for d in range(max(len(c) for c in row)):
            lines.append(_line(columns, widths, [c[d] if d < len(c) else "" for c in row]))
    return "\n".join(lines)


def _stacked(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> str:
    """Too wide even with the names wrapped: each name on a line of its own, its figures below."""
    table = grid(columns[1:], [row[1:] for row in rows], width - len(GAP)).splitlines()
    depth = len(table) - len(rows)  # the header's lines and the rule under them
    lines = [(GAP + line).rstrip() for line in table[:depth]]
    for row, line in zip(rows, table[depth:], strict=True):
        lines += [row[0], GAP + line]
    return "\n".join(lines)


def _wrap(words: str, width: int) -> list[str]:
    """A cell over more lines; the lines after the first are indented, so rows stay apart."""
    return textwrap.wrap(words, width, subsequent_indent="  ", break_on_hyphens=False) or [""]


def _line(columns: Sequence[Column], widths: Sequence[int], texts: Sequence[str]) -> str:
    parts = [
        t.rjust(w) if c.right else t.ljust(w)
        for c, w, t in zip(columns, widths, texts, strict=True)
    ]
    return GAP.join(parts).rstrip()


def _paragraph(words: str) -> str:
    return textwrap.fill(words, WIDTH, break_on_hyphens=False)


def _item(words: str) -> str:
    """A list item: indented, its further lines hanging under its first word."""
    return textwrap.fill(
        words, WIDTH, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False
    )


def _policy_table(advice: Advice) -> str:
    best = advice.cheapest.key
    columns = [Column(("", "Policy"), right=False, wrap=True)]
    columns += [Column(HEADERS[m]) for m in TABLE_MEASURES]
    rows = [
        [(CHEAPEST if o.key == best else "") + o.name]
        + [
            display(policy_value(advice, o.key, m), unit_of(m), advice.currency)
            for m in TABLE_MEASURES
        ]
        for o in advice.outcomes
    ]
    return grid(columns, rows)


def _schedules(advice: Advice) -> str:
    lines = [
        _item(f"{o.name}: {o.summary}.")
        for o in (advice.outcome(SCHEDULED), advice.outcome(HYBRID_SCHEDULE))
    ]
    return "Schedules\n" + "\n".join(lines)


def _economics(advice: Advice) -> str:
    e, currency = advice.economics, advice.currency
    loads = [
        f"{display(cost, 'money_per_million', currency)} at {percent(load)} load"
        for load, cost in e.cost_per_million_by_load
    ]
    listed = ", ".join(loads[:-1]) + f" and {loads[-1]}" if len(loads) > 1 else "".join(loads)
    api = (
        f", against {display(e.api_per_million, 'money_per_million', currency)} on the API "
        "(blended over the period)"
        if e.api_per_million is not None
        else ""
    )
    return _paragraph(
        f"One replica ({advice.replica}): {display(e.hourly_cost, 'money', currency)} an hour "
        f"on average, {display(advice.capacity, 'tokens')} tokens/s at full load; per 1M "
        f"tokens {listed}{api}. {breakeven(advice)}"
    )


def _sensitivity(advice: Advice) -> str:
    currency = advice.currency
    names = {o.key: o.name for o in advice.outcomes}

    def row(label: str, capacity: float, ceiling: float, costs: dict, cheapest: str) -> list[str]:
        return [
            label,
            display(capacity, "tokens"),
            display(ceiling, "ratio"),
            names.get(cheapest, cheapest),
            display(costs.get(cheapest), "money", currency),
            display(costs[AS_RUN] - costs[cheapest], "money", currency),
        ]

    best: Outcome = advice.cheapest
    rows = [
        row(
            "As given",
            advice.capacity,
            advice.knobs.ceiling,
            {o.key: o.cost for o in advice.outcomes},
            best.key,
        )
    ]
    rows += [
        row(c.label[:1].upper() + c.label[1:], c.capacity, c.ceiling, dict(c.costs), c.cheapest)
        for c in advice.sensitivity
    ]
    columns = (
        Column(("", "Case"), right=False),
        Column(("Capacity", "tokens/s")),
        Column(("", "Ceiling")),
        Column(("", "Cheapest"), right=False, wrap=True),
        Column(("", "Cost")),
        Column(("Saving vs", "as run")),
    )
    return "Sensitivity\n" + grid(columns, rows) + "\n" + _paragraph(sensitivity_verdict(advice))


def render_table(advice: Advice) -> str:
    """The advice for a terminal: the policies, the verdict, the schedules and how sure it is."""
    parts = (
        "What would have been cheaper",
        _policy_table(advice) + f"\n{CHEAPEST}cheapest",
        _paragraph(verdict(advice)),
        _paragraph(assumptions(advice)),
        _schedules(advice),
        _economics(advice),
        _sensitivity(advice),
    )
    return "\n\n".join(parts) + "\n"
