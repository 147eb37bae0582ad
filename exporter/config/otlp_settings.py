"""The `otlp:` section: pushing the metric catalogue to an OTLP receiver.

Every setting left out of the file falls back to the environment variable the
OpenTelemetry SDK defines for it (the metrics-specific one first), then to the
SDK's default; check-config prints what was resolved. A bad variable stops the
exporter like a bad file does: one line naming it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from llm_cost_exporter.config.errors import ConfigError, shown
from llm_cost_exporter.config.scalars import (
    Choice,
    Duration,
    Flag,
    HttpUrl,
    ReadableFile,
    Secret,
    SecretFile,
    Text,
    Whole,
    format_duration,
)
from llm_cost_exporter.config.schema import Loaded, MapOf, dataclass_section, setting

PROTOCOLS = ("http/protobuf", "grpc")
COMPRESSIONS = ("gzip", "none")
DEFAULT_ENDPOINTS = {
    "http/protobuf": "http://localhost:4318/v1/metrics",
    "grpc": "http://localhost:4317",
}
HTTP_PATH = "v1/metrics"
SERVICE_NAME = "llm-cost-exporter"


def environment(setting_name: str) -> tuple[str, str] | None:
    """(variable, value) of the first non-empty OTEL_EXPORTER_OTLP_METRICS_<NAME> or
    OTEL_EXPORTER_OTLP_<NAME>, or None."""
    for name in (
        f"OTEL_EXPORTER_OTLP_METRICS_{setting_name}",
        f"OTEL_EXPORTER_OTLP_{setting_name}",
    ):
        value = os.environ.get(name, "").strip()
        if value:
            return name, value
    return None


def _milliseconds(name: str, value: str, minimum: float, maximum: float) -> float:
    """Seconds from a variable in milliseconds, as the SDK's variables are."""
    try:
        seconds = float(value) / 1000
    except ValueError:
        seconds = math.nan
    if not minimum <= seconds <= maximum:
        raise ConfigError(
            f"{name}: must be milliseconds, {format_duration(minimum)} to "
            f"{format_duration(maximum)}, got {shown(value)}"
        )
    return seconds


def parse_pairs(name: str, text: str) -> dict[str, str]:
    """`key1=value1,key2=value2` with percent-encoded values (OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_RESOURCE_ATTRIBUTES)."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"{name}: {shown(item.strip())} is not key=value")
        pairs[unquote(key.strip())] = unquote(value.strip())
    return pairs


# --- defaults from the environment --------------------------------------------------


def _protocol_default(loaded: Mapping[str, Any]) -> str:
    found = environment("PROTOCOL")
    if found is None:
        return PROTOCOLS[0]
    return Choice(PROTOCOLS).load(found[1], found[0])


def _endpoint_default(loaded: Mapping[str, Any]) -> str | None:
    specific = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip()
    if specific:
        return OtlpEndpoint().load(specific, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not base:
        return None
    url = OtlpEndpoint().load(base, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if loaded["protocol"] == "http/protobuf":  # the base URL of every signal
        return url.rstrip("/") + "/" + HTTP_PATH
    return url


def _enabled_default(loaded: Mapping[str, Any]) -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "none":
        return False
    return loaded["endpoint"] is not None


def _compression_default(loaded: Mapping[str, Any]) -> str:
    found = environment("COMPRESSION")
    if found is None:
        return "gzip"
    variable, value = found
    return Choice(COMPRESSIONS, lower=True).load(value, variable)


def _interval_default(loaded: Mapping[str, Any]) -> float:
    value = os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip()
    if not value:
        return 60.0
    return _milliseconds("OTEL_METRIC_EXPORT_INTERVAL", value, 1.0, 3600.0)


def _timeout_default(loaded: Mapping[str, Any]) -> float:
    found = environment("TIMEOUT")
    if found is None:
        return min(10.0, loaded["interval"])
    return _milliseconds(found[0], found[1], 1.0, 3600.0)


def _file_default(variable: str) -> Any:
    def derive(loaded: Mapping[str, Any]) -> str | None:
        found = environment(variable)
        return None if found is None else ReadableFile().load(found[1], found[0])

    return derive


def _insecure_default(loaded: Mapping[str, Any]) -> bool:
    found = environment("INSECURE")
    return found is not None and found[1].lower() == "true"


def _headers_default(loaded: Mapping[str, Any]) -> dict[str, str]:
    found = environment("HEADERS")
    return {} if found is None else parse_pairs(*found)


# --- the section --------------------------------------------------------------------


def _key_pair(loaded: Loaded) -> None:
    if (loaded["cert_file"] is None) != (loaded["key_file"] is None):
        given = "cert_file" if loaded["cert_file"] is not None else "key_file"
        raise ConfigError(
            f"{loaded.path(given)}: a client certificate needs both cert_file and key_file"
        )


@dataclass(frozen=True)
class OtlpTls:
    """TLS towards the receiver: an `https://` endpoint, or a gRPC one without scheme."""

    ca_file: str | None = setting(
        ReadableFile(),
        "CA bundle that signs the receiver's certificate",
        None,
        derive=_file_default("CERTIFICATE"),
        default_doc="`OTEL_EXPORTER_OTLP_CERTIFICATE`, else the system's CAs",
    )
    cert_file: str | None = setting(
        ReadableFile(),
        "Client certificate, for a receiver that asks for one (with key_file)",
        None,
        derive=_file_default("CLIENT_CERTIFICATE"),
        default_doc="`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`",
    )
    key_file: str | None = setting(
        ReadableFile(),
        "The client certificate's private key",
        None,
        derive=_file_default("CLIENT_KEY"),
        default_doc="`OTEL_EXPORTER_OTLP_CLIENT_KEY`",
    )
    insecure: bool = setting(
        Flag(),
        "Plain text to a gRPC endpoint written without scheme (`host:4317`), as to a "
        "loopback agent; an `http://` endpoint is always plain text",
        False,
        derive=_insecure_default,
        default_doc="`OTEL_EXPORTER_OTLP_INSECURE`, else `false`",
    )


OTLP_TLS = dataclass_section(OtlpTls, rules=(_key_pair,))


class OtlpEndpoint:
    """An http(s) URL, or for gRPC also `host:port` (TLS unless tls.insecure)."""

    type_name = "URL"

    def load(self, value: Any, where: str) -> str:
        text = str(value).strip() if isinstance(value, str) else ""
        if text and "://" not in text:
            HttpUrl().load("https://" + text, where)  # host and port checks
        else:
            text = HttpUrl().load(value, where)
        if "@" in urlsplit(text if "://" in text else "//" + text).netloc:
            raise ConfigError(f"{where}: give credentials in otlp.headers, not in the URL")
        return text

    def dump(self, value: str) -> str:
        return value


def _timeout_within_interval(loaded: Loaded) -> None:
    if loaded["timeout"] > loaded["interval"]:
        raise ConfigError(
            f"{loaded.path('timeout')}: must be at most the interval "
            f"({format_duration(loaded['interval'])}), got {format_duration(loaded['timeout'])}"
        )


def _endpoint_fits_protocol(loaded: Loaded) -> None:
    endpoint = loaded["endpoint"]
    if endpoint is not None and "://" not in endpoint and loaded["protocol"] != "grpc":
        raise ConfigError(
            f"{loaded.path('endpoint')}: http/protobuf needs an http(s):// URL, got "
            f"{shown(endpoint)}"
        )


def _resource_from_environment(loaded: Loaded) -> None:
    """A malformed OTEL_RESOURCE_ATTRIBUTES is refused at start, not at the first export."""
    text = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if loaded["enabled"] and text.strip():
        parse_pairs("OTEL_RESOURCE_ATTRIBUTES", text)


@dataclass(frozen=True)
class OtlpConfig:
    """Push every figure of `/metrics` to an OTLP receiver (an OpenTelemetry Collector,
    Grafana Alloy, a vendor agent, a backend's OTLP endpoint)."""

    protocol: str = setting(
        Choice(PROTOCOLS, lower=True),
        "Wire protocol",
        PROTOCOLS[0],
        derive=_protocol_default,
        default_doc="`OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`",
    )
    endpoint: str | None = setting(
        OtlpEndpoint(),
        "Where to push: http/protobuf `http(s)://host:4318/v1/metrics` (a URL without path "
        "gets /v1/metrics), grpc `http(s)://host:4317` or `host:4317`",
        None,
        derive=_endpoint_default,
        default_doc="`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, "
        "else localhost (4318 or 4317)",
    )
    enabled: bool = setting(
        Flag(),
        "Push over OTLP",
        False,
        derive=_enabled_default,
        default_doc="`true` when an endpoint is given (here or in the environment), unless "
        "`OTEL_SDK_DISABLED=true` or `OTEL_METRICS_EXPORTER=none`",
    )
    headers: dict[str, str] = setting(
        MapOf(Secret(), "header"),
        "Headers sent with every export (a tenant, an API key); beside "
        "`OTEL_EXPORTER_OTLP_HEADERS`, winning over it",
        {},
        derive=_headers_default,
        default_doc="`OTEL_EXPORTER_OTLP_HEADERS`",
    )
    header_files: dict[str, str] = setting(
        MapOf(SecretFile(), "header"),
        "Headers whose value is a file's text, read again at every export (a mounted "
        "Secret: rotation needs no restart)",
        {},
    )
    tls: OtlpTls = setting(
        OTLP_TLS,
        "TLS towards the receiver",
        OtlpTls(),
        derive=lambda loaded: OTLP_TLS.load(None, "otlp.tls"),
    )
    compression: str = setting(
        Choice(COMPRESSIONS, lower=True),
        "Compression of each export",
        "gzip",
        derive=_compression_default,
        default_doc="`OTEL_EXPORTER_OTLP_COMPRESSION`, else `gzip`",
    )
    interval: float = setting(
        Duration(1.0, 3600.0),
        "How often the last cycle's figures are pushed",
        60.0,
        derive=_interval_default,
        default_doc="`OTEL_METRIC_EXPORT_INTERVAL` (ms), else `1m`",
    )
    timeout: float = setting(
        Duration(1.0, 3600.0),
        "Bound on one export, its retries included; at most the interval",
        10.0,
        derive=_timeout_default,
        default_doc="`OTEL_EXPORTER_OTLP_TIMEOUT` (ms), else `10s` (or the interval)",
    )
    queue_size: int = setting(
        Whole(1, 1000),
        "Exports kept while the receiver is unreachable, sent in order once it is back; "
        "when full the oldest is dropped (counters are cumulative, so nothing counted is "
        "lost, only older gauge points)",
        10,
    )
    resource_attributes: dict[str, str] = setting(
        MapOf(Text(), "attribute"),
        "Resource attributes beside `service.name`, `service.version`, `host.name` and "
        "the `k8s.*` ones read from the Downward API variables; beside "
        "`OTEL_RESOURCE_ATTRIBUTES`, winning over it",
        {},
    )
    gen_ai_attributes: bool = setting(
        Flag(),
        "Also send OpenTelemetry's GenAI attributes (`gen_ai.request.model`, "
        "`gen_ai.token.type`) beside `model` and `kind`; off, because a Prometheus-backed "
        "receiver would then add labels that /metrics does not have",
        False,
    )

    @property
    def target(self) -> str:
        """The endpoint to push to, the protocol's localhost one when none is given."""
        if self.endpoint is None:
            return DEFAULT_ENDPOINTS[self.protocol]
        if self.protocol == "http/protobuf" and urlsplit(self.endpoint).path in ("", "/"):
            return self.endpoint.rstrip("/") + "/" + HTTP_PATH
        return self.endpoint


OTLP = dataclass_section(
    OtlpConfig,
    rules=(_timeout_within_interval, _endpoint_fits_protocol, _resource_from_environment),
)
