"""The model an engine serves, named by a JSON document beside its page.

Some engines' pages name no model (llama.cpp's `llama-server`, TGI): one
process serves one model, which only a JSON document on the same server
names (`/v1/models`, `/info`). Tokens counted under a made-up name would be
priced wrong or not at all, so with no name the collection fails
(`model_unknown`) and the configured `engines[].model` is the way out.

The name is read once and kept. It is read again after a failed collection and
when the token counters drop (the engine restarted, perhaps with another
model), and at most every REFRESH_SECONDS otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from llm_cost_exporter.collectors.base import CollectorError, PageSource
from llm_cost_exporter.collectors.engine_page import PageCollector, read_engine, renamed
from llm_cost_exporter.collectors.readings import EngineReadings

REFRESH_SECONDS = 300.0
"""How long a name read is kept while nothing suggests the model changed."""

MAX_NAME_CHARS = 1024
"""A longer "model name" is not one (it becomes a label value)."""

NamePicker = Callable[[object], object]
"""Takes the model's name out of the document (None or a non-string when it has none)."""


def openai_model_id(document: object) -> object:
    """`data[0].id` of an OpenAI-style model list (llama.cpp's `/v1/models`)."""
    data = document.get("data") if isinstance(document, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    return first.get("id") if isinstance(first, dict) else None


def tgi_model_id(document: object) -> object:
    """`model_id` of TGI's `/info`."""
    return document.get("model_id") if isinstance(document, dict) else None


class ServedModel:
    """The name of the one model an engine serves: configured, or read and kept."""

    def __init__(
        self,
        page: PageSource,
        path: str,
        pick: NamePicker,
        configured: str | None = None,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._page = page
        self._path = path
        self._pick = pick
        self._configured = configured
        self._refresh = refresh_seconds
        self._clock = clock
        self._name: str | None = None
        self._read_at = 0.0
        self._last_tokens: float | None = None

    def forget(self) -> None:
        """The collection failed: read the name again next time."""
        self._name = None

    async def name(self, tokens: float) -> str:
        """The model's name, given the page's token total just read (a drop is a restart);
        CollectorError `model_unknown` when none can be had."""
        if self._configured is not None:
            return self._configured
        if self._last_tokens is not None and tokens < self._last_tokens:
            self._name = None
        self._last_tokens = tokens
        if self._name is not None and self._clock() - self._read_at < self._refresh:
            return self._name
        try:
            self._name = await self._read()
        except CollectorError as error:
            if self._name is None:
                raise CollectorError(
                    "model_unknown",
                    f"{error} (set engines[].model to name the model this engine serves)",
                ) from None
            # The page answered and nothing says the model changed: keep the name read
            # before, and try the document again next cycle.
            return self._name
        self._read_at = self._clock()
        return self._name

    async def _read(self) -> str:
        try:
            document = await self._page.read_json(self._path)
        except CollectorError as error:
            raise CollectorError(error.reason, f"model name from {self._path}: {error}") from None
        name = self._pick(document)
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
            raise CollectorError("model_unknown", f"{self._path} names no model")
        return name


class OneModelCollector(PageCollector):
    """A collector of an engine whose page names no model: its readings take the
    model's name from `MODEL_DOCUMENT` beside the page (`pick_model` finds it there),
    unless `engines[].model` names it."""

    MODEL_DOCUMENT: ClassVar[str]
    pick_model: ClassVar[NamePicker]

    def __init__(self, target: str, page: PageSource, model: str | None = None) -> None:
        super().__init__(target, page, model)
        self._served = ServedModel(page, self.MODEL_DOCUMENT, self.pick_model, model)

    async def collect(self) -> EngineReadings:
        try:
            readings = await read_engine(self.reader(), self._page, self.METRICS_OFF)
        except CollectorError:
            self._served.forget()
            raise
        if not readings:
            return readings
        tokens = sum(r.prompt_tokens + r.generation_tokens for r in readings)
        return renamed(readings, await self._served.name(tokens))
