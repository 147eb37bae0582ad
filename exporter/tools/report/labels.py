"""The words a person reads for the identifiers the review's data is keyed by.

Prometheus labels, the CSV and the JSON name token kinds, cost components and
events by identifier (``cached_prompt``, ``gpu``, ``exporter_restart``): keys a
machine matches on. The HTML pages and their charts show these words instead,
all taken from here, so one identifier reads the same wherever it is shown.
"""

from __future__ import annotations

TOKEN_KINDS: dict[str, str] = {
    "prompt": "Prompt",
    "cached_prompt": "Cached prompt",
    "generation": "Generation",
}
COST_COMPONENTS: dict[str, str] = {
    "gpu": "GPU",
    "energy": "Energy",
    "node_extra": "Other node costs",
    "overhead": "Overhead",
    "fixed": "Fixed costs",
}
EVENTS: dict[str, str] = {
    "exporter_restart": "Exporter restart",
    "engine_restart": "Engine restart",
}
LABELS: dict[str, str] = {**TOKEN_KINDS, **COST_COMPONENTS, **EVENTS}


def label(identifier: str) -> str:
    """The words for an identifier; one not listed still reads as words, never as a key."""
    known = LABELS.get(identifier)
    if known is not None:
        return known
    words = " ".join(identifier.replace("_", " ").split())
    return words[:1].upper() + words[1:] if words else identifier
