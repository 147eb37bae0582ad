"""Token accounting: engine counters in, restart-proof per-model totals out.

An engine restart zeroes its counters. Prometheus copes with that for its own
series, but we sum several engines into one per-model counter, so we take
increases ourselves: a counter that went down (or whose `_created` time
changed) restarted, and its new value is the whole increase since then. Each
increase is split into the exported token kinds and priced at the model's API
price; a model without a price is flagged once, loudly, and never priced at 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from llm_cost_exporter.accounting import costmodel
from llm_cost_exporter.accounting.costmodel import TOKEN_KINDS, ApiPrices
from llm_cost_exporter.accounting.counters import RawCounter
from llm_cost_exporter.collectors.readings import EngineReading

log = logging.getLogger(__name__)


@dataclass
class EngineCounters:
    """Raw counters of one engine process, with its restart detection."""

    started_at: float | None = None
    counters: dict[str, RawCounter] = field(default_factory=dict)

    def increases(
        self, values: dict[str, float], started_at: float | None, count_from_zero: bool = False
    ) -> tuple[dict[str, float], bool]:
        """Return per-counter increases and whether the engine restarted.

        `count_from_zero` makes a first observation count in full: used when
        the engine is known to have started after we began watching it.
        """
        first_seen = not self.counters
        restarted = (
            not first_seen
            and started_at is not None
            and self.started_at is not None
            and started_at != self.started_at
        )
        if not first_seen and not restarted:
            restarted = any(
                name in self.counters
                and self.counters[name].last is not None
                and value < self.counters[name].last
                for name, value in values.items()
            )
        self.started_at = started_at
        result: dict[str, float] = {}
        for name, value in values.items():
            counter = self.counters.setdefault(name, RawCounter())
            if first_seen and count_from_zero:
                counter.last = 0.0
            result[name] = counter.increase(value, restarted)
        return result, restarted


def split_prompt_tokens(
    prompt_total: float, cached_total: float, previous_uncached: float, previous_cached: float
) -> tuple[float, float]:
    """Split accumulated prompt tokens into (uncached, cached), both monotonic.

    Engines count cache hits and prompt tokens at slightly different moments,
    so the cached count may briefly run ahead; neither exported kind may ever
    go down, so each is held at its previous value until the other catches up.
    """
    cached = max(previous_cached, min(cached_total, prompt_total))
    uncached = max(previous_uncached, prompt_total - cached)
    return uncached, cached


@dataclass
class ModelTotals:
    """Accumulated, restart-proof totals for one served model."""

    tokens: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0.0))
    prompt_all: float = 0.0
    prompt_cached: float = 0.0
    api_equivalent: float = 0.0

    @property
    def tokens_total(self) -> float:
        return sum(self.tokens.values())


class TokenLedger:
    """Every served model's tokens by kind and their API-equivalent cost."""

    def __init__(
        self,
        model_prices: Mapping[str, ApiPrices],
        default_price: ApiPrices | None,
        started_wall: float,
    ) -> None:
        """`started_wall` is when we began watching: an engine whose counters were
        created after it is counted from zero at first sight."""
        self.model_prices = dict(model_prices)
        self.default_price = default_price
        self.started_wall = started_wall
        self.models: dict[str, ModelTotals] = {}
        self.unpriced: set[str] = set()
        self._engines: dict[tuple[str, str, str], EngineCounters] = {}

    def price_for(self, model: str) -> ApiPrices | None:
        """The model's API price: its own, else the default, else None."""
        return self.model_prices.get(model, self.default_price)

    def _price_or_flag(self, model: str) -> ApiPrices | None:
        price = self.price_for(model)
        if price is None and model not in self.unpriced:
            self.unpriced.add(model)
            log.error(
                "no API price for served model %r: add it under api_prices.models "
                "(or set api_prices.default); its API-equivalent cost is not counted",
                model,
            )
        return price

    def add(self, target: str, reading: EngineReading, model: str | None = None) -> bool:
        """Count one reading of the engine at `target`; True if that engine restarted.

        `model` is the series its tokens go to when not the reading's own (see
        model_limits); its raw counters stay apart under the reading's own name.
        """
        model = model or reading.model
        key = (target, reading.engine, reading.model)
        engine = self._engines.setdefault(key, EngineCounters())
        started_after_us = reading.started_at is not None and reading.started_at > self.started_wall
        increases, restarted = engine.increases(
            {
                "prompt": reading.prompt_tokens,
                "cached": reading.cached_prompt_tokens,
                "generation": reading.generation_tokens,
            },
            reading.started_at,
            count_from_zero=started_after_us,
        )
        totals = self.models.setdefault(model, ModelTotals())
        totals.prompt_all += increases["prompt"]
        totals.prompt_cached += increases["cached"]
        uncached, cached = split_prompt_tokens(
            totals.prompt_all,
            totals.prompt_cached,
            totals.tokens["prompt"],
            totals.tokens["cached_prompt"],
        )
        added = {
            "prompt": uncached - totals.tokens["prompt"],
            "cached_prompt": cached - totals.tokens["cached_prompt"],
            "generation": increases["generation"],
        }
        for kind, count in added.items():
            totals.tokens[kind] += count
        price = self._price_or_flag(model)
        if price is not None:
            totals.api_equivalent += costmodel.api_equivalent_cost(added, price)
        return restarted

    def forget(self, target: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Drop the raw counters of `target`'s (rank, model) `pairs`: folded names that
        left its page, so a page naming new models every cycle costs no memory."""
        for engine, model in pairs:
            self._engines.pop((target, engine, model), None)

    @property
    def tokens_total(self) -> float:
        return sum(m.tokens_total for m in self.models.values())

    @property
    def api_equivalent_total(self) -> float:
        return sum(m.api_equivalent for m in self.models.values())

    @property
    def unpriced_tokens(self) -> float:
        """Tokens of models without an API price: they withhold the node's comparisons."""
        return sum(self.models[m].tokens_total for m in self.unpriced)
