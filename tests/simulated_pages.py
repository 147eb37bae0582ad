"""What the tests of the simulator's page formats share: a clock they move by hand,
a page's shape, and the templates the formats copy."""

from __future__ import annotations

from datetime import datetime, timezone
from importlib import resources

from prometheus_client.parser import text_string_to_metric_families

from llm_cost_exporter.tools.simulator.formats import PAGE_FORMATS

MONDAY = datetime(2025, 6, 2, tzinfo=timezone.utc).timestamp()


class SimClock:
    """Wall time for a SimulatedEngine, moved by the test (`clock.t += 60`)."""

    def __init__(self, t: float = MONDAY) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def page_shape(text: str) -> dict[tuple[str, str], tuple[str, frozenset[frozenset[str]]]]:
    """(family, type) -> (HELP, the label-name sets its samples use): what a simulated
    page must share with the engine's own, whatever its values."""
    return {
        (f.name, f.type): (f.documentation, frozenset(frozenset(s.labels) for s in f.samples))
        for f in text_string_to_metric_families(text)
    }


def template_text(page_format: str) -> str:
    """The page a format copies, as packaged."""
    path = (
        resources.files("llm_cost_exporter.tools.simulator")
        / "templates"
        / PAGE_FORMATS[page_format].TEMPLATE
    )
    return path.read_text(encoding="utf-8")
