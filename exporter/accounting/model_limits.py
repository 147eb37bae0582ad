"""Bounded model cardinality: which served model names get series of their own.

Every model name an engine page shows costs series (tokens, cost, live gauges)
and memory for as long as its counters live. A broken or hostile page can
name thousands of models, or new ones every cycle, so names get series of
their own first come, up to `limits.models_per_engine` at once on each engine
and `limits.models_per_node` on the node for the life of their counters. The
tokens of any other name are counted under the one series OVERFLOW (priced
like any model without a price of its own), and each such name is counted in
`llmcost_model_limit_exceeded_total` when an engine first shows it, with one
log line per engine. Models the configuration prices by name are always
admitted: the file bounds them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping

from llm_cost_exporter.accounting.gpu_inventory import UNCLAIMED

log = logging.getLogger(__name__)

OVERFLOW = "(overflow)"
"""The one series the tokens of every model beyond the limits are counted under."""

RESERVED = frozenset({OVERFLOW, UNCLAIMED})
"""Names of our own: a served model of that name is folded, never mixed with ours."""

_LOGGED_NAME_CHARS = 80


class ModelLimits:
    """Admits served model names within the limits; counts the names folded."""

    def __init__(self, per_engine: int, per_node: int, always: Collection[str] = ()) -> None:
        """`always`: names admitted whatever the limits (the models priced by name)."""
        self.per_engine = per_engine
        self.per_node = per_node
        self.always = frozenset(always) - RESERVED
        self.exceeded: dict[str, int] = {}
        """Per engine target: names folded into OVERFLOW, each counted when it appears."""
        self._folded: dict[str, frozenset[str]] = {}
        self._logged: set[str] = set()

    def to_state(self) -> dict[str, int]:
        """The exported counts; which names were folded is not kept (a restart counts
        the names still folded once more)."""
        return dict(self.exceeded)

    def restore(self, exceeded: Mapping[str, int]) -> None:
        self.exceeded = dict(exceeded)

    def forget(self, target: str) -> None:
        """Drop what is known of an engine target that is gone (discovery's pods come and go)."""
        self.exceeded.pop(target, None)
        self._folded.pop(target, None)
        self._logged.discard(target)

    def names(
        self, target: str, served: Iterable[str], node_models: Collection[str]
    ) -> dict[str, str]:
        """The exported name of each model `target` serves now: its own, or OVERFLOW.

        `node_models` are the names that already have counters on the node: they
        keep their series, as long as the engine has room for them; new names
        then take the room left under both limits, in page order.
        """
        distinct = list(dict.fromkeys(served))
        exported = {name: name for name in distinct if name in self.always}
        uncounted = RESERVED | self.always
        on_node = sum(1 for name in node_models if name not in uncounted)
        admitted = 0
        for known in (True, False):
            for name in distinct:
                if name in exported or name in RESERVED or (name in node_models) != known:
                    continue
                if admitted >= self.per_engine or (not known and on_node >= self.per_node):
                    continue
                exported[name] = name
                admitted += 1
                on_node += not known
        folded = frozenset(name for name in distinct if name not in exported)
        self._count(target, folded)
        return {name: exported.get(name, OVERFLOW) for name in distinct}

    def _count(self, target: str, folded: frozenset[str]) -> None:
        new = folded - self._folded.get(target, frozenset())
        self._folded[target] = folded
        self.exceeded[target] = self.exceeded.get(target, 0) + len(new)
        if new and target not in self._logged:
            self._logged.add(target)
            example = min(new)[:_LOGGED_NAME_CHARS]
            log.error(
                "engine %s serves more models than limits.models_per_engine (%d) or "
                "limits.models_per_node (%d) allow: %d name(s) such as %r are counted as "
                "model=%r (llmcost_model_limit_exceeded_total); logged once",
                target,
                self.per_engine,
                self.per_node,
                len(new),
                example,
                OVERFLOW,
            )
