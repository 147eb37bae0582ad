"""`llm-cost-exporter simulate` as a child process, with its ground truth."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .child_process import ChildProcess
from .timeouts import scaled


class SimulatorProcess(ChildProcess):
    ready_path = "/ground-truth"

    def __init__(self, workdir: Path, *args: str) -> None:
        super().__init__(workdir, "simulator.log")
        self._args = args

    def command(self) -> list[str]:
        return ["simulate", "--web.listen-address", f"127.0.0.1:{self.port}", *self._args]

    def engine_url(self, index: int) -> str:
        return f"{self.url}/engine/{index}/metrics"

    def ground_truth(self) -> dict:
        with urllib.request.urlopen(self.url + "/ground-truth", timeout=scaled(10)) as response:
            return json.load(response)

    def page_tokens(self, *indices: int) -> float:
        """Tokens (prompt and generation) the pages of engines `indices` show now."""
        engines = self.ground_truth()["engines"]
        return sum(
            engines[i]["page"]["prompt_tokens_total"]
            + engines[i]["page"]["generation_tokens_total"]
            for i in indices
        )

    def control(self, **body: Any) -> dict:
        """Switch traffic profiles from now on without restarting engines; return the state.

        For example ``control(profile="steady", level=0.05, engines=[0])``. A
        rejected request raises ``ValueError`` carrying the simulator's reason.
        """
        request = urllib.request.Request(
            self.url + "/control",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=scaled(10)) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            reason = exc.read().decode(errors="replace").strip()
            raise ValueError(
                f"simulator rejected control {body}: HTTP {exc.code}: {reason}"
            ) from exc
