"""The OpenTelemetry SDK's OTLP exporter for the configured protocol, TLS and headers.

The exporter retries a failed export itself, with backoff, within the timeout.
Header files and TLS files are read before every export: when one changed (a
rotated Secret) the exporter is built again, so rotation needs no restart.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import requests
from opentelemetry.sdk.metrics.export import MetricExporter

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.credentials import read_secret_file
from llm_cost_exporter.config.otlp_settings import OtlpConfig


class TransportError(Exception):
    """A file the export needs cannot be read."""


class ExportSession(requests.Session):
    """The HTTP exporter's session: it keeps the CA it is given (plain requests lets
    REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE replace a session's CA, and a private
    receiver's certificate would then fail to verify; proxies still come from the
    environment), and it remembers why the last request failed, which the exporter
    does not say."""

    problem: str | None = None

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        settings = super().merge_environment_settings(*args, **kwargs)
        if isinstance(self.verify, str):
            settings["verify"] = self.verify
        return settings

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            response = super().request(*args, **kwargs)
        except requests.RequestException as error:
            cause = getattr(error.args[0], "reason", None) if error.args else None
            self.problem = f"{type(error).__name__}: {cause or error}"[:300]
            raise
        if not response.ok:
            self.problem = f"HTTP {response.status_code} {response.reason}"
        return response


def _read(path: str, what: str) -> str:
    try:
        return read_secret_file(path)
    except CollectorError as error:
        raise TransportError(f"{what} {path}: {error}") from None


def _tls_bytes(path: str | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


class Transport:
    """Builds the exporter, and builds it again when a file it was built from changed."""

    def __init__(self, config: OtlpConfig) -> None:
        self.config = config
        self._exporter: MetricExporter | None = None
        self._fingerprint = b""
        self._session: ExportSession | None = None

    def problem(self) -> str | None:
        """Why the last HTTP request failed, once; None over gRPC (its exporter says)."""
        if self._session is None:
            return None
        problem, self._session.problem = self._session.problem, None
        return problem

    def headers(self) -> dict[str, str]:
        """Every header, those from files read now; names lower-cased (gRPC requires it)."""
        headers = {name.lower(): value for name, value in self.config.headers.items()}
        for name, path in self.config.header_files.items():
            headers[name.lower()] = _read(path, f"otlp.header_files.{name}:")
        return headers

    def exporter(self) -> MetricExporter:
        """The exporter to use for the next export (TransportError when a file is unreadable)."""
        headers = self.headers()
        tls = self.config.tls
        try:
            files = [_tls_bytes(p) for p in (tls.ca_file, tls.cert_file, tls.key_file)]
        except OSError as error:
            raise TransportError(f"otlp.tls: {error.filename}: {error.strerror}") from None
        digest = hashlib.sha256(repr((sorted(headers.items()), files)).encode()).digest()
        if self._exporter is None or digest != self._fingerprint:
            self.close()
            self._exporter = self._build(headers, *files)
            self._fingerprint = digest
        return self._exporter

    def _build(
        self, headers: dict[str, str], ca: bytes | None, cert: bytes | None, key: bytes | None
    ) -> MetricExporter:
        config = self.config
        if config.protocol == "grpc":
            return self._grpc(headers, ca, cert, key)
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        self._session = ExportSession()
        return OTLPMetricExporter(
            endpoint=config.target,
            certificate_file=config.tls.ca_file,
            client_certificate_file=config.tls.cert_file,
            client_key_file=config.tls.key_file,
            headers=headers,
            timeout=config.timeout,
            compression=Compression.Gzip
            if config.compression == "gzip"
            else Compression.NoCompression,
            session=self._session,
        )

    def _grpc(
        self, headers: dict[str, str], ca: bytes | None, cert: bytes | None, key: bytes | None
    ) -> MetricExporter:
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        config = self.config
        target = config.target
        scheme = target.partition("://")[0] if "://" in target else None
        insecure = scheme == "http" if scheme is not None else config.tls.insecure
        credentials = None
        if not insecure:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=ca, private_key=key, certificate_chain=cert
            )
        return OTLPMetricExporter(
            endpoint=target,
            insecure=insecure,
            credentials=credentials,
            headers=headers,
            timeout=config.timeout,
            compression=grpc.Compression.Gzip
            if config.compression == "gzip"
            else grpc.Compression.NoCompression,
        )

    def rest(self) -> None:
        """Between exports: a gRPC channel left open keeps gRPC's threads waking several
        times a second, which costs more than connecting again once an interval, so it is
        closed; an idle HTTP connection costs nothing and is kept."""
        if self.config.protocol == "grpc":
            self.close()

    def close(self) -> None:
        """Shut the current exporter down (its connections, its retry waits)."""
        if self._exporter is not None:
            self._exporter.shutdown(timeout_millis=1000)
            self._exporter = None
