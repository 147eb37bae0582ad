"""The configuration reference: a Markdown table of every field, rendered from the
schema, and the README block that holds it (kept equal by a test)."""

from __future__ import annotations

from llm_cost_exporter.config.schema import Row, Section
from llm_cost_exporter.config.settings import CONFIG

TABLE_START = "<!-- config-table:start -->"
TABLE_END = "<!-- config-table:end -->"


def reference_rows(schema: Section = CONFIG) -> list[Row]:
    return list(schema.rows(""))


def render_table(schema: Section = CONFIG) -> str:
    """Field path, type, default and description of every field, one row each."""
    lines = ["| Field | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for row in reference_rows(schema):
        cells = (f"`{row.path}`", row.type_name, row.default, row.doc)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _block(text: str) -> tuple[int, int]:
    """Where the table goes in `text`: between the marker lines."""
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"no {TABLE_START} ... {TABLE_END} block")
    return start + len(TABLE_START) + 1, end


def table_in(text: str) -> str:
    """The table currently between the markers of a README."""
    start, end = _block(text)
    return text[start:end]


def with_table(text: str, schema: Section = CONFIG) -> str:
    """`text` with the table between its markers rendered afresh."""
    start, end = _block(text)
    return text[:start] + render_table(schema) + text[end:]
