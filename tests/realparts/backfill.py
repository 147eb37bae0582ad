"""Load historical samples and their recording rules into a real Prometheus TSDB.

A month of data cannot be scraped in a test, so it is written as TSDB blocks
with ``promtool tsdb create-blocks-from openmetrics``. Recording rules over
that history are backfilled with ``promtool tsdb create-blocks-from rules``,
which evaluates them through the query API of a Prometheus already serving
the first blocks; the rule blocks it writes are then moved into the data
directory, and the next Prometheus started on it sees both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import yaml

from .prometheus_server import PrometheusError, PrometheusServer
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
    another recorded series backfilled in the same call sees nothing (promtool
    evaluates every rule against the data as it was before the call).
    The exposition is written a day at a time (see :func:`split_by_time`);
    promtool writes one block per rule and 2h, ~25 ms each, so a month costs
    ~10 s per rule. Both the days and the rules (split one per file) run as
    separate promtool processes, ``workers`` at a time (default: one per CPU).
    """
    return backfill_pieces(
        split_by_time(openmetrics_text, chunk_seconds),
        rule_files,
        start,
        end,
        workdir,
        eval_interval=eval_interval,
        workers=workers,
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
    large to hold whole is generated a piece at a time and never held at once."""
    workdir = Path(workdir)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    workers = workers or max(1, os.cpu_count() or 1)
    scratch = workdir / "pieces"
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
    if not rule_files:
        return data

    rule_blocks = workdir / "rule-blocks"
    shutil.rmtree(rule_blocks, ignore_errors=True)
    rule_blocks.mkdir()
    server = HistoricalPrometheusServer(workdir)
    try:
        server.start()
        _backfill_rules_in_parallel(
            [Path(f).resolve() for f in rule_files],
            [
                "--quiet",
                f"--start={_timestamp(start)}",
                f"--end={_timestamp(end)}",
                f"--url={server.url}",
                f"--eval-interval={eval_interval}",
            ],
            rule_blocks,
            workers=workers,
        )
    finally:
        server.stop()
    # Moved in while no Prometheus runs: a running one would only notice them at its
    # next block reload, and tests want them visible as soon as the next one is ready.
    _move_blocks(rule_blocks, data)
    return data


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


def _in_parallel(jobs: Sequence[Callable[[], None]], workers: int) -> None:
    """Run ``jobs`` ``workers`` at a time; the first failure is raised."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def _backfill_rules_in_parallel(
    rule_files: Sequence[Path], flags: list[str], output: Path, workers: int
) -> None:
    """One promtool per rule, each in its own directory under ``output``.

    Prometheus offsets a group's evaluations by a hash of its file name and
    group name; every copy is named ``rules.yml`` and keeps its group's name,
    so each rule is evaluated at the same instants as in one file.
    """
    single: list[Path] = []
    for path in rule_files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" not in rule:
                    continue
                directory = output / f"rule-{len(single)}"
                directory.mkdir()
                (directory / "rules.yml").write_text(
                    json.dumps({"groups": [{**group, "rules": [rule]}]})
                )
                single.append(directory)

    def run(directory: Path) -> None:
        _promtool(
            "tsdb",
            "create-blocks-from",
            "rules",
            *flags,
            "--output-dir=blocks",
            "rules.yml",
            cwd=directory,
            env=NO_GC,
        )

    _in_parallel([lambda d=d: run(d) for d in single], workers)
