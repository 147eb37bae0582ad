"""Run a real Alertmanager binary for end-to-end alerting tests.

Whether an alert really reaches a receiver depends on Alertmanager's routing,
grouping and timing, which no mock reproduces; so alert tests route through
the real server to a webhook the test owns.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .ports import free_port, wait_http_ok
from .prometheus_server import _kill_quietly

DEBIAN_PACKAGE = "prometheus-alertmanager"
# Debian names the binary after the package; upstream tarballs call it alertmanager.
_BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")
_DEBIAN_DEFAULT = "/usr/bin/prometheus-alertmanager"
_PORT_RETRIES = 3


class AlertmanagerError(RuntimeError):
    """Alertmanager failed to start or an API call did not succeed."""


def find_alertmanager_binary() -> str:
    """Locate the binary via ``ALERTMANAGER_BIN``, ``PATH`` or the Debian default path."""
    override = os.environ.get("ALERTMANAGER_BIN")
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise RuntimeError(f"ALERTMANAGER_BIN={override!r} is not an executable file")
    for name in _BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    # /usr/bin may be missing from a minimal PATH; the package still installs there.
    if os.path.isfile(_DEBIAN_DEFAULT) and os.access(_DEBIAN_DEFAULT, os.X_OK):
        return _DEBIAN_DEFAULT
    raise RuntimeError(
        f"No Alertmanager binary ({' or '.join(_BINARY_NAMES)}) was found on PATH. Install "
        f"the Debian package '{DEBIAN_PACKAGE}' (apt-get install {DEBIAN_PACKAGE}), run "
        "'bash tests/install-test-deps.sh', or point ALERTMANAGER_BIN at a binary."
    )


class AlertmanagerServer:
    """A throwaway Alertmanager on 127.0.0.1 sending every alert to one webhook.

    Timings default to the fastest that still exercise real grouping: the first
    notification of a group goes out after ``group_wait``, changes to it
    (including resolutions, since ``send_resolved`` is on) after
    ``group_interval``, and unchanged firing groups are repeated only after
    ``repeat_interval``. Clustering is disabled, so nothing listens or gossips
    beyond the loopback HTTP port. Config, storage and log live in one
    temporary directory, removed on stop unless ``keep_workdir`` is set or
    ``workdir`` was supplied.
    """

    def __init__(
        self,
        webhook_url: str,
        *,
        group_by: Sequence[str] = ("alertname", "instance"),
        group_wait: str = "0s",
        group_interval: str = "1s",
        repeat_interval: str = "1h",
        send_resolved: bool = True,
        workdir: Path | None = None,
        keep_workdir: bool = False,
        startup_timeout: float = 30.0,
        binary: str | None = None,
    ) -> None:
        self.webhook_url = webhook_url
        self.group_by = list(group_by)
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.send_resolved = send_resolved
        self.startup_timeout = startup_timeout
        self._binary = binary
        self._own_workdir = workdir is None
        self._keep_workdir = keep_workdir or workdir is not None
        self._workdir: Path | None = Path(workdir) if workdir is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._finalizer: weakref.finalize | None = None
        self.port: int | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def workdir(self) -> Path:
        """Directory holding ``alertmanager.yml``, ``alertmanager.log`` and ``data/``."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="llmcost-alertmanager-"))
        return self._workdir

    @property
    def config_path(self) -> Path:
        return self.workdir / "alertmanager.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "alertmanager.log"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``; pass it to ``PrometheusServer``."""
        if self.port is None:
            raise AlertmanagerError("Alertmanager is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def config(self) -> dict[str, Any]:
        """The configuration that will be written, handy for debugging failures."""
        return {
            "route": {
                "receiver": "webhook",
                "group_by": self.group_by,
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [
                {
                    "name": "webhook",
                    "webhook_configs": [
                        {"url": self.webhook_url, "send_resolved": self.send_resolved}
                    ],
                }
            ],
        }

    def start(self) -> AlertmanagerServer:
        """Write the config, launch the binary and block until ``/-/ready``."""
        if self.running:
            return self
        binary = self._binary or find_alertmanager_binary()
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        # JSON is valid YAML, which keeps this helper free of a YAML dependency.
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n")

        for attempt in range(1, _PORT_RETRIES + 1):
            self._launch(binary)
            try:
                wait_http_ok(
                    f"{self.url}/-/ready", timeout=self.startup_timeout, check=self._check_alive
                )
                return self
            except (AlertmanagerError, TimeoutError) as exc:
                port_taken = "address already in use" in self.log_tail(200).lower()
                self._terminate()
                if port_taken and attempt < _PORT_RETRIES:
                    continue
                raise AlertmanagerError(
                    f"Alertmanager did not become ready on {self.url}: {exc}\n"
                    f"config: {self.config_path}\n{self._log_section()}"
                ) from exc
        raise AssertionError("unreachable")

    def _launch(self, binary: str) -> None:
        self.port = free_port()
        cmd = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Empty disables HA mode: no gossip listener, no peer lookups.
            "--cluster.listen-address=",
        ]
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _terminate
        self._log_file.write(f"$ {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        self._finalizer = weakref.finalize(self, _kill_quietly, self._proc)

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise AlertmanagerError(f"alertmanager exited early with code {self._proc.returncode}")

    def _terminate(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate (SIGTERM, then SIGKILL after ``timeout``) and clean up. Idempotent."""
        self._terminate(timeout)
        if self._own_workdir and not self._keep_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> AlertmanagerServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- diagnostics -------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        """Last ``lines`` lines of the server's combined stdout/stderr."""
        if self._workdir is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def log_errors(self, limit: int = 10) -> list[str]:
        """Error-level log lines, e.g. failed webhook deliveries."""
        if self._workdir is None or not self.log_path.exists():
            return []
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if "level=error" in line][:limit]

    def _log_section(self, lines: int = 30) -> str:
        parts = []
        errors = self.log_errors()
        if errors:
            parts.append("--- alertmanager errors ---\n" + "\n".join(errors))
        parts.append(f"--- alertmanager log tail ({self.log_path}) ---\n{self.log_tail(lines)}")
        return "\n".join(parts)

    # -- HTTP API ----------------------------------------------------------

    def alerts(self, *filters: str) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds, from ``GET /api/v2/alerts``.

        ``filters`` are label matchers such as ``'alertname="X"'``. Each alert has
        ``labels``, ``annotations``, ``startsAt``, ``endsAt`` and ``status.state``.
        """
        params = [("filter", f) for f in filters]
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}/api/v2/alerts{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return list(json.load(resp))
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode(errors="replace")
            raise AlertmanagerError(
                f"GET {url}: HTTP {exc.code}: {raw[:500]}\n{self._log_section()}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise AlertmanagerError(
                f"cannot reach Alertmanager at {self.url}: {exc}\n{self._log_section()}"
            ) from exc
