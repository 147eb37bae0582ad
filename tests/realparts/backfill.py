"""Load historical samples and their recording rules into a real Prometheus TSDB.

A month of data cannot be scraped in a test, so it is written as TSDB blocks
with ``promtool tsdb create-blocks-from openmetrics``. Recording rules over
that history are evaluated as ``promtool tsdb create-blocks-from rules`` does,
by range queries to a Prometheus serving the samples' blocks, at the instants
promtool evaluates each group; the results are written into blocks with the
samples, and the next Prometheus started on the data directory sees both.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from promtool_notation import parse_duration

from .prometheus_server import PrometheusError, PrometheusHttpApi, PrometheusServer
from .timeouts import scaled

PROMTOOL_TIMEOUT = 600.0
"""Seconds (before scaling) one promtool run may take: only a hang gets near it."""
NO_GC = {"GOGC": "off"}
"""promtool's environment. Each 2h block it writes allocates a fresh head, and Go's
collector tracing them took most of its CPU time (10 of 15 s for a month of one rule);
without it the resident size barely grows (2.2 to 2.4 GB for a rule, 165 MB for a day
of samples) and the blocks written are the same."""


class HistoricalPrometheusServer(PrometheusServer):
    """A Prometheus that keeps backfilled blocks and scrapes nothing.

    Size/time retention is judged against the newest block, not the clock, so
    the default 15d would delete the first half of a backfilled month at start.
    """

    def __init__(self, workdir: Path, retention: str = "10y", **kwargs: object) -> None:
        self.retention = retention
        super().__init__([], workdir=workdir, **kwargs)  # type: ignore[arg-type]

    def flags(self) -> list[str]:
        return [*super().flags(), f"--storage.tsdb.retention.time={self.retention}"]

    def wait_for_compaction(self) -> int:
        """Wait until Prometheus has merged the backfilled 2h blocks, as a server holding
        a month has long done; return the number of blocks left.

        Its compactor runs a minute after start and merges until nothing is left to
        merge; the next run is triggered only once that one is over, so two runs
        triggered mean the first pass is done.
        """
        while True:
            page = urllib.request.urlopen(f"{self.url}/metrics", timeout=scaled(30)).read()
            values = {
                line.split()[0]: float(line.split()[-1])
                for line in page.decode().splitlines()
                if line.startswith(
                    (
                        "prometheus_tsdb_blocks_loaded ",
                        "prometheus_tsdb_compactions_triggered_total ",
                    )
                )
            }
            if values.get("prometheus_tsdb_compactions_triggered_total", 0) >= 2:
                return int(values["prometheus_tsdb_blocks_loaded"])
            time.sleep(2.0)


def find_promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        raise RuntimeError(
            "'promtool' was not found on PATH; it ships with the Debian 'prometheus' package"
        )
    return found


def _timestamp(when: datetime | float) -> str:
    """promtool takes RFC 3339 or Unix seconds; whole seconds keep it unambiguous."""
    return str(int(when.timestamp() if isinstance(when, datetime) else when))


def _promtool(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    cmd = [find_promtool(), *map(str, args)]
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=scaled(PROMTOOL_TIMEOUT),
        check=False,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
    )
    if result.returncode != 0:
        raise PrometheusError(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout[-2000:]}\n"
            f"{result.stderr[-4000:]}"
        )
    return result.stdout + result.stderr


def split_by_time(openmetrics_text: str, chunk_seconds: int) -> list[str]:
    """Cut an exposition into pieces of ``chunk_seconds`` each, valid on their own.

    promtool 2.42 re-reads its whole input once per 2h block it writes, so a
    month in one file costs hundreds of full parses; a day per file costs a dozen.
    Sample lines must end with a timestamp in seconds.
    """
    pieces: dict[int, list[str]] = {}
    header: list[str] = []
    family_of_piece: dict[int, int] = {}
    family = 0
    for line in openmetrics_text.splitlines():
        if not line or line == "# EOF":
            continue
        if line.startswith("#"):
            if line.startswith("# TYPE"):
                family += 1
                header = []
            header.append(line)
            continue
        key = int(float(line.rsplit(" ", 1)[1])) // chunk_seconds
        lines = pieces.setdefault(key, [])
        if family_of_piece.get(key) != family:
            family_of_piece[key] = family
            lines.extend(header)
        lines.append(line)
    return ["\n".join(pieces[k]) + "\n# EOF\n" for k in sorted(pieces)]


def backfill(
    openmetrics_text: str,
    rule_files: Sequence[Path],
    start: datetime | float,
    end: datetime | float,
    workdir: Path,
    *,
    eval_interval: str = "60s",
    chunk_seconds: int = 86400,
    workers: int | None = None,
) -> Path:
    """Write ``openmetrics_text`` and the rules' results as blocks; return the data dir.

    ``workdir`` becomes the workdir of :class:`HistoricalPrometheusServer`:
    start one with ``HistoricalPrometheusServer(workdir)`` to query the result.
    ``eval_interval`` only applies to rule groups without their own
    ``interval``. Rules are evaluated from ``start`` to ``end``; a rule reading
    another recorded series backfilled in the same call sees nothing (every
    rule is evaluated against the data as it was before the call, as promtool does).
    The exposition is written a day at a time (see :func:`split_by_time`), each day
    by a promtool process of its own, ``workers`` at a time (default: one per CPU).

    With rules, that is done twice: the samples alone into a scratch TSDB that the
    rules are evaluated on (see :func:`rule_results`), then the samples and the
    results together, so that no block overlaps another: Prometheus merges
    overlapping blocks series by series a minute after it starts, work it would do
    while the tests run.
    """
    workdir = Path(workdir)
    if rule_files:
        evaluation = workdir / "evaluation"
        shutil.rmtree(evaluation, ignore_errors=True)
        samples = split_by_time(openmetrics_text, chunk_seconds)
        backfill_pieces(samples, [], start, end, evaluation, workers=workers)
        with HistoricalPrometheusServer(evaluation) as server:
            results = rule_results(
                rule_files, server, start, end, workdir / "probes", eval_interval=eval_interval
            )
        shutil.rmtree(evaluation, ignore_errors=True)
        openmetrics_text = f"{openmetrics_text}\n{results}"
    return backfill_pieces(
        split_by_time(openmetrics_text, chunk_seconds), [], start, end, workdir, workers=workers
    )


def backfill_pieces(
    pieces: Iterable[str],
    rule_files: Sequence[Path],
    start: datetime | float,
    end: datetime | float,
    workdir: Path,
    *,
    eval_interval: str = "60s",
    workers: int | None = None,
) -> Path:
    """:func:`backfill` for an exposition already cut into pieces, each valid alone
    (TYPE lines and ``# EOF`` of its own), taken one at a time as they come: data too
    large to hold whole is generated a piece at a time and never held at once. The
    rules' results are written after the pieces, as blocks of their own that overlap
    theirs (see :func:`backfill` for what that costs Prometheus)."""
    workdir = Path(workdir)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    workers = workers or max(1, os.cpu_count() or 1)
    _pieces_to_blocks(pieces, workdir / "pieces", data, workers)
    if not rule_files:
        return data

    server = HistoricalPrometheusServer(workdir)
    try:
        server.start()
        results = rule_results(
            rule_files, server, start, end, workdir / "probes", eval_interval=eval_interval
        )
    finally:
        server.stop()
    # Moved in while no Prometheus runs: a running one would only notice them at its
    # next block reload, and tests want them visible as soon as the next one is ready.
    _pieces_to_blocks(split_by_time(results, 86400), workdir / "rule-pieces", data, workers)
    return data


def _pieces_to_blocks(pieces: Iterable[str], scratch: Path, data: Path, workers: int) -> None:
    """Each piece of OpenMetrics as blocks by a promtool of its own, ``workers`` at a
    time; the blocks are moved into ``data``."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[Future[None]] = []
        for i, text in enumerate(pieces):
            directory = scratch / f"piece-{i}"
            directory.mkdir()
            (directory / "samples.om").write_text(text)
            del text
            pending.append(pool.submit(_samples_to_blocks, directory))
            while len(pending) >= workers:
                pending.pop(0).result()
        for future in pending:
            future.result()
    _move_blocks(scratch, data)


def _samples_to_blocks(directory: Path) -> None:
    """The piece of the exposition in ``directory/samples.om`` as blocks in
    ``directory/blocks``; the piece is removed once written."""
    _promtool(
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        "--quiet",
        "samples.om",
        "blocks",
        cwd=directory,
        env=NO_GC,
    )
    (directory / "samples.om").unlink()


def _move_blocks(scratch: Path, data: Path) -> None:
    """Move every block written under ``scratch/*/blocks`` into ``data``; remove ``scratch``."""
    for block in scratch.glob("*/blocks/*"):
        if block.is_dir():
            shutil.move(str(block), data / block.name)
    shutil.rmtree(scratch, ignore_errors=True)


def rule_results(
    rule_files: Sequence[Path],
    server: PrometheusHttpApi,
    start: datetime | float,
    end: datetime | float,
    scratch: Path,
    *,
    eval_interval: str = "60s",
) -> str:
    """The recording rules' results from ``start`` to ``end``, as OpenMetrics.

    What ``promtool tsdb create-blocks-from rules`` writes: each rule's expression
    evaluated by range queries to ``server`` at the instants promtool evaluates its
    group (see :func:`first_evaluation`), every ``interval`` (``eval_interval`` for a
    group without one) up to ``end`` included; each series keeps the query's labels,
    with the rule's own over them and the rule's name. One difference: promtool 2.42
    writes a single sample for a group whose interval is longer than its 2h blocks,
    where this writes one per interval. promtool itself writes every rule as blocks of
    its own, one per 2h (~25 ms each: ~10 s for a month of one rule, three times that
    on a busy disk); as text, every rule's results go into the same blocks, with the
    samples' (:func:`backfill`) or after them (:func:`backfill_pieces`).
    """
    end_ms = round(_seconds(end) * 1000)
    families: dict[str, list[str]] = {}
    groups = [g for path in rule_files for g in yaml.safe_load(Path(path).read_text())["groups"]]
    for n, group in enumerate(groups):
        records = [rule for rule in group["rules"] if "record" in rule]
        if not records:
            continue
        step_ms = round(parse_duration(str(group.get("interval", eval_interval))) * 1000)
        first = first_evaluation(
            group, server, start, end, scratch / f"group-{n}", eval_interval=eval_interval
        )
        if first is None:
            continue
        for rule in records:
            lines = families.setdefault(rule["record"], [])
            own = {str(k): str(v) for k, v in (rule.get("labels") or {}).items()}
            for series in _range_query(server, rule["expr"], first, end_ms, step_ms):
                labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
                head = rule["record"] + _labels_text({**labels, **own})
                lines.extend(
                    f"{head} {value} {_timestamp_text(round(float(t) * 1000))}"
                    for t, value in series["values"]
                )
    shutil.rmtree(scratch, ignore_errors=True)
    out: list[str] = []
    for name, lines in families.items():
        out.append(f"# TYPE {name} unknown")
        out.extend(lines)
    out.append("# EOF")
    return "\n".join(out) + "\n"


def first_evaluation(
    group: dict[str, Any],
    server: PrometheusHttpApi,
    start: datetime | float,
    end: datetime | float,
    directory: Path,
    *,
    eval_interval: str = "60s",
) -> int | None:
    """The first instant (Unix ms) at or after ``start`` at which promtool evaluates
    ``group``'s rules, or ``None`` if it evaluates none by ``end``.

    Prometheus offsets a group's evaluations into its interval by a hash of the
    group's name and of the rule file's name as given, so promtool is asked: a rule
    that always answers, in a group of the same name and interval, in a file named
    ``rules.yml`` in ``directory`` (made, then removed), evaluated over one interval;
    its first block starts at the instant.
    """
    step = parse_duration(str(group.get("interval", eval_interval)))
    probe: dict[str, Any] = {
        "name": group["name"],
        "rules": [{"record": "backfill_probe", "expr": "vector(1)"}],
    }
    if "interval" in group:
        probe["interval"] = group["interval"]
    directory.mkdir(parents=True)
    (directory / "rules.yml").write_text(json.dumps({"groups": [probe]}))
    _promtool(
        "tsdb",
        "create-blocks-from",
        "rules",
        "--quiet",
        f"--start={_timestamp(start)}",
        f"--end={_timestamp(min(_seconds(end), _seconds(start) + math.ceil(step)))}",
        f"--url={server.url}",
        f"--eval-interval={eval_interval}",
        "--output-dir=blocks",
        "rules.yml",
        cwd=directory,
        env=NO_GC,
    )
    starts = [
        int(json.loads(meta.read_text())["minTime"])
        for meta in (directory / "blocks").glob("*/meta.json")
    ]
    shutil.rmtree(directory, ignore_errors=True)
    return min(starts) if starts else None


_MAX_POINTS = 10_000
"""Steps per range query: Prometheus answers at most 11,000 points per series."""


def _range_query(
    server: PrometheusHttpApi, expr: str, first_ms: int, end_ms: int, step_ms: int
) -> Iterator[dict[str, Any]]:
    """``expr`` at ``first_ms`` and every ``step_ms`` after it up to ``end_ms``: the
    series of each range query, a query per ``_MAX_POINTS`` steps."""
    at = first_ms
    while at <= end_ms:
        last = min(end_ms, at + (_MAX_POINTS - 1) * step_ms)
        yield from server.query_range(expr, at / 1000, last / 1000, step_ms / 1000)
        at = last + step_ms


def _seconds(when: datetime | float) -> float:
    return when.timestamp() if isinstance(when, datetime) else float(when)


def _timestamp_text(ms: int) -> str:
    """``ms`` as OpenMetrics seconds that promtool reads back as ``ms``: it multiplies
    the float by 1000 and truncates, so the text says half a millisecond more."""
    return f"{ms // 1000}.{ms % 1000:03d}5"


def _labels_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""

    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{escaped(v)}"' for k, v in sorted(labels.items())) + "}"
