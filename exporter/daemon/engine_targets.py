"""The engines to read each cycle when pods are discovered: those of the configuration
plus those the pod watch finds, each read once.

The collection loop asks at the start of every cycle; what changed reaches the node
state then (targets gone are forgotten, new ones are read from that cycle on), so the
loop stays the state's only writer, as does the watch's health, recorded like a
collector's: `llmcost_collector_up{collector="kubernetes", target=<API server>}`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from llm_cost_exporter.accounting.node import EnginePod, NodeState
from llm_cost_exporter.collectors.base import EngineCollector
from llm_cost_exporter.config.urls import page_key

if TYPE_CHECKING:
    from llm_cost_exporter.discovery.kubernetes import PodWatch

SOURCE = "kubernetes"
"""The `collector` label of the pod watch's health series."""


class DiscoveredEngines:
    """The configured engines and the discovered ones (an EngineTargets of the loop)."""

    def __init__(
        self,
        static: Sequence[EngineCollector],
        watch: PodWatch,
        make: Callable[[str, str], EngineCollector],
    ) -> None:
        """`make(engine_type, url)` builds the collector of a discovered engine."""
        self.static = list(static)
        self.watch = watch
        self._make = make
        self._static_at = {page_key(c.target): c for c in self.static}
        self._discovered: dict[str, EngineCollector] = {}

    def _record_health(self, state: NodeState) -> None:
        health, target = self.watch.health, self.watch.target
        for reason, message in health.drain():
            state.record_failure(
                SOURCE, target, reason, message, health.duration_seconds, engine=False
            )
        if health.up:
            state.record_source_up(SOURCE, target, health.duration_seconds)

    def refresh(self, state: NodeState) -> Sequence[EngineCollector]:
        self._record_health(state)
        collectors = list(self.static)
        pods: dict[str, EnginePod] = {}
        discovered: dict[str, EngineCollector] = {}
        for url, target in self.watch.targets.items():
            pod = EnginePod(target.namespace, target.pod, target.started_at)
            static = self._static_at.get(page_key(url))
            if static is not None:  # configured too: read once, as configured
                pods[static.target] = pod
                continue
            collector = self._discovered.get(url)
            if collector is None or collector.name != target.engine_type:
                collector = self._make(target.engine_type, url)
            discovered[url] = collector
            collectors.append(collector)
            pods[url] = pod
        self._discovered = discovered
        live = {(c.name, c.target) for c in collectors}
        state.track_engines(live, pods, complete=self.watch.synced)
        state.discovery_skipped = dict(self.watch.skipped)
        return collectors
