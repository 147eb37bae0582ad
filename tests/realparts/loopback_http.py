"""A Python HTTP server on a free loopback port, served from a background thread.

Test parts that stand in for the far end of a real one (a webhook receiver, an
auth proxy, a page that is not Prometheus) share this: the OS picks the port
(binding port 0, no race), handlers reach their owner as ``self.server.owner``,
and stopping shuts the server down and joins its thread.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps pytest output clean."""

    server: OwnedServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """No access log."""


class OwnedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], owner: object) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), handler)


class LoopbackHttp:
    """Serve ``handler`` on 127.0.0.1 while started; a context manager, or start/stop."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], owner: object = None, name: str = "http"
    ) -> None:
        self._handler, self._owner, self._name = handler, owner, name
        self._server: OwnedServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, without a trailing slash."""
        if self._server is None:
            raise RuntimeError(f"{self._name} is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LoopbackHttp:
        if self._server is None:
            self._server = OwnedServer(self._handler, self._owner)
            self._thread = threading.Thread(
                target=self._server.serve_forever, name=self._name, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LoopbackHttp:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
