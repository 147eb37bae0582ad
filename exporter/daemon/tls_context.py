"""From `tls_server_config` to the `ssl.SSLContext` a new connection is served with.

Building reads the certificate, key and client CA files, so a rebuilt context is
how a rotated certificate takes effect (see web_reload). Every failure is a
ConfigError naming the field.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from llm_cost_exporter.config import ConfigError
from llm_cost_exporter.daemon.web_config import TlsServerConfig

_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_VERIFY_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# getpeercert() names of the subject alternative name kinds Go matches on.
_SAN_KINDS = ("DNS", "IP Address", "email", "URI")


def build_server_context(tls: TlsServerConfig, source: Path) -> ssl.SSLContext:
    """A server context for `tls`; `source` (the web configuration file) names errors."""
    where = f"{source}: tls_server_config"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[tls.min_version]
    context.maximum_version = _VERSIONS[tls.max_version]
    try:
        with _pem_file(tls.cert, tls.cert_file) as cert, _pem_file(tls.key, tls.key_file) as key:
            context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        field = "cert_file" if tls.cert_file else "cert"
        raise ConfigError(
            f"{where}.{field}: cannot load the certificate and key: {_reason(error)}"
        ) from None
    if tls.openssl_ciphers:
        try:
            context.set_ciphers(":".join(tls.openssl_ciphers))
        except ssl.SSLError:
            raise ConfigError(
                f"{where}.cipher_suites: none of these suites is available in this OpenSSL"
            ) from None
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve:
        context.set_ecdh_curve(tls.curve)
    context.verify_mode = _VERIFY_MODES[tls.client_auth_type]
    if context.verify_mode != ssl.CERT_NONE:
        field = "client_ca_file" if tls.client_ca_file else "client_ca"
        try:
            if tls.client_ca_file:
                context.load_verify_locations(cafile=str(tls.client_ca_file))
            elif tls.client_ca:
                context.load_verify_locations(cadata=tls.client_ca)
            else:
                context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        except (ssl.SSLError, OSError, ValueError) as error:
            raise ConfigError(f"{where}.{field}: cannot load the CAs: {_reason(error)}") from None
    return context


def peer_has_allowed_san(peercert: Mapping[str, Any] | None, allowed: tuple[str, ...]) -> bool:
    """Whether a verified client certificate names one of `allowed` as a subject
    alternative name (DNS, IP, e-mail or URI), compared exactly, IPs in canonical form."""
    wanted = {_canonical(v) for v in allowed}
    for kind, value in (peercert or {}).get("subjectAltName", ()):
        if kind in _SAN_KINDS and _canonical(value) in wanted:
            return True
    return False


def _canonical(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


@contextlib.contextmanager
def _pem_file(inline: str | None, path: Path | None) -> Iterator[str]:
    """A path OpenSSL can read: the configured file, or inline PEM held in memory only."""
    if inline is None:
        yield str(path)
        return
    if not hasattr(os, "memfd_create"):
        raise OSError("inline PEM needs Linux; use cert_file and key_file")
    fd = os.memfd_create("tls-pem", flags=os.MFD_CLOEXEC)
    try:
        os.write(fd, inline.encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _reason(error: Exception) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.lower().replace("_", " ")
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)
