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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .binary_server import BinaryServer, locate_binary
from .prometheus_server import PrometheusHttpApi
from .remote_write import snappy_literal, write_request
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


def openmetrics_to_import(text: str) -> Iterator[str]:
    """OpenMetrics exposition with timestamps as import lines for
    :meth:`VictoriaMetricsServer.import_prometheus`.

    Comments and ``# EOF`` are dropped, as are ``_created`` series: OpenMetrics'
    counter creation times are metadata, and as series of their own they would
    only be one more (wrong) match for a ``{__name__=~...}`` selector.
    Timestamps go from seconds to milliseconds; every sample must carry one.
    """
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        closing = line.rfind("}")
        series, rest = (line[: closing + 1], line[closing + 1 :]) if closing >= 0 else ("", line)
        fields = rest.split()
        if not series:
            series, fields = fields[0], fields[1:]
        if len(fields) != 2:
            raise ValueError(f"expected name{{labels}} value timestamp: {line!r}")
        if series.split("{", 1)[0].endswith("_created"):
            continue
        yield f"{series} {fields[0]} {round(float(fields[1]) * 1000)}"


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

    def remote_write(
        self, series: Iterable[tuple[Mapping[str, str], Sequence[tuple[int, float]]]]
    ) -> None:
        """Send (labels with ``__name__``, [(timestamp_ms, value)]) by the remote-write
        protocol, which carries staleness markers (``remote_write.STALE_NAN``)."""
        request = urllib.request.Request(
            f"{self.url}/api/v1/write",
            data=snappy_literal(write_request(series)),
            method="POST",
            headers={
                "Content-Type": "application/x-protobuf",
                "Content-Encoding": "snappy",
                "X-Prometheus-Remote-Write-Version": "0.1.0",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=scaled(60)) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise VictoriaMetricsError(f"remote write failed: {exc}\n{self.log_section()}") from exc

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
    when a rule file holds alerting rules). ``extra_flags`` go to vmalert as they are
    (``-datasource.lookback=1h`` evaluates an hour in the past). Its ``/api/v1/rules``
    and ``/api/v1/alerts`` answer as Prometheus's do.
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
        extra_flags: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.extra_flags = list(extra_flags)
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
        return flags + self.extra_flags


def replay_rules(
    rule_files: Sequence[Path],
    server: VictoriaMetricsServer,
    start: datetime,
    end: datetime,
    *,
    workdir: Path,
    evaluation_interval: str | None = None,
    rules_delay: str = "0s",
) -> str:
    """Evaluate rules over ``[start, end]`` with vmalert's replay mode.

    Each group is evaluated at its own ``interval`` (else ``evaluation_interval``,
    vmalert's default 1m) from ``start`` on: the query step is the group's interval,
    not vmalert's 5m default, which would record every 5m whatever the group says.
    Alerting rules write ``ALERTS`` and ``ALERTS_FOR_STATE`` series (labels only; no
    annotation is rendered). Rules reading another rule's results within one run
    need ``rules_delay`` for those to become searchable; running dependent rules in
    separate calls avoids the wait.

    The results are written back into ``server`` by remote write, as a live
    vmalert would have recorded them; :meth:`VictoriaMetricsServer.flush`
    follows so they can be queried at once. Returns vmalert's log.
    """
    cmd = [
        find_vmalert(),
        *(f"-rule={Path(p).resolve()}" for p in rule_files),
        f"-datasource.url={server.url}",
        f"-remoteWrite.url={server.url}",
        # Each group at its own interval, as a live vmalert evaluates it; vmalert's
        # default (5m) would record an hourly group's window twelve times an hour.
        "-datasource.queryStep=0s",
        f"-replay.timeFrom={start.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"-replay.timeTo={end.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        "-replay.disableProgressBar",
        f"-replay.rulesDelay={rules_delay}",
    ]
    if evaluation_interval is not None:
        cmd.append(f"-evaluationInterval={evaluation_interval}")
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
