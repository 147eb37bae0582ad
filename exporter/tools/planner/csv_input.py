"""A team's traffic from a file, for a team still on an API that has no Prometheus data.

Two formats, told apart by the header row (the first line that is not blank):

**Hourly tokens** (comma-separated, UTF-8, a byte order mark and CRLF line ends
allowed), one row per hour and model::

    hour,model,prompt_tokens,cached_prompt_tokens,generation_tokens,api_cost
    2025-03-03T09:00:00+01:00,gpt-4o,1200000,300000,250000,6.05

- ``hour``: the start of the hour, ISO 8601 (``2025-03-03T08:00:00Z``,
  ``2025-03-03 09:00+01:00``); without an offset it is read in the planner's
  time zone. Minutes and seconds must be zero. The row counts in the clock
  hour of the planner's zone that holds that instant.
- ``model``: any name, may be empty. Several rows may share an hour (one per
  model); rows repeating an hour and model add up.
- ``prompt_tokens``: prompt tokens the provider computed, NOT counting those
  served from its prompt cache; ``cached_prompt_tokens``: those served from
  the cache; ``generation_tokens``: tokens generated. Numbers, 0 or more.
- ``api_cost`` (optional column): what the API really billed for the row, in
  the planner's currency. With it the as-run cost is the bill; without it the
  as-run cost is the tokens at the API prices given.

Columns may come in any order; any other column is an error (a misspelt
``api_cost`` must not silently drop the bill).

**LiteLLM spend logs**: a header with ``startTime`` (see
:mod:`~llm_cost_exporter.tools.planner.litellm_logs`), or the same rows as the
JSON of the proxy's ``/spend/logs`` endpoints.

Every clock hour from the first row's to the last row's (or over the period
asked for) becomes an :class:`Hour`: hours without rows are real hours with
no traffic. The team runs on the API, so no replica ran: as run is the bill.
CSV is streamed: memory holds the hours, not the rows.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.tools.planner import litellm_logs
from llm_cost_exporter.tools.planner.advise import PlanError
from llm_cost_exporter.tools.planner.hour_buckets import HourBuckets, instant, money, tokens
from llm_cost_exporter.tools.planner.model import Traffic
from llm_cost_exporter.tools.planner.replica import ReplicaSpec

HOURLY = ("hour", "model", "prompt_tokens", "cached_prompt_tokens", "generation_tokens")
BILLED = "api_cost"
BOM = "\ufeff"
MAX_JSON_CHARS = 256 * 1024 * 1024  # JSON is read whole; a month of requests belongs in CSV
ACCEPTED = (
    f"expected hourly tokens ({','.join(HOURLY)}[,{BILLED}]) "
    f"or LiteLLM spend logs ({','.join(litellm_logs.REQUIRED)},...)"
)


def traffic_from_file(
    path: Path,
    *,
    prices: ApiPrices,
    replica: ReplicaSpec,
    zone: tzinfo,
    currency: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Traffic:
    """The traffic in the file at ``path``, streamed: a file of millions of rows is fine."""
    name = path.name
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            return traffic_from_lines(
                stream,
                name=name,
                prices=prices,
                replica=replica,
                zone=zone,
                currency=currency,
                start=start,
                end=end,
            )
    except UnicodeDecodeError as exc:
        raise PlanError(f"{name}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise PlanError(f"{name}: cannot read: {exc.strerror or exc}") from None


def traffic_from_lines(
    lines: Iterable[str],
    *,
    name: str,
    prices: ApiPrices,
    replica: ReplicaSpec,
    zone: tzinfo,
    currency: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Traffic:
    """The traffic in ``lines`` (a file's lines, line ends kept), read one row at a time."""
    buckets = HourBuckets(name, zone, start, end)
    stream = iter(lines)
    head: list[str] = []
    for line in stream:
        head.append(line.removeprefix(BOM) if not head else line)
        if line.strip(BOM + " \t\r\n"):
            break
    else:
        raise PlanError(f"{name}: empty file: {ACCEPTED}")
    if head[-1].lstrip().startswith(("[", "{")):
        counts = litellm_logs.read_json(_whole(head, stream, name), buckets, name)
        counts.check(name)
        billed, source = True, counts.describe(name, buckets.outside)
    else:
        billed, source = _read_csv(itertools.chain(head, stream), buckets, name)
    return Traffic(
        hours=buckets.hours(prices, replica.hourly_cost, billed),
        capacity=replica.capacity,
        replica=replica.describe(currency),
        currency=currency,
        source=source,
        on_api=True,
        tokens_by_model=dict(sorted(buckets.models.items(), key=lambda item: -item[1])),
        zone=getattr(zone, "key", None) or str(zone),
    )


def _whole(head: list[str], stream: Iterator[str], name: str) -> str:
    parts, size = list(head), sum(len(line) for line in head)
    for line in stream:
        parts.append(line)
        size += len(line)
        if size > MAX_JSON_CHARS:
            raise PlanError(
                f"{name}: JSON over {MAX_JSON_CHARS // 1024 // 1024} MiB: export the spend "
                "logs as CSV instead, which is read row by row"
            )
    return "".join(parts)


def _read_csv(lines: Iterable[str], buckets: HourBuckets, name: str) -> tuple[bool, str]:
    """(whether rows carry what was billed, the source in words)."""
    litellm_logs.csv_field_limit()
    records = _records(csv.reader(lines, strict=True), name)
    line, header = next(records, (1, []))
    header = [column.strip() for column in header]
    where = f"{name} line {line}"
    if litellm_logs.TIME in header:
        counts = litellm_logs.read_csv(records, header, where, buckets, name)
        counts.check(name)
        return True, counts.describe(name, buckets.outside)
    if HOURLY[0] in header:
        billed = _read_hourly(records, header, where, buckets, name)
        outside = f" ({buckets.outside:,} rows outside the period left out)"
        return billed, f"{name}: hourly tokens" + (outside if buckets.outside else "")
    raise PlanError(f"{where}: unknown header: {ACCEPTED}")


def _records(reader: Any, name: str) -> Iterator[tuple[int, list[str]]]:
    """(line the record starts on, its fields), blank lines skipped."""
    line = reader.line_num
    try:
        for row in reader:
            if row and (len(row) > 1 or row[0].strip()):
                yield line + 1, row
            line = reader.line_num
    except csv.Error as exc:
        raise PlanError(f"{name} line {line + 1}: not valid CSV: {exc}") from None


def _read_hourly(
    records: Iterator[tuple[int, list[str]]],
    header: list[str],
    header_line: str,
    buckets: HourBuckets,
    name: str,
) -> bool:
    """Every row of the hourly format into ``buckets``; True if it has the billed column."""
    known = (*HOURLY, BILLED)
    for column in header:
        if column not in known:
            raise PlanError(
                f"{header_line}: unknown column {column!r}: the hourly format has "
                f"{', '.join(HOURLY)} and optionally {BILLED}"
            )
        if header.count(column) > 1:
            raise PlanError(f"{header_line}: column {column!r} twice")
    missing = [column for column in HOURLY if column not in header]
    if missing:
        raise PlanError(f"{header_line}: hourly tokens without the column(s) {', '.join(missing)}")
    hour, model, prompt, cached, generation = (header.index(column) for column in HOURLY)
    billed = header.index(BILLED) if BILLED in header else None
    width, rows = len(header), 0
    for line, row in records:
        where = f"{name} line {line}"
        if len(row) != width:
            raise PlanError(f"{where}: expected {width} fields as in the header, got {len(row)}")
        when = instant(row[hour], where, "hour", buckets.zone)
        if when.minute or when.second or when.microsecond:
            raise PlanError(f"{where}: hour: expected the start of an hour, got {row[hour]!r}")
        buckets.add(
            where,
            "hour",
            when,
            row[model].strip(),
            tokens(row[prompt], where, "prompt_tokens"),
            tokens(row[cached], where, "cached_prompt_tokens"),
            tokens(row[generation], where, "generation_tokens"),
            money(row[billed], where, BILLED) if billed is not None else 0.0,
        )
        rows += 1
    if not rows:
        raise PlanError(f"{name}: no data rows after the header")
    return billed is not None
