"""A deterministic stand-in for one inference engine, driven by a traffic profile.

The engine integrates the served token rate over simulated time and keeps the
result as ground truth, so tests and demos can compare what the exporter
computes with what was really "served". Page counters are derived from the
same integer totals, which makes them equal to the ground truth by
construction rather than approximately.

An engine may be one side of disaggregated serving (its `role`): two engines
with the same traffic then stand for one pair, and their ground truths add up
to what the pair served, once.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .formats import page_template
from .page import PageState
from .profiles import TrafficProfile

# Request shape used to turn token flow into request counts and gauges.
TOKENS_PER_REQUEST = 1000  # prompt + generation of one finished request
TOKENS_PER_SECOND_PER_REQUEST = 30.0  # per running request
REQUEST_SECONDS = TOKENS_PER_REQUEST / TOKENS_PER_SECOND_PER_REQUEST
"""How long a request runs: engines counting tokens at request end lag by this much."""
KV_TOKENS_PER_REQUEST = 1000  # KV-cache footprint of one running request
STOP_SHARE = 0.8  # finished requests ending on a stop token; the rest hit max_tokens
MAX_STEP_SECONDS = 1.0  # integration step in simulated seconds
GAUGE_JITTER = 0.1  # +-10% noise on running requests, so gauges do not look synthetic
PREEMPTION_BACKLOG_TOKENS = TOKENS_PER_REQUEST
"""Demand beyond capacity per preemption: a full engine preempts a running request to
admit waiting ones, once per request's worth of tokens it cannot serve."""
ROLES = ("combined", "prefill", "decode")
"""`combined`: one engine prefills and decodes every request (the default). In
disaggregated serving a `prefill` engine computes every prompt token, generates the
request's first token and sends the KV cache on; the `decode` engine counts those
prompt tokens as transferred in (prompt, cached, `p2p`) and generates every output
token, the first one again."""


@dataclass(frozen=True)
class _Counts:
    """Integer counters derived from a whole number of served tokens."""

    prompt: int  # all prompt tokens, cached included
    cached: int
    generation: int
    stop: int
    length: int

    def __sub__(self, other: _Counts) -> _Counts:
        return _Counts(
            self.prompt - other.prompt,
            self.cached - other.cached,
            self.generation - other.generation,
            self.stop - other.stop,
            self.length - other.length,
        )


class SimulatedEngine:
    """One engine serving `model`, whose page (in `page_format`) and ground truth follow
    a profile."""

    def __init__(
        self,
        model: str,
        capacity_tokens_per_second: float,
        profile: TrafficProfile,
        *,
        acceleration: float = 1.0,
        prompt_share: float = 0.7,
        cached_share: float = 0.3,
        kv_capacity_tokens: int = 2_097_152,
        block_size: int = 128,
        restart_every: float | None = None,
        restart_at: Iterable[float] = (),
        page_format: str = "v1",
        role: str = "combined",
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        sim_start: float | None = None,
        tokens_in_wall_time: bool = False,
    ) -> None:
        if capacity_tokens_per_second <= 0:
            raise ValueError("capacity_tokens_per_second must be > 0")
        if acceleration <= 0:
            raise ValueError("acceleration must be > 0")
        if not (0.0 <= prompt_share <= 1.0 and 0.0 <= cached_share <= 1.0):
            raise ValueError("prompt_share and cached_share must be in [0, 1]")
        if block_size <= 0 or kv_capacity_tokens < 2 * block_size:
            raise ValueError("kv_capacity_tokens must hold at least two blocks of block_size")
        if restart_every is not None and restart_every <= 0:
            raise ValueError("restart_every must be > 0")
        self.model = model
        self.capacity = float(capacity_tokens_per_second)
        self.profile = profile
        self.acceleration = float(acceleration)
        # Accelerate only the traffic's shape: a day passes in minutes but
        # tokens/s stay real, so cost figures against wall-time spend stay true.
        self._token_scale = 1.0 / self.acceleration if tokens_in_wall_time else 1.0
        self._template = page_template(page_format)
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        if role != "combined" and not self._template.TRANSFERS_KV:
            raise ValueError(f"page format {page_format!r} has no disaggregated serving")
        self.role = role
        self.prompt_share = prompt_share
        # V0 and engines without a prefix-cache count serve every prompt token computed.
        self.cached_share = cached_share if self._template.CACHES_PROMPTS else 0.0
        self.block_size = block_size
        self.num_gpu_blocks = kv_capacity_tokens // block_size
        self.page_format = page_format
        self.seed = seed
        self._clock = clock
        self._wall_start = clock()
        self._wall_now = self._wall_start
        self.sim_start = self._wall_start if sim_start is None else float(sim_start)
        self._sim_time = self.sim_start
        self._served = 0.0  # tokens served since simulator start, across restarts
        self._backlog = 0.0  # tokens demanded beyond capacity, likewise
        self._base_backlog = 0.0  # at the last restart
        self._served_at: deque[tuple[float, float]] = deque([(self.sim_start, 0.0)])
        """(simulated time, tokens served by then), as far back as a request lasts."""
        self._base_total = 0  # lifetime tokens at the last restart
        self.restarts = 0
        self.start_time = self._wall_start  # wall time of the last (re)start
        self._restart_every = restart_every
        self._next_periodic = 1
        self._restart_at = sorted(self.sim_start + x for x in restart_at if x > 0)

    # -- time and rates -------------------------------------------------------

    @property
    def sim_time(self) -> float:
        """Simulated time reached by the last advance()."""
        return self._sim_time

    def demand_rate(self, t: float) -> float:
        """Tokens/s clients ask for at simulated time `t`."""
        return max(0.0, self.profile.rate_fraction(t)) * self.capacity

    def served_rate(self, t: float) -> float:
        """Tokens/s actually served at simulated time `t` (demand capped by capacity)."""
        return min(self.demand_rate(t), self.capacity)

    def _wall_of(self, sim_t: float) -> float:
        return self._wall_start + (sim_t - self.sim_start) / self.acceleration

    def _next_restart(self) -> float | None:
        candidates = list(self._restart_at[:1])
        if self._restart_every is not None:
            candidates.append(self.sim_start + self._next_periodic * self._restart_every)
        return min(candidates) if candidates else None

    def _integrate(self, t0: float, t1: float) -> tuple[float, float]:
        """Tokens served in [t0, t1] and tokens demanded beyond capacity, midpoint rule on
        steps of at most MAX_STEP_SECONDS."""
        steps = max(1, math.ceil((t1 - t0) / MAX_STEP_SECONDS))
        h = (t1 - t0) / steps
        demands = [self.demand_rate(t0 + (i + 0.5) * h) for i in range(steps)]
        served = math.fsum(min(d, self.capacity) for d in demands) * h
        return served, math.fsum(max(d - self.capacity, 0.0) for d in demands) * h

    def advance(self) -> float:
        """Serve tokens up to the clock's now, applying due restarts; return the wall time."""
        wall = self._clock()
        target = self.sim_start + (wall - self._wall_start) * self.acceleration
        while self._sim_time < target:
            due = self._next_restart()
            end = target if due is None or due > target else due
            served, backlog = self._integrate(self._sim_time, end)
            self._served += served * self._token_scale
            self._backlog += backlog * self._token_scale
            self._sim_time = end
            if due is not None and end >= due:
                self._restart(due)
        self._wall_now = max(self._wall_now, wall)
        self._remember_served()
        return self._wall_now

    def _remember_served(self) -> None:
        history = self._served_at
        if self._sim_time > history[-1][0]:
            history.append((self._sim_time, self._served))
        horizon = self._sim_time - REQUEST_SECONDS
        while len(history) > 2 and history[1][0] <= horizon:
            history.popleft()

    def _finished_served(self) -> float:
        """Tokens of the requests finished by now: those served one request's length ago."""
        at = self._sim_time - REQUEST_SECONDS
        history = self._served_at
        if at <= history[0][0]:
            return history[0][1]
        for (t0, s0), (t1, s1) in itertools.pairwise(history):
            if at <= t1:
                return s0 + (s1 - s0) * (at - t0) / (t1 - t0)
        return history[-1][1]

    def _restart(self, at: float) -> None:
        if self._restart_at and self._restart_at[0] <= at:
            self._restart_at.pop(0)
        if self._restart_every is not None:
            while self.sim_start + self._next_periodic * self._restart_every <= at:
                self._next_periodic += 1
        self._base_total = self._total()
        self._base_backlog = self._backlog
        self.restarts += 1
        self.start_time = self._wall_of(at)

    # -- counters -------------------------------------------------------------

    def _total(self) -> int:
        """Whole tokens served since simulator start (the fraction carries over)."""
        return math.floor(self._served + 1e-6)

    def _split(self, total: int) -> _Counts:
        """Split a token total into kinds; every field is non-decreasing in `total`."""
        # The epsilon keeps 0.7 * 360000 from flooring to 251999.
        prompt = min(total, math.floor(total * self.prompt_share + 1e-6))
        cached = min(prompt, math.floor(prompt * self.cached_share + 1e-6))
        requests = total // TOKENS_PER_REQUEST
        stop = math.floor(requests * STOP_SHARE)
        return _Counts(prompt, cached, total - prompt, stop, requests - stop)

    def _preemptions(self, backlog: float) -> int:
        return math.floor(backlog / PREEMPTION_BACKLOG_TOKENS + 1e-6)

    def _shown(self, counts: _Counts) -> tuple[int, int, int, int]:
        """(prompt, cached, transferred, generation) tokens as this engine's role counts
        `counts`: the traffic of the whole pair."""
        if self.role == "prefill":
            return counts.prompt, 0, 0, counts.stop + counts.length
        if self.role == "decode":
            return counts.prompt, counts.prompt, counts.prompt, counts.generation
        return counts.prompt, counts.cached, 0, counts.generation

    def _page_counts(self) -> _Counts:
        return self._split(self._total()) - self._split(self._base_total)

    def _finished_counts(self) -> _Counts:
        """The page's counts of finished requests' tokens (in flight at a restart: lost)."""
        finished = max(self._base_total, math.floor(self._finished_served() + 1e-6))
        return self._split(finished) - self._split(self._base_total)

    def _gauges(self) -> tuple[int, int, int]:
        """Running and waiting requests and used KV blocks at the current simulated time."""
        t = self._sim_time
        jitter = 1.0 + GAUGE_JITTER * (
            2.0 * random.Random(self.seed * 1_000_003 + int(t)).random() - 1.0
        )
        running = round(self.served_rate(t) / TOKENS_PER_SECOND_PER_REQUEST * jitter)
        backlog = self.demand_rate(t) - self.served_rate(t)
        waiting = round(backlog / TOKENS_PER_SECOND_PER_REQUEST)
        used = min(
            math.ceil(running * KV_TOKENS_PER_REQUEST / self.block_size), self.num_gpu_blocks - 1
        )
        return running, waiting, used

    def page_state(self) -> PageState:
        """Advance, then everything the page shows."""
        wall = self.advance()
        counts = self._page_counts()
        prompt, cached, transferred, generation = self._shown(counts)
        finished_prompt, finished_cached, _, finished_generation = self._shown(
            self._finished_counts()
        )
        running, waiting, used = self._gauges()
        served = self.served_rate(self._sim_time)
        preemptions = self._preemptions(self._backlog) - self._preemptions(self._base_backlog)
        return PageState(
            model=self.model,
            prompt_tokens=prompt,
            cached_prompt_tokens=cached,
            generation_tokens=generation,
            finished_prompt_tokens=finished_prompt,
            finished_cached_prompt_tokens=finished_cached,
            finished_generation_tokens=finished_generation,
            requests_stop=counts.stop,
            requests_length=counts.length,
            running=running,
            waiting=waiting,
            used_blocks=used,
            num_gpu_blocks=self.num_gpu_blocks,
            block_size=self.block_size,
            start_time=self.start_time,
            now=wall,
            prompt_throughput=served * self.prompt_share,
            generation_throughput=served * (1.0 - self.prompt_share),
            transferred_prompt_tokens=transferred,
            preemptions=preemptions,
        )

    def render(self) -> bytes:
        """The engine's `/metrics` page as of now."""
        return self._template.render(self.page_state())

    def documents(self) -> dict[str, object]:
        """The JSON documents the engine serves beside its page, by path."""
        return self._template.documents(self.page_state())

    def _served_once(self, lifetime: _Counts) -> dict[str, int]:
        """The tokens this engine adds to what its pair served, each counted once: a
        prefill engine's prompt tokens (its first tokens are generated again), a decode
        engine's output tokens (its prompt tokens came from the prefill engine)."""
        prompt, cached, generation = lifetime.prompt, lifetime.cached, lifetime.generation
        if self.role == "prefill":
            cached, generation = 0, 0
        elif self.role == "decode":
            prompt, cached = 0, 0
        return {
            "prompt": prompt - cached,
            "cached_prompt": cached,
            "generation": generation,
            "total": prompt + generation,
        }

    def ground_truth(self) -> dict[str, Any]:
        """What was really served, next to what the page currently shows (JSON-able).

        `tokens` is what this engine served, counted once across a disaggregated pair;
        `transferred_prompt_tokens` what a decode engine received from its prefill
        engine, and `repeated_generation_tokens` the first token of every request a
        prefill engine generates and its decode engine generates again."""
        state = self.page_state()
        lifetime = self._split(self._total())
        requests = lifetime.stop + lifetime.length
        return {
            "model": self.model,
            "page_format": self.page_format,
            "role": self.role,
            "tokens": self._served_once(lifetime),
            "transferred_prompt_tokens": lifetime.prompt if self.role == "decode" else 0,
            "repeated_generation_tokens": requests if self.role == "prefill" else 0,
            "requests": requests,
            "preemptions": self._preemptions(self._backlog),
            "page": {
                "prompt_tokens_total": state.prompt_tokens,
                "prompt_tokens_cached_total": state.cached_prompt_tokens,
                "prompt_tokens_cached_by_source_p2p": state.transferred_prompt_tokens,
                "generation_tokens_total": state.generation_tokens,
                "request_success_total": state.requests,
                "num_preemptions_total": state.preemptions,
                "num_requests_running": state.running,
                "num_requests_waiting": state.waiting,
                "kv_cache_usage_perc": self._template.kv_usage(state),
                "created": state.start_time,
            },
            "restarts": self.restarts,
            "start_time": self.start_time,
            "capacity_tokens_per_second": self.capacity,
            "demand_tokens_per_second": self.demand_rate(self._sim_time),
            "served_tokens_per_second": self.served_rate(self._sim_time),
            "wall_time": state.now,
            "sim_time": self._sim_time,
        }
