"""A fake OTLP metrics backend: receives what the official OTLP exporters push.

No real OTLP backend (an OpenTelemetry Collector) can be installed here, so this
stands in for one. It speaks the real wire formats with the official
opentelemetry-proto messages: OTLP/HTTP (POST /v1/metrics, a protobuf body, gzip
or deflate when Content-Encoding says so) from a Python HTTP/1.1 server, and
OTLP/gRPC (MetricsService/Export) from a real grpc server. Either can serve TLS,
and require a client certificate.

It binds 127.0.0.1 on a port the OS picks, or a given one, and starts again on
the same port after a stop, so an exporter keeps its endpoint across an outage.
It can be told to answer every request with an error status (with a retry
delay) or to hang before answering, and it records every request it receives.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import socket
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from . import otlp_points
from .certificates import Issued, Pki
from .loopback_http import QuietHandler
from .otlp_points import Point, SeriesKey
from .timeouts import scaled

Protocol = Literal["http", "grpc"]
METRICS_PATH = "/v1/metrics"
PROTOBUF = "application/x-protobuf"
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
"""The trailing metadata the gRPC exporter reads its retry delay from."""
_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
}


@dataclass(frozen=True)
class Received:
    """One request as it arrived, and what the receiver answered."""

    at: float
    """Arrival, in `time.time()` seconds."""
    headers: dict[str, str]
    """HTTP headers or gRPC invocation metadata, names lower-cased."""
    compressed: bool | None
    """HTTP: the body came gzip or deflate encoded. gRPC: None, as grpc decompresses
    before the servicer sees a message (see `refuse_compressed`)."""
    request: ExportMetricsServiceRequest | None
    """The decoded request; None when it could not be decoded (see `error`)."""
    answer: int | str
    """The HTTP status, or the gRPC status code's name ("OK", "UNAVAILABLE")."""
    client_cn: str | None = None
    """The common name of the client certificate presented over TLS."""
    error: str = ""
    """Why a malformed request was refused."""

    @property
    def accepted(self) -> bool:
        return self.answer in (200, "OK")


@dataclass(frozen=True)
class _Mode:
    status: int | grpc.StatusCode | None = None
    retry_after: float | None = None
    hang: float = 0.0


class OtlpReceiver:
    """A fake OTLP metrics backend on 127.0.0.1; a context manager, or start/stop.

    `tls` is the server's certificate and key; with `client_ca` too, clients must
    present a certificate that CA signed. `refuse_compressed` refuses compressed
    requests (HTTP 415; gRPC: only identity is enabled, so grpc itself answers
    UNIMPLEMENTED before anything is recorded) to prove an exporter compresses.
    """

    def __init__(
        self,
        protocol: Protocol = "http",
        *,
        port: int = 0,
        tls: Issued | None = None,
        client_ca: Path | None = None,
        refuse_compressed: bool = False,
    ) -> None:
        if protocol not in ("http", "grpc"):
            raise ValueError(f"protocol {protocol!r}: expected 'http' or 'grpc'")
        if client_ca is not None and tls is None:
            raise ValueError("client_ca needs tls: client certificates are checked over TLS")
        self.protocol: Protocol = protocol
        self.port = port
        """The bound port once started (kept for the next start)."""
        self.tls, self.client_ca, self.refuse_compressed = tls, client_ca, refuse_compressed
        self._cond = threading.Condition()
        self._received: list[Received] = []
        self._mode = _Mode()
        self._stopped = threading.Event()
        self._http: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc: grpc.Server | None = None

    # -- where exporters send ------------------------------------------------

    @property
    def endpoint(self) -> str:
        """What an exporter is given: HTTP ``http(s)://127.0.0.1:PORT/v1/metrics``,
        gRPC ``127.0.0.1:PORT``."""
        if not self.port:
            raise RuntimeError("the receiver has not started yet: no port")
        if self.protocol == "grpc":
            return f"127.0.0.1:{self.port}"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{METRICS_PATH}"

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        """Serve, on the same port as before after a stop."""
        if self._http is not None or self._grpc is not None:
            return self
        self._stopped.clear()
        if self.protocol == "http":
            self._start_http()
        else:
            self._start_grpc()
        return self

    def stop(self) -> None:
        """Stop serving and cut open connections: clients see a refused connection.
        Hanging requests end unanswered. Recorded requests stay readable. Idempotent."""
        self._stopped.set()
        http, self._http = self._http, None
        if http is not None:
            http.shutdown()
            http.server_close()
            http.cut_connections()
        if self._http_thread is not None:
            self._http_thread.join(timeout=scaled(5))
            self._http_thread = None
        server, self._grpc = self._grpc, None
        if server is not None:
            server.stop(grace=None).wait(timeout=scaled(5))

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_http(self) -> None:
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls.cert, self.tls.key)
            if self.client_ca is not None:
                context.load_verify_locations(self.client_ca)
                context.verify_mode = ssl.CERT_REQUIRED
        server = _HttpServer(self.port, self, context)
        self.port = server.server_address[1]
        self._http = server
        self._http_thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="otlp-receiver-http", daemon=True
        )
        self._http_thread.start()

    def _start_grpc(self) -> None:
        # Exclusive binding: a port shared with some other server would hide an outage.
        options: list[tuple[str, Any]] = [("grpc.so_reuseport", 0)]
        if self.refuse_compressed:
            options.append(("grpc.compression_enabled_algorithms_bitset", 1))  # identity
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(8), options=options)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Servicer(self), server)
        address = f"127.0.0.1:{self.port}"
        if self.tls is None:
            bound = server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials(
                [(self.tls.key.read_bytes(), self.tls.cert.read_bytes())],
                root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
                require_client_auth=self.client_ca is not None,
            )
            bound = server.add_secure_port(address, credentials)
        if not bound:
            raise OSError(f"the gRPC receiver could not bind {address}")
        server.start()
        self.port, self._grpc = bound, server

    # -- how it answers ----------------------------------------------------------

    def fail(self, status: int | grpc.StatusCode, retry_after: float | None = None) -> None:
        """Answer every request with `status` from now on (an HTTP status or a gRPC
        code, after the protocol); `retry_after` seconds go in Retry-After (HTTP) or
        the google.rpc.RetryInfo trailer (gRPC), which the exporters wait for."""
        if self.protocol == "http" and not isinstance(status, int):
            raise TypeError(f"an HTTP receiver answers HTTP statuses, not {status!r}")
        if self.protocol == "grpc" and not isinstance(status, grpc.StatusCode):
            raise TypeError(f"a gRPC receiver answers grpc.StatusCode, not {status!r}")
        with self._cond:
            self._mode = _Mode(status, retry_after, self._mode.hang)

    def hang(self, seconds: float) -> None:
        """Wait `seconds` before answering each request from now on (a slow backend)."""
        with self._cond:
            self._mode = _Mode(self._mode.status, self._mode.retry_after, seconds)

    def answer_ok(self) -> None:
        """Accept every request at once again."""
        with self._cond:
            self._mode = _Mode()

    # -- what arrived ------------------------------------------------------------

    @property
    def requests(self) -> list[Received]:
        """Every request received so far, oldest first."""
        with self._cond:
            return list(self._received)

    def mark(self) -> int:
        """The number of requests so far; pass as `since` to ignore older ones."""
        with self._cond:
            return len(self._received)

    def points(self, since: int = 0, accepted_only: bool = True) -> list[Point]:
        """The data points of the requests from the `since`-th on, in arrival order;
        only of accepted requests unless `accepted_only` is False."""
        with self._cond:
            received = self._received[since:]
        return [
            point
            for r in received
            if r.request is not None and (r.accepted or not accepted_only)
            for point in otlp_points.points(r.request)
        ]

    def latest(self, since: int = 0) -> dict[SeriesKey, Point]:
        """The newest accepted point of each series: {(name, sorted attributes): point}."""
        return otlp_points.latest(self.points(since))

    def wait_for(
        self, predicate: Callable[[Point], bool], timeout: float = 30.0, since: int = 0
    ) -> Point:
        """The first accepted point (of the `since`-th request on) that satisfies
        `predicate`, waiting up to `timeout` seconds (scaled) for it to arrive;
        TimeoutError lists what did arrive."""
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while True:
                for point in self.points(since):
                    if predicate(point):
                        return point
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        raise TimeoutError(f"no matching point within {scaled(timeout):g}s; {self._summary(since)}")

    def wait_for_requests(
        self, count: int, timeout: float = 30.0, since: int = 0
    ) -> list[Received]:
        """Wait up to `timeout` seconds (scaled) until `count` requests have arrived
        since the `since`-th; return them."""
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while len(self._received) - since < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{count} requests did not arrive within {scaled(timeout):g}s; "
                        + self._summary(since)
                    )
                self._cond.wait(remaining)
            return self._received[since:]

    def _summary(self, since: int) -> str:
        with self._cond:
            received = self._received[since:]
        lines = [f"received {len(received)} requests since #{since}:"]
        for r in received:
            lines.append(f"  answer={r.answer} compressed={r.compressed} {r.error}".rstrip())
            if r.request is not None:
                lines.extend(
                    f"    {p.kind} {p.name}{p.attributes} = {p.value} @{p.time_unix_nano}"
                    for p in otlp_points.points(r.request)
                )
        return "\n".join(lines)

    def _arrive(
        self,
        headers: dict[str, str],
        compressed: bool | None,
        request: ExportMetricsServiceRequest | None,
        client_cn: str | None,
        refused: int | None = None,
        error: str = "",
    ) -> _Mode:
        """Record a request and return how to answer it (the mode at its arrival)."""
        with self._cond:
            mode = self._mode if refused is None else _Mode(refused)
            ok: int | str = 200 if self.protocol == "http" else "OK"
            status = ok if mode.status is None else mode.status
            answer = status.name if isinstance(status, grpc.StatusCode) else status
            self._received.append(
                Received(time.time(), headers, compressed, request, answer, client_cn, error)
            )
            self._cond.notify_all()
            return mode


# -- OTLP/HTTP ---------------------------------------------------------------------


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, owner: OtlpReceiver, context: ssl.SSLContext | None) -> None:
        self.owner, self.context = owner, context
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _HttpHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake in the request's own thread, never in the accepting one."""
        if self.context is not None:
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except OSError:
                return
        with self._lock:
            self._connections.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self._lock:
                self._connections.discard(request)

    def cut_connections(self) -> None:
        """End kept-alive connections, as a backend going down does."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # The plain socket's shutdown: TLS sockets' own would drop their state under
            # the thread still serving them.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about connections the client or `stop` cut; loud about anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _HttpHandler(QuietHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer  # type: ignore[assignment]

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        receiver = self.server.owner
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = self.rfile.read(int(headers.get("content-length") or 0))
        encoding = headers.get("content-encoding", "identity").strip().lower()
        compressed = encoding in _DECOMPRESS
        request, refused, error = self._decode(headers, encoding, body)
        mode = receiver._arrive(
            headers, compressed, request, _http_client_cn(self.connection), refused, error
        )
        if mode.hang and receiver._stopped.wait(mode.hang):
            self.close_connection = True
            return
        if mode.status is None:
            self._answer(200, ExportMetricsServiceResponse().SerializeToString())
            return
        assert isinstance(mode.status, int)
        message = error or f"the fake OTLP receiver was told to answer {mode.status}"
        extra = {}
        if mode.retry_after is not None:
            extra["Retry-After"] = f"{mode.retry_after:g}"
        self._answer(mode.status, Status(message=message).SerializeToString(), extra)

    def _decode(
        self, headers: dict[str, str], encoding: str, body: bytes
    ) -> tuple[ExportMetricsServiceRequest | None, int | None, str]:
        """The request, or None with the status refusing it and why."""
        receiver = self.server.owner
        path = self.path.split("?", 1)[0]
        if path != METRICS_PATH:
            return None, 404, f"POST {path}: metrics go to {METRICS_PATH}"
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != PROTOBUF:
            return None, 415, f"Content-Type {content_type!r}: expected {PROTOBUF}"
        if encoding in _DECOMPRESS and receiver.refuse_compressed:
            return None, 415, f"Content-Encoding {encoding}: told to refuse compressed bodies"
        if encoding not in _DECOMPRESS and encoding not in ("identity", ""):
            return None, 415, f"Content-Encoding {encoding!r}: not gzip, deflate or identity"
        try:
            if encoding in _DECOMPRESS:
                body = _DECOMPRESS[encoding](body)
            return ExportMetricsServiceRequest.FromString(body), None, ""
        except (OSError, EOFError, zlib.error, DecodeError) as exc:
            return None, 400, f"undecodable {encoding} body: {type(exc).__name__}: {exc}"

    def _answer(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", PROTOBUF)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _http_client_cn(connection: Any) -> str | None:
    if not isinstance(connection, ssl.SSLSocket):
        return None
    certificate = connection.getpeercert() or {}
    for rdn in certificate.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


# -- OTLP/gRPC ---------------------------------------------------------------------


class _Servicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(  # noqa: N802 - the generated servicer's name
        self, request: ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> ExportMetricsServiceResponse:
        receiver = self.receiver
        headers = {item.key.lower(): item.value for item in context.invocation_metadata()}
        names = context.auth_context().get("x509_common_name") or [None]
        client_cn = names[0].decode() if names[0] is not None else None
        mode = receiver._arrive(headers, None, request, client_cn)
        if mode.hang and receiver._stopped.wait(mode.hang):
            context.abort(grpc.StatusCode.UNAVAILABLE, "the fake OTLP receiver stopped")
        if isinstance(mode.status, grpc.StatusCode) and mode.status is not grpc.StatusCode.OK:
            if mode.retry_after is not None:
                delay = Duration()
                delay.FromNanoseconds(round(mode.retry_after * 1e9))
                retry = RetryInfo(retry_delay=delay).SerializeToString()
                context.set_trailing_metadata(((RETRY_INFO_KEY, retry),))
            context.abort(mode.status, f"the fake OTLP receiver was told to answer {mode.status}")
        return ExportMetricsServiceResponse()


def receiver_pki(directory: Path, client_name: str) -> dict[str, Issued]:
    """A CA, the receiver's certificate for 127.0.0.1 and localhost, and a client
    certificate whose common name is `client_name`: `ca`, `server`, `client`."""
    pki = Pki(directory)
    ca = pki.ca("otlp-ca")
    return {
        "ca": ca,
        "server": pki.issue(ca, "otlp-receiver", "IP:127.0.0.1,DNS:localhost"),
        "client": pki.issue(ca, client_name, f"DNS:{client_name}", client=True),
    }
