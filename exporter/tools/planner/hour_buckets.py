"""Rows of a traffic file summed into the clock hours of one time zone.

A team's export can hold millions of rows, so nothing is kept per row: each
row adds to its hour's three token kinds and billed money, and to its
model's total. The hours that come out are every clock hour from the first to
the last (or over the period asked for): an hour without a row is a real hour
with no traffic, and a kept replica costs as much in it as in a busy one.
"""

from __future__ import annotations

import contextlib
import math
from datetime import datetime, timedelta, tzinfo

from llm_cost_exporter.accounting.costmodel import (
    SECONDS_PER_HOUR,
    TOKEN_KINDS,
    ApiPrices,
    api_equivalent_cost,
)
from llm_cost_exporter.tools.planner.advise import PlanError
from llm_cost_exporter.tools.planner.model import Hour

HOUR = int(SECONDS_PER_HOUR)
MAX_DAYS = 400  # a year and some: a stray timestamp must not make millions of empty hours
MAX_HOURS = MAX_DAYS * 24
# Zone offsets in use are whole quarter hours: within one quarter hour of UTC the
# local hour cannot change, so a row's hour is looked up once per quarter hour.
QUARTER = 900


def tokens(value: object, where: str, column: str) -> float:
    """A token count: a finite number, 0 or more (a JSON number or its text)."""
    number = _number(value)
    if not 0 <= number < math.inf:
        raise PlanError(f"{where}: {column}: expected a number of tokens, got {value!r}")
    return number


def money(value: object, where: str, column: str) -> float:
    """An amount billed: a finite number, 0 or more."""
    number = _number(value)
    if not 0 <= number < math.inf:
        raise PlanError(f"{where}: {column}: expected an amount of money, got {value!r}")
    return number


def _number(value: object) -> float:
    """The number, or NaN for anything that is not one (JSON's true and false are not)."""
    if value is True or value is False:
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return math.nan


def instant(value: object, where: str, column: str, naive: tzinfo) -> datetime:
    """An ISO 8601 timestamp, aware; one without an offset is read in ``naive``."""
    when = None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(value.strip())
    if when is None:
        raise PlanError(
            f"{where}: {column}: expected an ISO 8601 timestamp "
            f"such as 2025-03-03T14:00:00Z, got {value!r}"
        )
    return when if when.tzinfo is not None else when.replace(tzinfo=naive)


def _hour_key(when: datetime, zone: tzinfo) -> int:
    """Epoch seconds of the start of the clock hour in ``zone`` that holds ``when``."""
    local = when.astimezone(zone)
    return int(local.replace(minute=0, second=0, microsecond=0).timestamp())


class HourBuckets:
    """Tokens by kind and billed money, summed per clock hour of ``zone``.

    ``start`` and ``end`` (naive: in ``zone``) bound the hours, ``end`` excluded.
    """

    def __init__(
        self, name: str, zone: tzinfo, start: datetime | None, end: datetime | None
    ) -> None:
        self.name = name
        self.zone = zone
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=zone)
        if end is not None and end.tzinfo is None:
            end = end.replace(tzinfo=zone)
        self._start = _hour_key(start, zone) if start is not None else None
        self._end = int(end.timestamp()) if end is not None else None
        if self._start is not None and self._end is not None:
            if self._end <= self._start:
                raise PlanError(f"{name}: the period ends before it starts")
            if self._end - self._start > MAX_HOURS * HOUR:
                raise PlanError(
                    f"{name}: the period is longer than the {MAX_DAYS} days the planner reads"
                )
        self._sums: dict[int, list[float]] = {}  # hour -> prompt, cached, generation, billed
        self._quarters: dict[int, int] = {}
        self.models: dict[str, float] = {}
        self.first: int | None = None
        self.last: int | None = None
        self.outside = 0  # rows left out: outside the period

    def hour_of(self, when: datetime) -> int:
        quarter = math.floor(when.timestamp() / QUARTER)
        key = self._quarters.get(quarter)
        if key is None:
            key = _hour_key(when, self.zone)
            offset = when.astimezone(self.zone).utcoffset() or timedelta(0)
            if offset.total_seconds() % QUARTER == 0:
                self._quarters[quarter] = key
        return key

    def add(
        self,
        where: str,
        column: str,
        when: datetime,
        model: str,
        prompt: float,
        cached: float,
        generation: float,
        billed: float,
    ) -> None:
        """One row's figures into its hour; ``column`` names the timestamp for messages."""
        key = self.hour_of(when)
        if (self._start is not None and key < self._start) or (
            self._end is not None and key >= self._end
        ):
            self.outside += 1
            return
        sums = self._sums.get(key)
        if sums is None:
            self._widen(key, where, column, when)
            sums = self._sums[key] = [0.0, 0.0, 0.0, 0.0]
        sums[0] += prompt
        sums[1] += cached
        sums[2] += generation
        sums[3] += billed
        self.models[model] = self.models.get(model, 0.0) + prompt + cached + generation

    def _widen(self, key: int, where: str, column: str, when: datetime) -> None:
        first = key if self.first is None else min(self.first, key)
        last = key if self.last is None else max(self.last, key)
        span_start = self._start if self._start is not None else first
        span_end = self._end if self._end is not None else last + HOUR
        if span_end - span_start > MAX_HOURS * HOUR:
            other = first if key == last else last
            raise PlanError(
                f"{where}: {column}: {when.isoformat()} is more than {MAX_DAYS} days from "
                f"the row at {self._local(other).isoformat()}; the planner reads at most "
                f"{MAX_DAYS} days: give a period to read part of the file"
            )
        self.first, self.last = first, last

    def _local(self, key: int) -> datetime:
        return datetime.fromtimestamp(key, self.zone)

    def hours(self, prices: ApiPrices, replica_cost: float, billed: bool) -> tuple[Hour, ...]:
        """Every hour of the span in order; ``billed``: the rows carried what was billed."""
        if self.first is None or self.last is None:
            raise PlanError(self._nothing())
        start = self._start if self._start is not None else self.first
        end = self._end if self._end is not None else self.last + HOUR
        empty = [0.0, 0.0, 0.0, 0.0]
        result = []
        for key in range(start, end, HOUR):
            prompt, cached, generation, spent = self._sums.get(key, empty)
            by_kind = dict(zip(TOKEN_KINDS, (prompt, cached, generation), strict=True))
            api_cost = api_equivalent_cost(by_kind, prices)
            result.append(
                Hour(
                    start=self._local(key),
                    tokens=prompt + cached + generation,
                    api_cost=api_cost,
                    replica_cost=replica_cost,
                    spend=spent if billed else api_cost,
                    tokens_by_kind=by_kind,
                )
            )
        return tuple(result)

    def _nothing(self) -> str:
        if self.outside:
            return f"{self.name}: no row in the period asked for ({self.outside:,} rows outside it)"
        return f"{self.name}: no row with traffic to read"
