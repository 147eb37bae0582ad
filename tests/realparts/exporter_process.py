"""The real exporter daemon as a child process, for end-to-end tests."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .child_process import ChildProcess
from .samples import page_samples
from .timeouts import scaled


class ExporterProcess(ChildProcess):
    """`python -m exporter --config FILE` on a free loopback port.

    Started once its first collection has finished (`/healthz` says `ok`), or, with
    `first_cycle=False`, as soon as it listens (`/healthz` may still say `starting`).
    """

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        first_cycle: bool = True,
        tls_client: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(workdir, "exporter.log", env)
        self.tls_client = tls_client
        self.config = dict(config)
        self.config_path = workdir / "exporter.yml"
        self._args = args
        self._first_cycle = first_cycle
        self.prepare()

    def start(self) -> ExporterProcess:
        super().start()
        if self._first_cycle:
            self.wait_health("ok")
        return self

    def health(self) -> str:
        """What `/healthz` says (`ok`, `starting`, or why the loop stalled)."""
        try:
            return self.get("/healthz")[2].decode().strip()
        except urllib.error.HTTPError as error:
            return error.read().decode().strip()

    def wait_health(self, wanted: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + scaled(timeout)
        while (said := self.health()) != wanted:
            self._check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"/healthz still says {said!r}, not {wanted!r}:\n{self.log()}")
            time.sleep(0.05)

    def prepare(self) -> None:
        """Write the configuration, listening on this launch's port."""
        web = {**self.config.get("web", {}), "listen_address": f"127.0.0.1:{self.port}"}
        self.config_path.write_text(yaml.safe_dump({**self.config, "web": web}))

    def command(self) -> list[str]:
        return ["--config", str(self.config_path), *self._args]

    def get(
        self, path: str, timeout: float = 10.0, headers: dict[str, str] | None = None
    ) -> tuple[int, str, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        with urllib.request.urlopen(
            request, timeout=scaled(timeout), context=self.tls_client
        ) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()

    def rss_bytes(self) -> int:
        """The daemon's resident memory now (VmRSS of /proc/PID/status)."""
        assert self._proc is not None
        status = Path(f"/proc/{self._proc.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (name, sorted labels)."""
        _, _, body = self.get("/metrics")
        return page_samples(body.decode())
