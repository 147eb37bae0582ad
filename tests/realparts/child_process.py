"""A command of this package run as a child process on a free loopback port."""

from __future__ import annotations

import os
import resource
import ssl
import subprocess
import sys
from pathlib import Path

from .ports import free_port, wait_http_ok
from .timeouts import scaled

_PORT_RETRIES = 3


class ChildProcess:
    """`python -m exporter ARGS...`, ready once `ready_path` answers 200.

    Output goes to a log file in `workdir`, shown when the child dies early.
    The port is free when picked but not held, so another process may take it
    before the child binds it; a child that exits because its address is in
    use is started again on a new port.
    """

    ready_path = "/healthz"
    startup_timeout = 60.0
    """Seconds (before scaling) the child may take to answer `ready_path`."""

    tls_client: ssl.SSLContext | None = None
    """Set to serve (and be waited for) over HTTPS with this client context."""
    fd_limit: int | None = None
    """Set to run the child under this soft and hard RLIMIT_NOFILE (`ulimit -n`)."""

    def __init__(self, workdir: Path, log_name: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = workdir / log_name
        self.env = env or {}
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_client is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Called before each launch, once `self.port` is final for it."""

    def start(self):
        if self._proc is not None and self._proc.poll() is None:
            # A second launch would leave the first process running, unreferenced.
            raise RuntimeError(f"already running (pid {self._proc.pid}); stop it first")
        for attempt in range(1, _PORT_RETRIES + 1):
            if attempt > 1:
                self.port = free_port()
            self.prepare()
            with self.log_path.open("wb") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "llm_cost_exporter", *self.command()],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                    preexec_fn=self._limit_fds if self.fd_limit is not None else None,
                )
            try:
                wait_http_ok(
                    self.url + self.ready_path,
                    timeout=self.startup_timeout,
                    check=self._check_alive,
                    context=self.tls_client,
                )
                return self
            except RuntimeError:
                if attempt < _PORT_RETRIES and "address already in use" in self.log().lower():
                    continue
                raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _limit_fds(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.fd_limit, self.fd_limit))

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(
                f"{self.command()[:1]} exited with {self._proc.returncode}:\n{self.log()}"
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.kill()
        self._proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
