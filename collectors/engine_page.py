"""What every engine collector shares: an engine's page read as it streams in, the
series it wants summed per (model, rank), and each unusable series rejected alone.

An engine module is an EngineReader, naming the series it reads (`Series`), which
(model, rank) a series is about (`key`) and how the sums become readings
(`interpret`), and a PageCollector reading the engine's page with it. A page that is not the
engine's or is malformed fails whole (CollectorError); a series of a sound page
whose value cannot be used (NaN, infinite, negative, beyond what it can count) is
rejected alone, counted by reason, and spoils only its own (model, rank).

A PageCollector keeps what its engine's last page looked like (page_shape): a
next page with the same wanted lines in the same order is read by its values
alone, with the same result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from llm_cost_exporter.collectors.base import CollectorError, PageSource
from llm_cost_exporter.collectors.page_shape import (
    LastPage,
    PageShape,
    Route,
    followed_values,
    positions_of,
)
from llm_cost_exporter.collectors.promtext import (
    HEADS_KEPT,
    ExpositionError,
    Found,
    Labels,
    SelectiveParser,
)
from llm_cost_exporter.collectors.readings import EngineReading, EngineReadings

MAX_COUNT = float(2**53)
"""Largest token count, request count or KV block count taken: beyond it a float
no longer counts in ones (at a million tokens a second, 285 years of traffic)."""

_INFINITY = math.inf

Key = tuple[str, str]
"""(model, rank): what one reading is about."""


@dataclass(frozen=True)
class Series:
    """A metric an engine collector reads from the page."""

    name: str
    upper: float = MAX_COUNT
    """The largest usable value of one series (1.0 for a ratio, inf for a `_created` time)."""
    part: str | None = None
    """A label whose values are summed apart (`mode`, `source`): `EnginePage.get(name, value)`."""
    info: bool = False
    """An info series: its labels are the data, kept whole (`EnginePage.infos`)."""


def value_problem(value: float, upper: float) -> str | None:
    """Why a value cannot be used (a REJECT_REASONS entry), or None."""
    if math.isnan(value) or math.isinf(value):
        return "non_finite"
    if value < 0:
        return "negative"
    if value > upper:
        return "out_of_range"
    return None


@dataclass(slots=True)
class Summed:
    """One metric's series summed per (model, rank); a rejected series spoils its key."""

    values: dict[Key, float] = field(default_factory=dict)
    rejected: set[Key] = field(default_factory=set)

    def __init__(
        self, values: dict[Key, float] | None = None, rejected: set[Key] | None = None
    ) -> None:
        # The fields without the generated __init__'s factory calls: a page makes one
        # per metric it carries.
        self.values = {} if values is None else values
        self.rejected = set() if rejected is None else rejected

    def keys(self) -> set[Key]:
        return self.values.keys() | self.rejected

    def get(self, key: Key) -> float | None:
        return None if key in self.rejected else self.values.get(key)


EMPTY = Summed()
"""What `EnginePage.sums` gives for a metric that is not on the page."""


def label_key(model_label: str, rank_label: str | None) -> Callable[[Labels], Key | None]:
    """The key of engines that name the model and rank in one label each (vLLM, LMDeploy)."""

    def key(labels: Labels) -> Key:
        return labels.get(model_label, ""), labels.get(rank_label, "") if rank_label else ""

    return key


class EnginePage:
    """One engine page fed in chunks: the wanted series summed per (model, rank), and
    the series rejected, by reason (readings.REJECT_REASONS)."""

    def __init__(self, series: Mapping[str, Series], key: Callable[[Labels], Key | None]) -> None:
        """`series` by name; `key` says which (model, rank) a series is about; None leaves
        the series out (a duplicate report, such as a tensor-parallel rank other than the
        first)."""
        self._series = series
        self._key = key
        self._parser = SelectiveParser(series)
        self._sums: dict[str, Summed] = {}
        """The series without a part label, by name."""
        self._parts: dict[str, dict[str, Summed]] = {}
        """The series with one, by name and then by the part label's value."""
        self._infos: dict[str, list[Labels]] = {}
        self._rejected: dict[str, int] = {}
        self._first_rejected = ""
        self._last: LastPage | None = None
        self._shape: PageShape | None = None
        """The last page's shape while this page follows it (page_shape)."""
        self._lines: list[tuple[bytes, bytes]] | None = None
        """The page's wanted lines so far, for the next page's shape; None past HEADS_KEPT."""
        self._values: list[float] = []
        """The values of the lines followed so far."""

    def follow(self, last: LastPage) -> None:
        """Read this page by its values alone while its wanted lines are those of the
        engine's last page (`last.shape`), and leave in `last` the shape of this one.
        Only for a `key` that is a function of the labels alone: a route is kept."""
        self._last = last
        self._shape = last.shape
        self._lines = []

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the page; CollectorError if it is malformed."""
        try:
            lines = self._parser.lines(chunk)
            if self._shape is not None and self._follows(lines):
                return
            found = self._parser.take(self._record(lines))
        except ExpositionError as error:
            raise CollectorError("parse", str(error)) from None
        self._take(found)

    def close(self) -> None:
        """The page is all fed; CollectorError if its last line is malformed."""
        try:
            lines = self._parser.last_lines()
            shape = self._shape
            if shape is not None and self._follows(lines):
                if len(self._values) == len(shape.heads):
                    self._apply(shape)
                    return  # the shape stays the engine's: this page has the same lines
                self._diverge()  # fewer lines than the last page: `lines` are read with them
                lines = []
            found = self._parser.take(self._record(lines))
        except ExpositionError as error:
            raise CollectorError("parse", str(error)) from None
        self._take(found)
        duplicates = self._parser.duplicates
        if duplicates:
            self._rejected["duplicate"] = self._rejected.get("duplicate", 0) + duplicates
            if not self._first_rejected:
                self._first_rejected = "a series repeated on the page (duplicate)"
        if self._last is not None:
            self._last.shape = self._shape_of_page()

    def has(self, name: str) -> bool:
        """Whether the page carries any usable or rejected series of `name`."""
        return name in self._sums or name in self._parts or name in self._infos

    def get(self, name: str, part: str | None = None) -> Summed | None:
        """The sums of `name` (of its `part` label's value `part`), None if not on the page."""
        if part is None:
            return self._sums.get(name)
        by_part = self._parts.get(name)
        return None if by_part is None else by_part.get(part)

    def sums(self, *names: str) -> list[Summed]:
        """The sums of each of `names` (series without a part label), EMPTY where not on
        the page: one call for a reader's every series."""
        sums = self._sums
        return [sums.get(name, EMPTY) for name in names]

    def parts(self, name: str) -> set[str]:
        """The values of `name`'s part label seen on the page."""
        return set(self._parts.get(name, ()))

    def infos(self, name: str) -> list[Labels]:
        """The label sets of an info series, in page order."""
        return self._infos.get(name, [])

    def reject(self, reason: str, shown: str) -> None:
        """Count a value of the page left out (REJECT_REASONS); the first is logged."""
        self._rejected[reason] = self._rejected.get(reason, 0) + 1
        if not self._first_rejected:
            self._first_rejected = f"{shown} ({reason})"

    def readings(self, readings: Iterable[EngineReading]) -> EngineReadings:
        """The collect's result: `readings`, with what the page had rejected."""
        return EngineReadings(readings, self._rejected, self._first_rejected)

    def _route(self, name: str, labels: Labels) -> Route:
        """Where the value of a line of `name` with `labels` goes, as `_take` sends it."""
        series = self._series[name]
        if series.info:
            return name, None, None, 0.0, labels
        key = self._key(labels)
        if key is None:
            return name, None, None, 0.0, None
        part = None if series.part is None else labels.get(series.part, "")
        return name, key, part, series.upper, None

    def _summed(self, name: str, part: str | None) -> Summed:
        """The sums of `name` (of its part label's value `part`), made on first use."""
        if part is None:
            summed = self._sums.get(name)
            if summed is None:
                summed = self._sums[name] = Summed()
            return summed
        by_part = self._parts.get(name)
        if by_part is None:
            by_part = self._parts[name] = {}
        summed = by_part.get(part)
        if summed is None:
            summed = by_part[part] = Summed()
        return summed

    def _take(self, found: list[Found]) -> None:
        # `_route` written out: this runs for every wanted line of a page not followed.
        all_series, key_of, sums = self._series, self._key, self._sums
        for name, labels, value in found:
            series = all_series[name]
            if series.info:
                self._infos.setdefault(name, []).append(labels)
                continue
            key = key_of(labels)
            if key is None:
                continue
            if series.part is None:
                summed = sums.get(name)
                if summed is None:
                    summed = sums[name] = Summed()
            else:
                summed = self._summed(name, labels.get(series.part, ""))
            upper = series.upper
            # A usable value (value_problem would find none), judged without the call.
            if 0.0 <= value <= upper and value != _INFINITY:
                values = summed.values
                values[key] = values.get(key, 0.0) + value
                continue
            problem = value_problem(value, upper)
            assert problem is not None
            shown = ",".join(f"{k}={v[:80]!r}" for k, v in sorted(labels.items())[:4])
            self.reject(problem, f"{name}{{{shown}}} {value}")
            summed.rejected.add(key)

    # Following the last page's shape (page_shape).

    def _follows(self, lines: list[tuple[bytes, bytes]]) -> bool:
        """Whether `lines` go on following the shape; if not, the lines followed so far
        are read line by line, and so is the rest of the page."""
        assert self._shape is not None and self._lines is not None
        values = followed_values(self._shape, len(self._values), lines)
        if values is None:
            self._diverge()
            return False
        self._values += values
        self._lines += lines
        return True

    def _diverge(self) -> None:
        """Stop following: read the lines followed so far as any others."""
        self._shape = None
        self._values = []
        if self._lines:
            self._take(self._parser.take(self._lines))

    def _record(self, lines: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """`lines`, noted for the next page's shape (while within HEADS_KEPT)."""
        if self._lines is not None:
            self._lines += lines
            if len(self._lines) > HEADS_KEPT:
                self._lines = None
        return lines

    def _apply(self, shape: PageShape) -> None:
        """The page's sums from the followed values, made as a reading line by line makes
        them (the shape's own sums, refilled: see PageShape.fill)."""
        sums, parts, infos = shape.fill(self._values)
        self._sums = dict(sums)
        self._parts = {name: dict(by_part) for name, by_part in parts.items()}
        self._infos = {name: list(labels) for name, labels in infos.items()}

    def _shape_of_page(self) -> PageShape | None:
        """The shape of this page, read line by line, for the next: None if it had a fault
        (a rejected value, a repeated series) or a line whose head the parser did not keep."""
        if self._rejected or not self._lines:
            return None
        heads = []
        routes = []
        for head, _ in self._lines:
            known = self._parser.known(head)
            if known is None:
                return None
            heads.append(head)
            routes.append(self._route(known[0], known[1]))
        slots = [
            (self._summed(name, part).values, key, tuple(at))
            for (name, part), by_key in positions_of(routes).items()
            for key, at in by_key.items()
        ]
        return PageShape(heads, routes, (self._sums, self._parts, self._infos), slots)


def sum_parts(page: EnginePage, name: str, parts: Iterable[str] | None = None) -> Summed | None:
    """`name` summed over the given values of its part label (all seen, when None);
    None if the page has none of them."""
    chosen = page.parts(name) if parts is None else set(parts) & page.parts(name)
    if not chosen:
        return None
    total = Summed()
    for part in sorted(chosen):
        summed = page.get(name, part)
        assert summed is not None
        total.rejected |= summed.rejected
        for key, value in summed.values.items():
            total.values[key] = total.values.get(key, 0.0) + value
    return total


def renamed(readings: EngineReadings, model: str | None) -> EngineReadings:
    """`readings` under the configured model name, when there is one.

    Readings of one rank that the name makes one (a Triton version served by several
    TensorRT-LLM models) are summed: the accounting keeps a rank's counters under its
    model's name, so two readings of one name and rank would read as one engine
    jumping between two sets of counters.
    """
    if model is None:
        return readings
    by_rank: dict[str, list[EngineReading]] = {}
    for reading in readings:
        by_rank.setdefault(reading.engine, []).append(reading)
    combined = [_combined(model, group) for group in by_rank.values()]
    return EngineReadings(combined, readings.rejected, readings.first_rejected)


def _combined(model: str, group: list[EngineReading]) -> EngineReading:
    """One reading of `model` for a rank's readings: counts and gauges summed (unknown if
    any part is), KV usage from the summed tokens and capacity, the start time where all
    agree."""
    first = group[0]
    if len(group) == 1:
        return dataclasses.replace(first, model=model)
    capacity = _total(r.kv_capacity_tokens for r in group)
    kv_tokens = _total(r.kv_tokens for r in group)
    started = {r.started_at for r in group}
    return dataclasses.replace(
        first,
        model=model,
        prompt_tokens=sum(r.prompt_tokens for r in group),
        cached_prompt_tokens=sum(r.cached_prompt_tokens for r in group),
        generation_tokens=sum(r.generation_tokens for r in group),
        running=_total(r.running for r in group),
        waiting=_total(r.waiting for r in group),
        kv_capacity_tokens=capacity,
        kv_tokens=kv_tokens,
        kv_usage_ratio=kv_tokens / capacity if capacity and kv_tokens is not None else None,
        started_at=started.pop() if len(started) == 1 else None,
        requests=_total(r.requests for r in group),
        preemptions=_total(r.preemptions for r in group),
        transferred_prompt_tokens=_total(r.transferred_prompt_tokens for r in group),
    )


def _total(values: Iterable[float | None]) -> float | None:
    """The sum, or None if any part is unknown."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def token_keys(prompt: Summed, generation: Summed, missing: str) -> list[Key]:
    """The (model, rank) keys whose token counters are whole this cycle.

    No counter at all is `no_engine_metrics` with `missing` as the message (the page of
    an engine run without its metrics, or not the engine's page); prompt and generation
    counters for different keys is a malformed page. A key with a rejected token series
    sits this cycle out: a partial count would read as a drop, hence as a restart.
    """
    keys = prompt.keys()
    if keys != generation.keys():
        raise CollectorError(
            "parse", "page has prompt and generation counters for different engines"
        )
    if not keys:
        raise CollectorError("no_engine_metrics", missing)
    if prompt.rejected or generation.rejected:
        keys = keys - prompt.rejected - generation.rejected
    return sorted(keys)


class EngineReader:
    """One engine's reader of one page: the `SERIES` it reads, which (model, rank) a
    series is about (`key`), and how the sums become readings (`interpret`)."""

    SERIES: ClassVar[tuple[Series, ...]]
    _BY_NAME: ClassVar[dict[str, Series]]
    """SERIES by name, built once per reader class rather than once per page."""
    KEY_OF_LABELS_ALONE: ClassVar[bool] = True
    """Whether `key` is a function of the labels alone, so that where a line's value went
    is kept for the engine's next page (EnginePage.follow); not where `key` also notes
    what it sees."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._BY_NAME = {series.name: series for series in cls.SERIES}

    def __init__(self) -> None:
        self._page = EnginePage(self._BY_NAME, self.key)

    def key(self, labels: Labels) -> Key | None:
        """The (model, rank) a series is about; None leaves it out."""
        raise NotImplementedError

    def interpret(self) -> list[EngineReading]:
        """The readings from the page's sums, or CollectorError."""
        raise NotImplementedError

    def follow(self, last: LastPage) -> EngineReader:
        """Read the page by its values alone where it has the wanted lines of the engine's
        last page (`last`), and keep its own there for the next."""
        if self.KEY_OF_LABELS_ALONE:
            self._page.follow(last)
        return self

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the page; CollectorError if it is malformed."""
        self._page.feed(chunk)

    def readings(self) -> EngineReadings:
        """The page's readings once it is all fed, or CollectorError."""
        self._page.close()
        return self._page.readings(self.interpret())


@dataclass(frozen=True)
class MetricsOff:
    """How an engine answers when its metrics are off, and what turns them on."""

    reason: str
    """The CollectorError reason of that answer (`http_status`, `connection`)."""
    answer: str
    """How its message starts (`HTTP 404`); "" for any message of that reason."""
    hint: str
    """What to do, added to the message."""


def read_whole(reader: EngineReader, page: str | bytes) -> EngineReadings:
    """A whole page's readings (fixtures, benchmarks), or CollectorError."""
    reader.feed(page.encode("utf-8", "surrogatepass") if isinstance(page, str) else page)
    return reader.readings()


async def read_engine(
    reader: EngineReader, source: PageSource, off: MetricsOff | None = None
) -> EngineReadings:
    """The readings of the page `source` serves, or CollectorError; an answer that
    says the engine's metrics are off carries the hint that turns them on."""
    try:
        await source.read(reader.feed)
        return reader.readings()
    except CollectorError as error:
        if off is not None and error.reason == off.reason and str(error).startswith(off.answer):
            raise CollectorError(error.reason, f"{error}: {off.hint}") from None
        raise


class PageCollector:
    """An engine collector (base.EngineCollector) reading its engine's page with its
    `READER`; `METRICS_OFF` is how the engine answers with its metrics off."""

    name: ClassVar[str]
    READER: ClassVar[type[EngineReader]]
    METRICS_OFF: ClassVar[MetricsOff | None] = None

    def __init__(self, target: str, page: PageSource, model: str | None = None) -> None:
        self.target = target
        self._page = page
        self._model = model
        self._last_page = LastPage()

    def reader(self) -> EngineReader:
        """A reader of the engine's next page, following the shape of its last one."""
        return self.READER().follow(self._last_page)

    async def collect(self) -> EngineReadings:
        readings = await read_engine(self.reader(), self._page, self.METRICS_OFF)
        return renamed(readings, self._model)
