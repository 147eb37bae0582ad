"""`llm-cost-exporter simulate` as a child process, with its ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from .ports import free_port, wait_http_ok


class SimulatorProcess:
    def __init__(self, workdir: Path, *args: str) -> None:
        self.port = free_port()
        self.log_path = workdir / "simulator.log"
        self._args = args
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def engine_url(self, index: int) -> str:
        return f"{self.url}/engine/{index}/metrics"

    def start(self) -> SimulatorProcess:
        log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "simulate",
                "--web.listen-address",
                f"127.0.0.1:{self.port}",
                *self._args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_http_ok(self.url + "/ground-truth", timeout=30, check=self._check_alive)
        return self

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"simulator exited: {self.log_path.read_text()}")

    def ground_truth(self) -> dict:
        with urllib.request.urlopen(self.url + "/ground-truth", timeout=5) as response:
            return json.load(response)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
