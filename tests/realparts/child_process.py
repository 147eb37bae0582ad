"""A command of this package run as a child process on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .ports import free_port, wait_http_ok


class ChildProcess:
    """`python -m exporter ARGS...`, ready once `ready_path` answers 200.

    Output goes to a log file in `workdir`, shown when the child dies early.
    """

    ready_path = "/healthz"

    def __init__(self, workdir: Path, log_name: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = workdir / log_name
        self.env = env or {}
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self):
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "llm_cost_exporter", *self.command()],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        wait_http_ok(self.url + self.ready_path, timeout=30, check=self._check_alive)
        return self

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
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
