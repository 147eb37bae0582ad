"""LiteLLM's spend logs: one row per request, as its proxy records them.

The rows are those of LiteLLM's ``LiteLLM_SpendLogs`` table, exported as CSV
(``COPY (SELECT ...) TO STDOUT WITH CSV HEADER``) or fetched as JSON from the
proxy's ``/spend/logs`` (a list of rows; with dates, ``summarize=false``, or it
sums them by day) or ``/spend/logs/v2`` (rows under ``data``, a page at a
time). What the planner reads from a row:

- ``startTime``: when the request started; its hour is the hour the request
  counts in. The table stores UTC without an offset, so a naive time is UTC.
- ``model``: the model the proxy called.
- ``prompt_tokens``, ``completion_tokens``: LiteLLM's OpenAI-style usage. Its
  prompt tokens include those read from the provider's prompt cache (LiteLLM
  adds Anthropic's ``cache_read_input_tokens`` to them too).
- ``metadata`` (optional): a JSON object whose ``usage_object`` (newer
  versions) or ``additional_usage_values`` holds ``prompt_tokens_details
  .cached_tokens`` or ``cache_read_input_tokens``: the cached prompt tokens,
  taken out of ``prompt_tokens``. Rows without them count no cached token.
- ``spend``: what the request cost, as LiteLLM priced it: the as-run bill.
- ``status`` (optional, ``success`` or ``failure``; older versions keep it in
  ``metadata.status``): failed requests are left out.
- ``cache_hit`` (optional): ``True`` when LiteLLM answered from its own
  response cache; such a request reached no model, so its tokens are left
  out (its spend, normally 0, still counts).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timezone

from llm_cost_exporter.tools.planner.advise import PlanError
from llm_cost_exporter.tools.planner.hour_buckets import HourBuckets, instant, money, tokens

TIME = "startTime"
REQUIRED = (TIME, "model", "prompt_tokens", "completion_tokens", "spend")
OPTIONAL = ("metadata", "status", "cache_hit")
FIELDS = REQUIRED + OPTIONAL
USAGE_SECTIONS = ("usage_object", "additional_usage_values")
# Metadata is parsed only when its text can hold what is looked for in it.
CACHE_MARKERS = ("cached_tokens", "cache_read_input_tokens")
_USAGE_KEY_TEXT = f'"{USAGE_SECTIONS[0]}"'
_USAGE_KEY = re.compile(_USAGE_KEY_TEXT + r"\s*:\s*")
_DECODER = json.JSONDecoder()
FAILURE = "failure"
SUCCESS = "success"


@dataclass
class LogCounts:
    """What the rows were: the planner says what it left out and why."""

    requests: int = 0  # requests counted
    failed: int = 0
    cache_hits: int = 0
    with_cache_figures: int = 0  # requests whose metadata says how many prompt tokens were cached

    def check(self, name: str) -> None:
        if not self.requests + self.failed + self.cache_hits:
            raise PlanError(f"{name}: no data rows after the header")
        if not self.requests + self.cache_hits:
            raise PlanError(f"{name}: no successful request ({self.failed:,} failed)")

    def describe(self, name: str, outside: int) -> str:
        plural = "" if self.requests == 1 else "s"
        text = f"{name}: LiteLLM spend logs, {self.requests:,} request{plural}"
        left = []
        if self.failed:
            left.append(f"{self.failed:,} failed")
        if self.cache_hits:
            left.append(f"{self.cache_hits:,} answered from LiteLLM's cache")
        if outside:
            left.append(f"{outside:,} outside the period")
        if left:
            text += f" ({', '.join(left)} left out)"
        if not self.with_cache_figures:
            text += "; no cached prompt tokens recorded: every prompt token priced as uncached"
        return text


def header_columns(header: Sequence[str], where: str) -> list[int | None]:
    """Where each of FIELDS is in the header (None: an optional column not there)."""
    positions = {column: i for i, column in enumerate(header)}
    missing = [column for column in REQUIRED if column not in positions]
    if missing:
        raise PlanError(
            f"{where}: LiteLLM spend logs without the column"
            f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(needed: {', '.join(REQUIRED)})"
        )
    return [positions.get(column) for column in FIELDS]


def read_csv(
    records: Iterator[tuple[int, list[str]]],
    header: Sequence[str],
    header_line: str,
    buckets: HourBuckets,
    name: str,
) -> LogCounts:
    """Every request row of a CSV export into ``buckets``; ``header_line`` names the header."""
    columns = header_columns(header, header_line)
    width = len(header)
    counts = LogCounts()
    for line, row in records:
        where = f"{name} line {line}"
        if len(row) != width:
            raise PlanError(f"{where}: expected {width} fields as in the header, got {len(row)}")
        add_request([row[i] if i is not None else None for i in columns], where, buckets, counts)
    return counts


def read_json(text: str, buckets: HourBuckets, name: str) -> LogCounts:
    """The rows of ``/spend/logs`` (a list) or ``/spend/logs/v2`` (``data``) into ``buckets``."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise PlanError(f"{name}: not valid JSON: {exc}") from None
    rows = document.get("data") if isinstance(document, dict) else document
    if not isinstance(rows, list):
        raise PlanError(
            f"{name}: expected LiteLLM spend logs: a JSON list of rows, or rows under 'data'"
        )
    counts = LogCounts()
    for number, row in enumerate(rows, start=1):
        where = f"{name} row {number}"
        if not isinstance(row, dict):
            raise PlanError(f"{where}: expected a JSON object, got {type(row).__name__}")
        missing = [column for column in REQUIRED if column not in row]
        if missing and "models" in row:
            raise PlanError(
                f"{where}: spend summed by day, not one row per request: "
                "ask /spend/logs with summarize=false"
            )
        if missing:
            raise PlanError(f"{where}: no {', '.join(missing)}")
        add_request([row.get(column) for column in FIELDS], where, buckets, counts)
    return counts


def add_request(values: list[object], where: str, buckets: HourBuckets, counts: LogCounts) -> None:
    """One row, in FIELDS order, into its hour unless it failed."""
    start, model, prompt, completion, spend, metadata, status, cache_hit = values
    if _failed(status, metadata, where):
        counts.failed += 1
        return
    when = instant(start, where, TIME, timezone.utc)
    billed = money(spend, where, "spend")
    prompt_tokens = tokens(prompt, where, "prompt_tokens")
    generation = tokens(completion, where, "completion_tokens")
    name = model.strip() if isinstance(model, str) else ""
    if _true(cache_hit):
        counts.cache_hits += 1
        buckets.add(where, TIME, when, name, 0.0, 0.0, 0.0, billed)
        return
    cached = cached_tokens(metadata, where)
    if cached is None:
        cached = 0.0
    else:
        counts.with_cache_figures += 1
        if cached > prompt_tokens:
            raise PlanError(
                f"{where}: metadata: {cached:.0f} cached prompt tokens, "
                f"more than prompt_tokens ({prompt_tokens:.0f}) which include them"
            )
    counts.requests += 1
    buckets.add(where, TIME, when, name, prompt_tokens - cached, cached, generation, billed)


def _true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _failed(status: object, metadata: object, where: str) -> bool:
    if isinstance(status, str) and status.strip():
        state = status.strip().lower()
        if state not in (SUCCESS, FAILURE):
            raise PlanError(f"{where}: status: expected success or failure, got {status!r}")
        return state == FAILURE
    if isinstance(metadata, str):
        if FAILURE not in metadata:
            return False
        metadata = _object(metadata, where)
    return isinstance(metadata, Mapping) and metadata.get("status") == FAILURE


def cached_tokens(metadata: object, where: str) -> float | None:
    """Prompt tokens read from the provider's cache, or None if the row does not say."""
    if metadata is None:
        return None
    if isinstance(metadata, str):
        if not any(marker in metadata for marker in CACHE_MARKERS):
            return None
        usage = _usage_object(metadata)
        if usage is not None:
            found = _cache_figure({USAGE_SECTIONS[0]: usage}, where)
            if found is not None:
                return found
        metadata = _object(metadata, where)
    if not isinstance(metadata, Mapping):
        raise PlanError(f"{where}: metadata: expected a JSON object, got {_short(metadata)}")
    return _cache_figure(metadata, where)


def _usage_object(text: str) -> Mapping | None:
    """``usage_object`` alone, decoded without the rest of the metadata when it is there once.

    Metadata runs to kilobytes and decoding it whole is most of the time a
    row takes; its usage object is a few hundred bytes. A key spelt out with
    its quotes cannot occur inside a JSON string, so one occurrence is a key.
    """
    found = _USAGE_KEY.search(text)
    if found is None or text.count(_USAGE_KEY_TEXT) != 1:
        return None
    try:
        value = _DECODER.raw_decode(text, found.end())[0]
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


def _cache_figure(metadata: Mapping, where: str) -> float | None:
    for section in USAGE_SECTIONS:
        usage = metadata.get(section)
        if not isinstance(usage, Mapping):
            continue
        details = usage.get("prompt_tokens_details")
        found = [
            tokens(value, where, f"metadata {section}.{path}")
            for path, value in (
                (
                    "prompt_tokens_details.cached_tokens",
                    details.get("cached_tokens") if isinstance(details, Mapping) else None,
                ),
                ("cache_read_input_tokens", usage.get("cache_read_input_tokens")),
            )
            if value is not None
        ]
        if found:
            # Both say the same where LiteLLM fills both; one may be a default 0.
            return max(found)
    return None


def _object(text: str, where: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise PlanError(f"{where}: metadata: expected a JSON object, got {_short(text)}") from None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def csv_field_limit() -> None:
    """Let a row carry LiteLLM's stored prompts and responses (often over csv's 128 KiB)."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
