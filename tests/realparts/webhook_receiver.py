"""An HTTP endpoint that records Alertmanager webhook notifications.

The end of the alerting chain is what operators actually see, so tests assert
on the notifications Alertmanager really POSTed rather than on its API.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .loopback_http import LoopbackHttp, QuietHandler
from .timeouts import scaled

Alert = dict[str, Any]


class _Handler(QuietHandler):
    """Records JSON POST bodies on its server's receiver; answers 200 (400 if not JSON)."""

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            payload = json.loads(raw)
            if not isinstance(payload, dict):
                raise ValueError("payload is not a JSON object")
        except ValueError as exc:
            self.server.owner._record_error(f"{self.path}: {exc}: {raw[:200]!r}")
            self.send_error(400, "expected a JSON object")
            return
        self.server.owner._record(payload)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class WebhookReceiver:
    """Loopback HTTP server, run in a background thread, keeping every webhook payload.

    Binding port 0 lets the OS pick a free port with no race. Use as a context
    manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._payloads: list[dict[str, Any]] = []
        self._errors: list[str] = []
        self._http = LoopbackHttp(_Handler, self, "webhook-receiver")

    @property
    def url(self) -> str:
        """Where Alertmanager should POST, e.g. ``http://127.0.0.1:41234/alerts``."""
        return f"{self._http.url}/alerts"

    def start(self) -> WebhookReceiver:
        self._http.start()
        return self

    def stop(self) -> None:
        """Shut the server down; recorded payloads stay readable. Idempotent."""
        self._http.stop()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, payload: dict[str, Any]) -> None:
        with self._cond:
            self._payloads.append(payload)
            self._cond.notify_all()

    def _record_error(self, message: str) -> None:
        with self._cond:
            self._errors.append(message)

    # -- reading -----------------------------------------------------------

    def payloads(self) -> list[dict[str, Any]]:
        """Every notification body received so far, oldest first (deep copies)."""
        with self._cond:
            return copy.deepcopy(self._payloads)

    def errors(self) -> list[str]:
        """POSTs that were not JSON objects; Alertmanager should never cause any."""
        with self._cond:
            return list(self._errors)

    def alerts(self) -> list[Alert]:
        """All alerts of all notifications, oldest first.

        Each is Alertmanager's alert object (``status``, ``labels``,
        ``annotations``, ``startsAt``, ``endsAt``, ``fingerprint``...), so an alert
        notified twice (firing, then resolved) appears twice.
        """
        with self._cond:
            return _flatten(copy.deepcopy(self._payloads))

    def mark(self) -> int:
        """Number of alerts received so far; pass as ``since`` to ignore older ones."""
        with self._cond:
            return len(_flatten(self._payloads))

    def wait_for(
        self, predicate: Callable[[Alert], bool], timeout: float = 30.0, since: int = 0
    ) -> Alert:
        """Block until an alert (the ``since``-th or later) satisfies ``predicate``; return it.

        ``timeout`` is scaled by ``LLMCOST_TEST_TIMEOUT_SCALE``.

        Raises ``TimeoutError`` listing what did arrive, which usually tells a
        wrong label from a notification that never came.
        """
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                seen = _flatten(self._payloads)[since:]
                for alert in seen:
                    if predicate(alert):
                        return copy.deepcopy(alert)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            summary = [_summary(a) for a in seen] or ["  (none)"]
            errors = list(self._errors)
        raise TimeoutError(
            f"no matching alert within {timeout:g}s; received {len(seen)} since #{since}:\n"
            + "\n".join(summary)
            + (f"\nbad POSTs: {errors}" if errors else "")
        )


def _flatten(payloads: list[dict[str, Any]]) -> list[Alert]:
    return [alert for payload in payloads for alert in payload.get("alerts") or []]


def _summary(alert: Alert) -> str:
    return (
        f"  {alert.get('status')} {json.dumps(alert.get('labels'), sort_keys=True)} "
        f"annotations={json.dumps(alert.get('annotations'), sort_keys=True)} "
        f"startsAt={alert.get('startsAt')} endsAt={alert.get('endsAt')}"
    )
