"""Token accounting: engine counters in, restart-proof per-model totals out.

An engine restart zeroes its counters. Prometheus copes with that for its own
series, but we sum several engines into one per-model counter, so we take
increases ourselves, and a drop counts as a restart only with evidence (see
EngineCounters). Each increase is split into the exported token kinds and
priced at the model's API price; a model without a price is flagged once,
loudly, and never priced at 0.

Beside the tokens, an engine's other counters (requests, preemptions, prompt
tokens whose KV was transferred in) are counted per model the same way, where
the engine gives them. Prompt tokens transferred from another engine (the
decode side of disaggregated serving) were computed on the prefill engine and
are counted, and priced, there: they are taken out of this node's prompt and
cached prompt tokens (see ModelTotals).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llm_cost_exporter.accounting import costmodel, persisted
from llm_cost_exporter.accounting.costmodel import TOKEN_KINDS, ApiPrices
from llm_cost_exporter.accounting.counters import is_restart_drop
from llm_cost_exporter.collectors.readings import EngineReading

log = logging.getLogger(__name__)


@dataclass
class CounterLife:
    """One process lifetime of an engine: its `_created` time and the highest values seen
    of its token counters (`high`, which tell a restart) and of the counters that follow
    their verdict (`follow`)."""

    created: float | None
    high: dict[str, float]
    follow: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> float:
        return sum(self.high.values())

    def advance(self, values: Mapping[str, float]) -> tuple[dict[str, float], bool]:
        """Increases above the highest values, and whether a counter dipped below its own."""
        increases: dict[str, float] = {}
        dipped = False
        for name, value in values.items():
            high = self.high.get(name)
            if high is None or value >= high:
                increases[name] = 0.0 if high is None else value - high
                self.high[name] = value
            else:
                increases[name] = 0.0
                dipped = True
        return increases, dipped

    def follow_up(self, values: Mapping[str, float]) -> dict[str, float]:
        """Increases of the following counters above their highest values. One seen for
        the first time in this life is a baseline; one that stepped back adds nothing and
        says nothing about a restart (its highest value is kept)."""
        increases: dict[str, float] = {}
        for name, value in values.items():
            high = self.follow.get(name)
            increases[name] = 0.0 if high is None else max(value - high, 0.0)
            self.follow[name] = value if high is None else max(value, high)
        return increases

    def to_state(self) -> dict[str, Any]:
        return {"created": self.created, "high": dict(self.high), "follow": dict(self.follow)}

    @classmethod
    def from_state(cls, data: Any) -> CounterLife:
        data = persisted.mapping(data)
        created = persisted.optional_amount(data.get("created"), "created")
        follow = persisted.amounts(data.get("follow", {}), "follow")  # absent in older files
        return cls(created, persisted.amounts(data.get("high"), "high"), follow)


@dataclass(frozen=True)
class Observation:
    """What one reading of an engine added, and what it said about the engine."""

    increases: dict[str, float]
    restarted: bool = False
    anomaly: bool = False
    """A counter stepped back, or the page switched `_created`, without evidence of a
    restart: ignored, and counted in llmcost_engine_dips_total."""


ABSENT_MEMORY = 1024
"""Forgotten targets remembered (the oldest dropped first): engine pods come and go."""

_UNTRUSTED = CounterLife(None, {})
"""A `_created` older than the newest seen: not a restart, and not a life we know."""


@dataclass
class EngineCounters:
    """The raw counters of one engine (rank, model), with restart detection that needs evidence.

    A restart is counted only on evidence: a `_created` newer than any seen and
    later than our previous reading (the process began after we last read it,
    so all it counted is new), or, without that, counters summed below
    RESTART_DROP_RATIO of the highest sum seen. A smaller dip is ignored (the
    highest values are kept) and reported as an anomaly; a `_created` that goes
    back to an unknown earlier value is ignored the same way.

    The life before the last restart is kept too: pages that alternate between
    two processes (two replicas behind one URL, a page replayed late) are
    matched to the life they continue, by `_created` where the page has it, else
    by value (the highest life the values do not fall below), so alternation
    never counts the same tokens twice.
    """

    life: CounterLife | None = None
    previous: CounterLife | None = None
    read_at: float | None = None
    """Wall time of the last reading (None where the caller keeps no clock)."""

    def observe(
        self,
        values: Mapping[str, float],
        created: float | None,
        now: float | None = None,
        count_from_zero: bool = False,
        following: Mapping[str, float] | None = None,
    ) -> Observation:
        """Count one reading. `count_from_zero` makes a first reading count in full:
        used when the engine is known to have started after we began watching it.

        `following` are counters (requests, ...) counted in the life `values` decide
        on, but which never decide anything themselves: a restart, a dip or a
        switch of lives is told by `values` alone. Their increases are in the
        observation beside those of `values` (their names must differ)."""
        values, following = dict(values), dict(following or {})
        everything = {**values, **following}
        zero = dict.fromkeys(everything, 0.0)
        if self.life is None:
            self.life = CounterLife(created, values, following)
            self.read_at = now
            return Observation(everything if count_from_zero else zero)
        life = self._life_of(values, created)
        self.read_at = now if now is not None else self.read_at
        if life is None:
            self.previous, self.life = self.life, CounterLife(created, values, following)
            return Observation(everything, restarted=True)
        if life is _UNTRUSTED:
            return Observation(zero, anomaly=True)
        switched = life is self.previous
        if switched:
            self.previous, self.life = self.life, life
        if created is not None and (life.created is None or created > life.created):
            life.created = created
        increases, dipped = life.advance(values)
        increases.update(life.follow_up(following))
        self._forget_merged_lives()
        return Observation(increases, anomaly=dipped or switched)

    def _life_of(self, values: Mapping[str, float], created: float | None) -> CounterLife | None:
        """The life this reading continues; None for a restart, _UNTRUSTED to ignore it."""
        life, previous = self.life, self.previous
        assert life is not None
        if created is not None and life.created is not None:
            if created == life.created:
                return life
            if previous is not None and created == previous.created:
                return previous
            newest = max(c for c in (life.created, previous and previous.created) if c is not None)
            if created < newest:
                return _UNTRUSTED
            if self.read_at is not None and created > self.read_at:
                return None
        size = sum(values.values())
        lives = [x for x in (life, previous) if x is not None]
        continued = [x for x in lives if x.size <= size]
        if continued:
            return max(continued, key=lambda x: x.size)
        dipped = [x for x in lives if not is_restart_drop(size, x.size)]
        return min(dipped, key=lambda x: x.size) if dipped else None

    def _forget_merged_lives(self) -> None:
        """Drop the previous life (without `_created`) once the current one has grown to
        meet it: a reading between the two is then a dip of either, never a restart."""
        life, previous = self.life, self.previous
        if previous is None or previous.created is not None or life is None:
            return
        low, high = sorted((life.size, previous.size))
        if not is_restart_drop(low, high):
            self.previous = None

    def to_state(self) -> dict[str, Any]:
        return {
            "read_at": self.read_at,
            "lives": [x.to_state() for x in (self.life, self.previous) if x is not None],
        }

    @classmethod
    def from_state(cls, data: Any) -> EngineCounters:
        lives = [CounterLife.from_state(x) for x in persisted.items(data, "lives")]
        if not 1 <= len(lives) <= 2:
            raise persisted.StateError("lives: expected one or two")
        read_at = persisted.optional_amount(persisted.mapping(data).get("read_at"), "read_at")
        return cls(lives[0], lives[1] if len(lives) > 1 else None, read_at)


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


COUNTS = ("requests", "preemptions", "transferred_prompt")
"""The counters counted per model beside the tokens, where the engines give them:
requests finished, requests preempted (recomputed later: work done twice), and
prompt tokens whose KV cache another engine computed and sent."""


def engine_counts(reading: EngineReading) -> dict[str, float]:
    """The reading's counters of COUNTS that its engine gives."""
    values = {
        "requests": reading.requests,
        "preemptions": reading.preemptions,
        "transferred_prompt": reading.transferred_prompt_tokens,
    }
    return {name: value for name, value in values.items() if value is not None}


@dataclass
class ModelTotals:
    """Accumulated, restart-proof totals for one served model.

    `prompt_all` and `prompt_cached` accumulate the engines' prompt counters as
    they count them, transferred tokens included; `counts` accumulates COUNTS,
    holding only those some engine of the model gave. The exported prompt kinds
    are the accumulated prompt and cached tokens less the accumulated transferred
    ones, split monotonically (split_prompt_tokens): an engine that counts a
    transfer before the prompt tokens (vLLM: at admission, before the prefill)
    holds them back until its prompt count catches up, never steps them back.
    """

    tokens: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0.0))
    prompt_all: float = 0.0
    prompt_cached: float = 0.0
    api_equivalent: float = 0.0
    counts: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_total(self) -> float:
        return sum(self.tokens.values())

    def to_state(self) -> dict[str, Any]:
        return {
            "tokens": dict(self.tokens),
            "prompt_all": self.prompt_all,
            "prompt_cached": self.prompt_cached,
            "api_equivalent": self.api_equivalent,
            "counts": dict(self.counts),
        }

    @classmethod
    def from_state(cls, data: Any) -> ModelTotals:
        data = persisted.mapping(data)
        tokens = persisted.amounts(data.get("tokens"), "tokens")
        if set(tokens) != set(TOKEN_KINDS):
            raise persisted.StateError(f"tokens: expected the kinds {', '.join(TOKEN_KINDS)}")
        counts = persisted.amounts(data.get("counts", {}), "counts")  # absent in older files
        unknown = set(counts) - set(COUNTS)
        if unknown:
            raise persisted.StateError(f"counts: unknown {', '.join(sorted(unknown))}")
        return cls(
            tokens={kind: tokens[kind] for kind in TOKEN_KINDS},
            prompt_all=persisted.amount(data.get("prompt_all"), "prompt_all"),
            prompt_cached=persisted.amount(data.get("prompt_cached"), "prompt_cached"),
            api_equivalent=persisted.amount(data.get("api_equivalent"), "api_equivalent"),
            counts=counts,
        )


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
        self._absent_since: dict[str, float] = {}
        """Targets forgotten, by when: a process that started before is not new to us."""

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

    def add(
        self,
        target: str,
        reading: EngineReading,
        model: str | None = None,
        now: float | None = None,
        started_hint: float | None = None,
    ) -> Observation:
        """Count one reading of the engine at `target`, read at wall time `now`.

        `model` is the series its tokens go to when not the reading's own (see
        model_limits); its raw counters stay apart under the reading's own name.
        `started_hint` is when the engine started where its page does not say (an
        engine pod's container start): it decides only whether a first reading counts
        in full.
        """
        model = model or reading.model
        key = (target, reading.engine, reading.model)
        engine = self._engines.setdefault(key, EngineCounters())
        started = reading.started_at if reading.started_at is not None else started_hint
        watching_since = max(self.started_wall, self._absent_since.get(target, self.started_wall))
        started_after_us = started is not None and started > watching_since
        counts = engine_counts(reading)
        observation = engine.observe(
            {
                "prompt": reading.prompt_tokens,
                "cached": reading.cached_prompt_tokens,
                "generation": reading.generation_tokens,
            },
            reading.started_at,
            now,
            count_from_zero=started_after_us,
            following=counts,
        )
        increases = observation.increases
        totals = self.models.setdefault(model, ModelTotals())
        totals.prompt_all += increases["prompt"]
        totals.prompt_cached += increases["cached"]
        for name in counts:
            totals.counts[name] = totals.counts.get(name, 0.0) + increases[name]
        transferred = totals.counts.get("transferred_prompt", 0.0)
        uncached, cached = split_prompt_tokens(
            totals.prompt_all - transferred,
            totals.prompt_cached - transferred,
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
        return observation

    def forget(self, target: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Drop the raw counters of `target`'s (rank, model) `pairs`: folded names that
        left its page, so a page naming new models every cycle costs no memory."""
        for engine, model in pairs:
            self._engines.pop((target, engine, model), None)

    def targets(self) -> set[str]:
        """The engine targets whose raw counters are kept."""
        return {target for target, _, _ in self._engines}

    def forget_target(self, target: str, now: float) -> None:
        """Drop every raw counter of `target`, gone at wall time `now` (its tokens stay
        counted in the per-model totals). Should it come back, a process that started
        before `now` is baselined again and a later one counted in full."""
        self.forget(target, [(rank, model) for t, rank, model in self._engines if t == target])
        self._absent_since.pop(target, None)
        self._absent_since[target] = now
        while len(self._absent_since) > ABSENT_MEMORY:
            del self._absent_since[next(iter(self._absent_since))]

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

    def to_state(self) -> dict[str, Any]:
        return {
            "watching_since": self.started_wall,
            "models": {name: totals.to_state() for name, totals in self.models.items()},
            "engines": [
                {"target": target, "engine": rank, "model": model, **counters.to_state()}
                for (target, rank, model), counters in self._engines.items()
            ],
        }

    def restore(self, data: Any) -> None:
        """Resume from `to_state`'s output; nothing changes if it is malformed (StateError)."""
        models = {
            persisted.text(name, "models"): ModelTotals.from_state(totals)
            for name, totals in persisted.section(data, "models").items()
        }
        engines = {
            (
                persisted.text(entry.get("target"), "target"),
                persisted.text(entry.get("engine"), "engine"),
                persisted.text(entry.get("model"), "model"),
            ): EngineCounters.from_state(entry)
            for entry in persisted.items(data, "engines")
        }
        since = persisted.amount(persisted.mapping(data).get("watching_since"), "watching_since")
        self.models, self._engines = models, engines
        self.started_wall = min(since, self.started_wall)
        self.unpriced = set()
        for model in models:
            self._price_or_flag(model)
