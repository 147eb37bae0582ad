"""A reverse proxy in front of a real Prometheus that demands credentials.

Prometheus itself only speaks basic auth and TLS; teams reach it through an
authenticating proxy (OAuth2 proxy, an ingress, Grafana Cloud's gateway), so
the review is tested through one: requests with the expected Authorization
header are forwarded unchanged, others get 401, and every request's headers
are recorded for assertions.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        proxy = self.server.proxy
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        proxy.seen_headers.append(dict(self.headers.items()))
        if self.headers.get("Authorization") != proxy.expected_authorization:
            self._reply(401, b"unauthorized\n", "text/plain")
            return
        request = urllib.request.Request(
            proxy.upstream + self.path,
            body,
            {"Content-Type": self.headers.get("Content-Type", "")},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                self._reply(response.status, response.read(), response.headers["Content-Type"])
        except urllib.error.HTTPError as err:
            self._reply(err.code, err.read(), err.headers.get("Content-Type", "text/plain"))

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keep pytest output clean."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: AuthProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)


class AuthProxy:
    """Loopback proxy to ``upstream`` accepting only ``expected_authorization``."""

    def __init__(self, upstream: str, expected_authorization: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.expected_authorization = expected_authorization
        self.seen_headers: list[dict[str, str]] = []
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> AuthProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
