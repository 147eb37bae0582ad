"""The real exporter daemon as a child process, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from .ports import free_port, wait_http_ok


class ExporterProcess:
    """`python -m exporter --config FILE` on a free loopback port."""

    def __init__(self, config: dict[str, Any], workdir: Path, *args: str) -> None:
        self.port = free_port()
        config = dict(config)
        config.setdefault("web", {})["listen_address"] = f"127.0.0.1:{self.port}"
        self.config_path = workdir / "exporter.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "exporter.log"
        self._args = args
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ExporterProcess:
        log = self.log_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config", str(self.config_path), *self._args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_http_ok(self.url + "/healthz", timeout=30, check=self._check_alive)
        return self

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"exporter exited with {self._proc.returncode}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (name, sorted labels)."""
        _, _, body = self.get("/metrics")
        result = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return result

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples().get((name, tuple(sorted(labels.items()))))

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> ExporterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
