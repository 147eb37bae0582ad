"""The building blocks every HTML page of the review is made of: styles, marked cells, tables.

The review and the planner's standalone page share them, so a figure looks and
is marked the same wherever it is shown: ``data-figure`` names the figure as
``<section>.<item>.<measure>`` and ``data-value`` holds the value rounded by
:func:`exporter.report.units.rounded`, the value the CSV and JSON carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from llm_cost_exporter.tools.report.measures import unit_of
from llm_cost_exporter.tools.report.svg import text
from llm_cost_exporter.tools.report.units import Unit, display, display_alone, fixed, rounded

CSS = """
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --strong-line: #d1d5db;
  --bad: #b91c1c; --good: #047857; }
* { box-sizing: border-box; }
html { font-size: 14px; background: #f3f4f6; }
body { margin: 0; color: var(--ink); font-size: 1rem; line-height: 1.5;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1200px; margin: 24px auto; padding: 2.3rem 2.8rem 2.8rem; background: #fff;
  border: 1px solid var(--line); border-radius: 8px; }
h1 { font-size: 1.85rem; line-height: 1.25; margin: 0 0 0.3rem; }
h2 { font-size: 1.3rem; margin: 2.6rem 0 0.85rem; padding-bottom: 0.4rem;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 1.07rem; margin: 1.4rem 0 0.4rem; }
p { margin: 0.4rem 0 0.7rem; }
.period { font-size: 1.15rem; color: var(--muted); margin: 0 0 1.3rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1.3rem; margin: 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9rem;
  background: #f3f4f6; padding: 0.05rem 0.3rem; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; margin: 0.4rem 0 1rem;
  font-variant-numeric: tabular-nums; }
th, td { padding: 0.45rem 0.7rem; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
thead th { font-size: 0.85rem; font-weight: 600; color: var(--muted);
  border-bottom: 2px solid var(--strong-line); vertical-align: bottom; }
thead th.num { white-space: normal; }
tbody th { font-weight: 500; }
.num { text-align: right; white-space: nowrap; }
.scroll { overflow-x: auto; }
td.when { min-width: 5.5em; }
table.compact th, table.compact td { padding: 0.2rem 0.5rem; font-size: 0.9rem; }
table.summary { break-inside: avoid; page-break-inside: avoid; }
table.summary td.num { font-weight: 600; font-size: 1.07rem; }
table.summary td.note, .note { color: var(--muted); font-size: 0.93rem; }
tr.edge td, tr.edge th { font-weight: 600; background: #f9fafb; }
.box { border: 1px solid var(--line); border-radius: 8px; padding: 0.3rem 1.4rem 0.85rem;
  margin: 1.4rem 0; }
.box h2 { border-bottom: 0; margin-top: 0.85rem; }
.box.warn { border: 2px solid #f59e0b; background: #fffbeb; }
.box.warn table { background: #fff; }
.lead { font-size: 1.15rem; }
.bad { color: var(--bad); }
.good { color: var(--good); }
.split { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.4fr); gap: 2rem;
  align-items: start; }
figure { margin: 0.6rem 0 1.1rem; }
figcaption { color: var(--muted); font-size: 0.93rem; margin-top: 0.3rem; }
svg.chart { display: block; max-width: 100%; height: auto; }
tr.best th, tr.best td, td.best { background: #ecfdf5; }
tr.best th, td.best { font-weight: 700; }
.tag { display: inline-block; margin-left: 0.4rem; padding: 0 0.4rem; border-radius: 3px;
  font-size: 0.8rem; font-weight: 600; color: #fff; background: var(--good); }
.what { display: block; color: var(--muted); font-size: 0.85rem; font-weight: 400;
  min-width: 16rem; }
ul.findings li { margin: 0.3rem 0; }
dl.headline { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 1rem;
  margin: 0.6rem 0 0.9rem; }
dl.headline div { border-left: 3px solid var(--strong-line); padding: 0.1rem 0 0.1rem 0.8rem; }
dl.headline dt { color: var(--muted); font-size: 0.93rem; }
dl.headline dd { margin: 0; font-size: 1.6rem; font-weight: 600;
  font-variant-numeric: tabular-nums; }
footer { margin-top: 2.6rem; color: var(--muted); font-size: 0.85rem; }
@media screen and (max-width: 820px) {
  main { padding: 1.4rem; margin: 0; border: 0; border-radius: 0; }
  .split, .headline { grid-template-columns: 1fr; }
}
@page { size: A4; margin: 14mm; }
@media print {
  html { font-size: 10.5px; background: #fff; }
  main { max-width: none; margin: 0; padding: 0; border: 0; border-radius: 0; }
  h2 { break-after: avoid; page-break-after: avoid; }
  figure, .box, tr { break-inside: avoid; page-break-inside: avoid; }
  thead { display: table-header-group; }
  .scroll { overflow: visible; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def data_value(value: float | None, unit: Unit) -> str:
    """The rounded value in fixed notation: what ``rounded`` gives, without exponents."""
    return fixed(value, unit)


def mark(section: str, item: str, measure: str, value: float | None) -> str:
    """The attributes that let a machine find a figure and its rounded value."""
    key = f"{section}.{item}.{measure}"
    return f'data-figure="{text(key)}" data-value="{data_value(value, unit_of(measure))}"'


def marked_cell(
    section: str,
    item: str,
    measure: str,
    value: float | None,
    currency: str,
    *,
    shown: str | None = None,
    tag: str = "td",
    best: bool = False,
) -> str:
    """A marked figure; ``shown`` replaces the displayed text (already escaped).

    ``best`` highlights the cell, such as the cheapest of a row.
    """
    content = shown if shown is not None else text(display_alone(value, unit_of(measure), currency))
    klass = "num best" if best else "num"
    return f'<{tag} class="{klass}" {mark(section, item, measure, value)}>{content}</{tag}>'


def plain_cell(value: float | None, unit: Unit, currency: str) -> str:
    """An unmarked figure cell."""
    return f'<td class="num">{text(display_alone(value, unit, currency))}</td>'


def signed(value: float | None, unit: Unit, currency: str) -> str:
    """A difference, with an explicit plus so the direction is never guessed."""
    shown = display(value, unit, currency)
    r = rounded(value, unit)
    return f"+{shown}" if r is not None and r > 0 else shown


def html_table(head: Sequence[tuple[str, bool]], rows: Iterable[str], cls: str = "") -> str:
    """A table with a header; ``head`` is (label, numeric) per column."""
    cells = "".join(
        f'<th scope="col"{" class=num" if numeric else ""}>{text(label)}</th>'
        for label, numeric in head
    )
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def scrolling(table: str) -> str:
    """Wide tables scroll on a narrow screen instead of pushing the page sideways."""
    return f'<div class="scroll">{table}</div>'


def html_section(ident: str, title: str, body: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<section id="{ident}"{klass}><h2>{text(title)}</h2>{body}</section>'


def html_figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{text(caption)}</figcaption></figure>"


def document(title: str, body: str) -> str:
    """A complete HTML5 document with the shared styles and nothing outside the file."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
