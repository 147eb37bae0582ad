"""A month (or any period) of a simulated fleet's series, generated a piece at a time.

Each node's series are its real exporter page's (see :mod:`fleet_render`),
labelled ``job`` and ``instance`` as a scrape would label them, sampled every
``step`` seconds; a node's outages leave gaps, and a node whose exporter never
answers has no samples at all. A month of 1,000 nodes is far too large to hold
as one string, so it comes out in pieces of ``piece_seconds`` (a day by
default), each whole on its own: OpenMetrics for ``promtool tsdb
create-blocks-from openmetrics`` (every piece ends in ``# EOF``), or lines of
the Prometheus text format with millisecond timestamps for VictoriaMetrics'
``/api/v1/import/prometheus``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Iterator, Sequence

from prometheus_client.utils import floatToGoString

from .fleet_nodes import unit
from .fleet_render import NodePage, Series, _Line

JOB = "llm-cost"


def _labelled(head: str, instance: str) -> str:
    """``name{labels}`` with the scrape's job and instance put first."""
    name, brace, rest = head.partition("{")
    extra = f'job="{JOB}",instance="{instance}"'
    return f"{name}{{{extra},{rest}" if brace else f"{name}{{{extra}}}"


def _times(page: NodePage, start: int, end: int, step: int) -> list[int]:
    """The sample instants of ``page``'s node in [start, end), less its outages."""
    first = start + (-start) % step
    return [
        t
        for t in range(first, end, step)
        if t >= page.t0 and not any(a < t < b for a, b in page.spec.outages)
    ]


def _families(pages: Sequence[NodePage], wanted: Collection[str] | None) -> list[str]:
    """Every family of the fleet in first-seen order (``wanted`` only, if given)."""
    seen: dict[str, None] = {}
    for page in pages:
        for s in page.series:
            if wanted is None or s.family.removesuffix("_total") in wanted:
                seen.setdefault(s.family)
    return list(seen)


def _values(
    series: Series, page: NodePage, times: list[int], traffic: list[float], wander: float
) -> list[str]:
    value = series.value
    if not isinstance(value, _Line):
        if not wander or value in (0.0, 1.0) or not math.isfinite(value):
            text = floatToGoString(value)
            return [text] * len(times)
        key = zlib.crc32(f"{page.spec.index}{series.head}".encode())
        return [floatToGoString(value * (1 + wander * (2 * unit(key, t) - 1))) for t in times]
    out = []
    for t, x in zip(times, traffic, strict=True):
        v = value.base + value.per_second * (t - page.t0) + value.per_traffic * (x - page.x0)
        out.append(floatToGoString(math.floor(v) if value.whole else v))
    return out


def fleet_pieces(
    pages: Sequence[NodePage],
    start: int,
    end: int,
    step: int,
    *,
    families: Collection[str] | None = None,
    openmetrics: bool = True,
    piece_seconds: int = 86400,
    wander: float = 0.0,
) -> Iterator[str]:
    """The fleet's samples in [start, end), one text per ``piece_seconds``.

    ``families`` (names without ``_total``) keeps only those families. A node's page
    is rendered once, so its gauges hold still; ``wander`` moves each gauge that is not
    0 or 1 by up to that share, at random, at every sample, as measured ones do. OpenMetrics
    pieces have TYPE lines, second timestamps and ``# EOF``; the others are bare
    Prometheus text lines with millisecond timestamps.
    """
    up = [p for p in pages if not p.spec.down]
    names = _families(up, families)
    for piece_start in range(start, end, piece_seconds):
        piece_end = min(end, piece_start + piece_seconds)
        times = {p.spec.index: _times(p, piece_start, piece_end, step) for p in up}
        traffic = {p.spec.index: [p.traffic(t) for t in times[p.spec.index]] for p in up}
        lines: list[str] = []
        for family in names:
            kind = ""
            for page in up:
                at = times[page.spec.index]
                for s in page.series:
                    if s.family != family:
                        continue
                    if openmetrics and not kind:
                        kind = "counter" if s.kind == "counter" else "gauge"
                        lines.append(f"# TYPE {family.removesuffix('_total')} {kind}")
                    head = _labelled(s.head, page.spec.instance)
                    values = _values(s, page, at, traffic[page.spec.index], wander)
                    if openmetrics:
                        lines.extend(f"{head} {v} {t}" for t, v in zip(at, values, strict=True))
                    else:
                        lines.extend(
                            f"{head} {v} {t * 1000}" for t, v in zip(at, values, strict=True)
                        )
        if openmetrics:
            lines.append("# EOF")
        yield "\n".join(lines) + "\n"


def samples_per_node_series(pages: Sequence[NodePage], families: Collection[str] | None) -> int:
    """Series the fleet writes (answering nodes, ``families`` only if given)."""
    wanted = set(_families(pages, families))
    return sum(1 for p in pages if not p.spec.down for s in p.series if s.family in wanted)
