"""The web configuration file (`--web.config.file`): TLS, basic auth and response headers.

The format is the one Prometheus and its exporters share (the exporter-toolkit's
web configuration), so one file serves the whole fleet. Reading is strict, as
there: an unknown key is an error, and every error is one line naming the field.
What Python's `ssl` cannot honour is refused here, with the reason, rather than
accepted and silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_cost_exporter.config import ConfigError, load_yaml, parse_duration

CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
VERIFYING_CLIENT_AUTH = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
TLS_VERSIONS = ("TLS10", "TLS11", "TLS12", "TLS13")

# Go's names of the TLS 1.0-1.2 suites it offers, and OpenSSL's names for them.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites are accepted, as there, and not configurable, as there.
TLS13_CIPHER_SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)
CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
# The headers the format lets an operator add, and the values allowed where the
# standard defines a closed set.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_BCRYPT_RE = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_TLS_KEYS = (
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)


@dataclass(frozen=True)
class TlsServerConfig:
    """`tls_server_config`, relative paths resolved against the file's directory."""

    cert_file: Path | None = None
    key_file: Path | None = None
    cert: str | None = None
    key: str | None = None
    client_ca_file: Path | None = None
    client_ca: str | None = None
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    openssl_ciphers: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve: str | None = None
    """OpenSSL's name of the one curve to offer, or None for the library's defaults."""

    def files(self) -> tuple[Path, ...]:
        """The files a certificate rotation changes."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)


@dataclass(frozen=True)
class RateLimit:
    """`rate_limit`: a token bucket refilled one request per `interval`."""

    interval: float
    burst: int


@dataclass(frozen=True)
class WebConfig:
    """A validated web configuration; the default (no file) is plain HTTP, no auth."""

    tls: TlsServerConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    """User name to bcrypt hash."""
    headers: Mapping[str, str] = field(default_factory=dict)
    rate_limit: RateLimit | None = None


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the file; any problem raises ConfigError naming the field."""
    data = load_yaml(path)
    _only_keys(data, _TOP_KEYS, path, "")
    return WebConfig(
        tls=_tls(data.get("tls_server_config"), path),
        users=_users(data.get("basic_auth_users"), path),
        headers=_http_server(data.get("http_server_config"), path),
        rate_limit=_rate_limit(data.get("rate_limit"), path),
    )


def _error(path: Path, where: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {problem}")


def _mapping(value: Any, path: Path, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _error(path, where, f"expected a mapping, got {value!r}")
    return value


def _only_keys(data: Mapping[str, Any], allowed: tuple[str, ...], path: Path, where: str) -> None:
    for key in data:
        if key not in allowed:
            name = f"{where}.{key}" if where else str(key)
            raise _error(path, name, f"unknown field (expected one of {', '.join(allowed)})")


def _text(value: Any, path: Path, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _error(path, where, f"expected a string, got {value!r}")
    return value


def _strings(value: Any, path: Path, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _error(path, where, f"expected a list of strings, got {value!r}")
    return tuple(value)


def _choice(value: Any, options: tuple[str, ...], default: str, path: Path, where: str) -> str:
    text = _text(value, path, where)
    if text is None:
        return default
    if text not in options:
        raise _error(path, where, f"{text!r} is not one of {', '.join(options)}")
    return text


def _file(value: Any, path: Path, where: str) -> Path | None:
    text = _text(value, path, where)
    if text is None:
        return None
    file = path.parent / text
    if not file.is_file():
        raise _error(path, where, f"{file} is not a readable file")
    return file


def _tls(value: Any, path: Path) -> TlsServerConfig | None:
    where = "tls_server_config"
    data = _mapping(value, path, where)
    _only_keys(data, _TLS_KEYS, path, where)
    if all(data.get(k) in (None, "", []) for k in _TLS_KEYS):
        return None  # an empty section means plain HTTP, as there

    def at(key: str) -> str:
        return f"{where}.{key}"

    cert_file = _file(data.get("cert_file"), path, at("cert_file"))
    key_file = _file(data.get("key_file"), path, at("key_file"))
    cert, key = _text(data.get("cert"), path, at("cert")), _text(data.get("key"), path, at("key"))
    for name, inline, from_file in (("cert", cert, cert_file), ("key", key, key_file)):
        if inline and from_file:
            raise _error(path, where, f"set {name} or {name}_file, not both")
        if not inline and not from_file:
            raise _error(path, where, f"missing one of {name} or {name}_file")
    client_ca_file = _file(data.get("client_ca_file"), path, at("client_ca_file"))
    client_ca = _text(data.get("client_ca"), path, at("client_ca"))
    if client_ca and client_ca_file:
        raise _error(path, where, "set client_ca or client_ca_file, not both")
    auth = _choice(
        data.get("client_auth_type"),
        CLIENT_AUTH_TYPES,
        "NoClientCert",
        path,
        at("client_auth_type"),
    )
    if auth in ("RequestClientCert", "RequireAnyClientCert"):
        raise _error(
            path,
            at("client_auth_type"),
            f"{auth} cannot be honoured: Python's ssl verifies every client certificate it "
            "asks for; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with "
            "client_ca_file",
        )
    if (client_ca or client_ca_file) and auth == "NoClientCert":
        raise _error(
            path, at("client_auth_type"), "client CAs are configured but client_auth_type is "
            "NoClientCert; set RequireAndVerifyClientCert"
        )  # fmt: skip
    sans = _strings(data.get("client_allowed_sans"), path, at("client_allowed_sans"))
    if sans and auth not in VERIFYING_CLIENT_AUTH:
        raise _error(
            path,
            at("client_allowed_sans"),
            "needs a verified client certificate: set client_auth_type to "
            "RequireAndVerifyClientCert",
        )
    low = _choice(data.get("min_version"), TLS_VERSIONS, "TLS12", path, at("min_version"))
    high = _choice(data.get("max_version"), TLS_VERSIONS, "TLS13", path, at("max_version"))
    if TLS_VERSIONS.index(low) > TLS_VERSIONS.index(high):
        raise _error(path, at("min_version"), f"{low} is above max_version {high}")
    prefer = data.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise _error(
            path, at("prefer_server_cipher_suites"), f"expected true or false, got {prefer!r}"
        )
    return TlsServerConfig(
        cert_file=cert_file,
        key_file=key_file,
        cert=cert,
        key=key,
        client_ca_file=client_ca_file,
        client_ca=client_ca,
        client_auth_type=auth,
        client_allowed_sans=sans,
        min_version=low,
        max_version=high,
        openssl_ciphers=_ciphers(data.get("cipher_suites"), path, at("cipher_suites")),
        prefer_server_cipher_suites=prefer,
        curve=_curve(data.get("curve_preferences"), path, at("curve_preferences")),
    )


def _ciphers(value: Any, path: Path, where: str) -> tuple[str, ...]:
    names = _strings(value, path, where)
    for name in names:
        if name not in CIPHER_SUITES and name not in TLS13_CIPHER_SUITES:
            raise _error(path, where, f"unknown cipher suite {name!r}")
    return tuple(CIPHER_SUITES[n] for n in names if n in CIPHER_SUITES)


def _curve(value: Any, path: Path, where: str) -> str | None:
    names = _strings(value, path, where)
    for name in names:
        if name not in CURVES:
            raise _error(path, where, f"unknown curve {name!r} (one of {', '.join(CURVES)})")
    if len(names) > 1:
        raise _error(
            path, where, "Python's ssl can offer one curve only, not a preference list; "
            "list one curve or remove the setting for the library's defaults"
        )  # fmt: skip
    return CURVES[names[0]] if names else None


def _users(value: Any, path: Path) -> dict[str, bytes]:
    where = "basic_auth_users"
    users = {}
    for name, hashed in _mapping(value, path, where).items():
        if isinstance(name, bool) or name is None or not str(name):
            raise _error(path, where, f"{name!r} is not a user name")
        at = f"{where}.{name}"
        if not isinstance(hashed, str) or not _BCRYPT_RE.match(hashed):
            raise _error(path, at, "expected a bcrypt hash such as $2y$10$... (htpasswd -nBC 10)")
        cost = int(_BCRYPT_RE.match(hashed).group(1))
        if not 4 <= cost <= 31:
            raise _error(path, at, f"bcrypt cost {cost} is outside 4-31")
        users[str(name)] = hashed.encode()
    return users


def _http_server(value: Any, path: Path) -> dict[str, str]:
    where = "http_server_config"
    data = _mapping(value, path, where)
    _only_keys(data, ("http2", "headers"), path, where)
    if data.get("http2") not in (None, False):
        raise _error(
            path, f"{where}.http2", "HTTP/2 is not served by this exporter (HTTP/1.1 only); "
            "set false or remove it"
        )  # fmt: skip
    headers = {}
    for name, text in _mapping(data.get("headers"), path, f"{where}.headers").items():
        at = f"{where}.headers.{name}"
        if name not in HEADERS:
            raise _error(path, at, f"cannot be configured (one of {', '.join(HEADERS)})")
        if text is None or text == "":
            continue  # blank means unset, as there
        if not isinstance(text, (str, int)) or isinstance(text, bool):
            raise _error(path, at, f"expected a string, got {text!r}")
        text = str(text)
        if any(c in text for c in "\r\n\0"):
            raise _error(path, at, "a header value cannot contain line breaks")
        allowed = HEADERS[name]
        if allowed and text not in allowed:
            raise _error(path, at, f"{text!r} is not one of {', '.join(allowed)}")
        headers[name] = text
    return headers


def _rate_limit(value: Any, path: Path) -> RateLimit | None:
    where = "rate_limit"
    data = _mapping(value, path, where)
    _only_keys(data, ("interval", "burst"), path, where)
    interval = data.get("interval")
    if interval in (None, 0, "0", "0s"):
        return None  # zero disables the limiter, as there
    seconds = parse_duration(interval, f"{path}: {where}.interval")
    burst = data.get("burst")
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
        raise _error(
            path, f"{where}.burst", f"expected a whole number of requests >= 1, got {burst!r}"
        )
    return RateLimit(seconds, burst)
