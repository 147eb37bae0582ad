"""The real exporter daemon as a child process, for end-to-end tests."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from .child_process import ChildProcess
from .timeouts import scaled


class ExporterProcess(ChildProcess):
    """`python -m exporter --config FILE` on a free loopback port."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, "exporter.log", env)
        self.config = dict(config)
        self.config_path = workdir / "exporter.yml"
        self._args = args
        self.prepare()

    def prepare(self) -> None:
        """Write the configuration, listening on this launch's port."""
        web = {**self.config.get("web", {}), "listen_address": f"127.0.0.1:{self.port}"}
        self.config_path.write_text(yaml.safe_dump({**self.config, "web": web}))

    def command(self) -> list[str]:
        return ["--config", str(self.config_path), *self._args]

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, str, bytes]:
        with urllib.request.urlopen(self.url + path, timeout=scaled(timeout)) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (name, sorted labels)."""
        _, _, body = self.get("/metrics")
        result = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return result
