"""A reverse proxy that demands credentials, in front of a real Prometheus or a
real engine page.

Prometheus itself only speaks basic auth and TLS; teams reach it through an
authenticating proxy (OAuth2 proxy, an ingress, Grafana Cloud's gateway), so
the review is tested through one; engines whose metrics need credentials sit
behind one too. Requests (GET or POST) with the expected Authorization header
are forwarded, others get 401, and every request's headers and PromQL query are
recorded for assertions.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from types import TracebackType

from .loopback_http import LoopbackHttp, QuietHandler
from .timeouts import scaled


class _Handler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._forward(None)

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _forward(self, body: bytes | None) -> None:
        proxy: AuthProxy = self.server.owner
        proxy.seen_headers.append(dict(self.headers.items()))
        form = urllib.parse.urlsplit(self.path).query if body is None else body.decode()
        proxy.seen_queries += urllib.parse.parse_qs(form).get("query", [])
        if self.headers.get("Authorization") != proxy.expected_authorization:
            self._reply(401, b"unauthorized\n", "text/plain")
            return
        headers = {
            name: self.headers[name] for name in ("Content-Type", "Accept") if name in self.headers
        }
        request = urllib.request.Request(
            proxy.upstream + self.path, body, headers, method="GET" if body is None else "POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=scaled(60)) as response:
                self._reply(response.status, response.read(), response.headers["Content-Type"])
        except urllib.error.HTTPError as err:
            self._reply(err.code, err.read(), err.headers.get("Content-Type", "text/plain"))

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class AuthProxy:
    """Loopback proxy to ``upstream`` accepting only ``expected_authorization``."""

    def __init__(self, upstream: str, expected_authorization: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.expected_authorization = expected_authorization
        self.seen_headers: list[dict[str, str]] = []
        self.seen_queries: list[str] = []
        self._http = LoopbackHttp(_Handler, self, "auth-proxy")

    @property
    def url(self) -> str:
        return self._http.url

    def __enter__(self) -> AuthProxy:
        self._http.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.stop()
