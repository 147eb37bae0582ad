"""Run a real VictoriaMetrics (single node) and ``vmalert`` for tests.

VictoriaMetrics answers the Prometheus query API with its own engine
(MetricsQL), so the same rules, review queries and dashboards can be proved
against it. History goes in through its Prometheus text import API with
millisecond timestamps, and is visible to queries once flushed.
``vmalert`` evaluates rule files against it, live or replayed over a past
range (its ``-replay.*`` mode, which writes the results back by remote write).
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .binary_server import BinaryServer, locate_binary
from .prometheus_server import PrometheusHttpApi
from .timeouts import scaled

DEBIAN_PACKAGE = "victoria-metrics"
REPLAY_TIMEOUT = 900.0
"""Seconds (before scaling) a replay may take: only a hang gets near it."""


class VictoriaMetricsError(RuntimeError):
    """VictoriaMetrics or vmalert failed to start, or an API call did not succeed."""


def find_victoria_metrics() -> str:
    return locate_binary(
        "VICTORIA_METRICS_BIN",
        ("victoria-metrics",),
        DEBIAN_PACKAGE,
        ("/usr/bin/victoria-metrics",),
    )


def find_vmalert() -> str:
    return locate_binary("VMALERT_BIN", ("vmalert",), DEBIAN_PACKAGE, ("/usr/bin/vmalert",))


class VictoriaMetricsServer(PrometheusHttpApi, BinaryServer):
    """A throwaway single-node VictoriaMetrics on 127.0.0.1 that scrapes nothing.

    Retention is a century so backfilled months are kept. The rollup cache is
    off: data imported into the past would otherwise be hidden by results
    cached before it arrived. ``latency_offset`` (VictoriaMetrics' default 30s)
    hides the newest samples from queries; live tests set it to ``0s``.
    """

    name = "victoria-metrics"
    error = VictoriaMetricsError

    def __init__(self, *, latency_offset: str = "0s", **kwargs: Any) -> None:
        self.latency_offset = latency_offset
        super().__init__(**kwargs)

    def find_binary(self) -> str:
        return find_victoria_metrics()

    def config(self) -> dict[str, Any]:
        return {}

    def flags(self) -> list[str]:
        return [
            f"-storageDataPath={self.workdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
            "-search.disableCache",
            f"-search.latencyOffset={self.latency_offset}",
            "-loggerLevel=WARN",
        ]

    def import_prometheus(self, lines: Iterable[str], chunk_lines: int = 200_000) -> int:
        """POST Prometheus text lines (``name{labels} value timestamp_ms``); returns lines sent.

        Comment lines are skipped by the server. Call :meth:`flush` before querying.
        """
        sent = 0
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= chunk_lines:
                sent += self._post_import(chunk)
                chunk = []
        if chunk:
            sent += self._post_import(chunk)
        return sent

    def _post_import(self, chunk: Sequence[str]) -> int:
        body = ("\n".join(chunk) + "\n").encode()
        request = urllib.request.Request(
            f"{self.url}/api/v1/import/prometheus", data=body, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=scaled(300)) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise VictoriaMetricsError(
                f"import of {len(chunk)} lines failed: {exc}\n{self.log_section()}"
            ) from exc
        return len(chunk)

    def flush(self) -> None:
        """Make everything imported so far visible to queries."""
        try:
            with urllib.request.urlopen(
                f"{self.url}/internal/force_flush", timeout=scaled(120)
            ) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise VictoriaMetricsError(f"force_flush failed: {exc}\n{self.log_section()}") from exc


class VmalertServer(PrometheusHttpApi, BinaryServer):
    """``vmalert`` evaluating ``rule_files`` against ``datasource`` every ``interval``.

    Recorded series are written back to ``remote_write`` (default: the
    datasource), alerts go to ``notifier`` if given (vmalert 1.79 requires one
    when a rule file holds alerting rules). Its ``/api/v1/rules`` and
    ``/api/v1/alerts`` answer as Prometheus's do.
    """

    name = "vmalert"
    error = VictoriaMetricsError

    def __init__(
        self,
        rule_files: Sequence[Path],
        datasource: str,
        *,
        interval: str = "1s",
        remote_write: str | None = None,
        notifier: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.datasource = datasource
        self.interval = interval
        self.remote_write = remote_write or datasource
        self.notifier = notifier
        super().__init__(**kwargs)

    def find_binary(self) -> str:
        return find_vmalert()

    def config(self) -> dict[str, Any]:
        return {"rule_files": [str(p) for p in self.rule_files]}

    def flags(self) -> list[str]:
        flags = [
            *(f"-rule={p}" for p in self.rule_files),
            f"-datasource.url={self.datasource}",
            f"-remoteWrite.url={self.remote_write}",
            "-remoteWrite.flushInterval=1s",
            f"-evaluationInterval={self.interval}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-loggerLevel=WARN",
        ]
        if self.notifier:
            flags.append(f"-notifier.url={self.notifier}")
        return flags


def replay_rules(
    rule_files: Sequence[Path],
    server: VictoriaMetricsServer,
    start: datetime,
    end: datetime,
    *,
    workdir: Path,
) -> str:
    """Evaluate recording rules over ``[start, end]`` with vmalert's replay mode.

    The results are written back into ``server`` by remote write, as a live
    vmalert would have recorded them; :meth:`VictoriaMetricsServer.flush`
    follows so they can be queried at once. Returns vmalert's log.
    """
    cmd = [
        find_vmalert(),
        *(f"-rule={Path(p).resolve()}" for p in rule_files),
        f"-datasource.url={server.url}",
        f"-remoteWrite.url={server.url}",
        f"-replay.timeFrom={start.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"-replay.timeTo={end.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        "-replay.disableProgressBar",
        "-replay.rulesDelay=0s",
    ]
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=scaled(REPLAY_TIMEOUT),
        check=False,
        cwd=workdir,
    )
    if result.returncode != 0:
        raise VictoriaMetricsError(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stderr[-4000:]}"
        )
    server.flush()
    return result.stderr


class VmagentServer(BinaryServer):
    """``vmagent`` scraping the jobs in ``scrape_configs`` and writing to ``remote_write``
    (a VictoriaMetrics' ``/api/v1/write``)."""

    name = "vmagent"
    error = VictoriaMetricsError

    def __init__(
        self, scrape_configs: Sequence[dict[str, Any]], remote_write: str, **kwargs: Any
    ) -> None:
        self.scrape_configs = list(scrape_configs)
        self.remote_write = remote_write
        super().__init__(**kwargs)

    def find_binary(self) -> str:
        return locate_binary("VMAGENT_BIN", ("vmagent",), DEBIAN_PACKAGE, ("/usr/bin/vmagent",))

    def config(self) -> dict[str, Any]:
        return {"scrape_configs": self.scrape_configs}

    def flags(self) -> list[str]:
        return [
            f"-promscrape.config={self.config_path}",
            f"-remoteWrite.url={self.remote_write}",
            f"-remoteWrite.tmpDataPath={self.workdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-loggerLevel=WARN",
        ]
