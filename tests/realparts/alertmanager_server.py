"""Run a real Alertmanager binary for end-to-end alerting tests.

Whether an alert really reaches a receiver depends on Alertmanager's routing,
grouping and timing, which no mock reproduces; so alert tests route through
the real server to a webhook the test owns.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .binary_server import BinaryServer, locate_binary
from .timeouts import scaled

DEBIAN_PACKAGE = "prometheus-alertmanager"
# Debian names the binary after the package; upstream tarballs call it alertmanager.
_BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")
_DEBIAN_DEFAULT = "/usr/bin/prometheus-alertmanager"


class AlertmanagerError(RuntimeError):
    """Alertmanager failed to start or an API call did not succeed."""


def find_alertmanager_binary() -> str:
    """Locate the binary via ``ALERTMANAGER_BIN``, ``PATH`` or the Debian default path."""
    return locate_binary("ALERTMANAGER_BIN", _BINARY_NAMES, DEBIAN_PACKAGE, (_DEBIAN_DEFAULT,))


class AlertmanagerServer(BinaryServer):
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

    name = "alertmanager"
    error = AlertmanagerError

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
        startup_timeout: float = 60.0,
        binary: str | None = None,
    ) -> None:
        self.webhook_url = webhook_url
        self.group_by = list(group_by)
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.send_resolved = send_resolved
        super().__init__(
            workdir=workdir,
            keep_workdir=keep_workdir,
            startup_timeout=startup_timeout,
            binary=binary,
        )

    # -- what BinaryServer runs ------------------------------------------------

    def find_binary(self) -> str:
        return find_alertmanager_binary()

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

    def flags(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Empty disables HA mode: no gossip listener, no peer lookups.
            "--cluster.listen-address=",
        ]

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
            with urllib.request.urlopen(url, timeout=scaled(30)) as resp:
                return list(json.load(resp))
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode(errors="replace")
            raise AlertmanagerError(
                f"GET {url}: HTTP {exc.code}: {raw[:500]}\n{self.log_section()}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise AlertmanagerError(
                f"cannot reach Alertmanager at {self.url}: {exc}\n{self.log_section()}"
            ) from exc
