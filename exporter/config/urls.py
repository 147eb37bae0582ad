"""Engine URLs: validated, their credentials taken out, and compared as the engine
they reach.

A URL's userinfo (`http://user:pass@host/metrics`) is a secret: it is split off
at load time, so the URL kept in the configuration (and shown as the `target`
label, on the landing page and in logs) never holds it.

Two URLs reach the same engine when scheme, port (the default one written or
not), path (trailing slash or not) and query agree and their hosts are the same
host: equal names, or names that resolve to a common address. Names are only
resolved where that decides something, each within RESOLVE_TIMEOUT; a name that
does not resolve in time is compared by name.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from llm_cost_exporter.config.errors import ConfigError, shown

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
DEFAULT_PORTS = {"http": 80, "https": 443}
RESOLVE_TIMEOUT = 2.0
"""Seconds all host-name lookups of one configuration may take together."""


@dataclass(frozen=True)
class UserInfo:
    """What a URL's userinfo held: a basic-auth user and password."""

    username: str
    password: str | None

    def __repr__(self) -> str:
        return f"UserInfo(username={self.username!r}, password=<secret>)"


def redacted(text: str) -> str:
    """`text` with any userinfo of a URL replaced by `<secret>`, for messages."""
    return _USERINFO.sub(r"\1<secret>@", text)


def check_http_url(text: str, where: str) -> SplitResult:
    """The parts of an http(s) URL with a host and a port in 1-65535, or ConfigError."""
    quoted = shown(redacted(text))
    if not text.isprintable() or any(c.isspace() for c in text):
        raise ConfigError(f"{where}: {quoted} holds spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where}: {quoted} has no valid port (1-65535)") from None
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"{where}: {quoted} is not an http(s) URL")
    if port == 0:
        raise ConfigError(f"{where}: {quoted}: port 0 is out of range 1-65535")
    return parts


def split_userinfo(text: str) -> tuple[str, UserInfo | None]:
    """The URL without its userinfo, and the userinfo (percent-decoded)."""
    parts = urlsplit(text)
    if "@" not in parts.netloc:
        return text, None
    bare = text.replace(parts.netloc, parts.netloc.rpartition("@")[2], 1)
    user = UserInfo(
        unquote(parts.username or ""),
        None if parts.password is None else unquote(parts.password),
    )
    return bare, user


@dataclass(frozen=True)
class _Place:
    """Everything but the host that makes two URLs the same engine."""

    scheme: str
    port: int
    path: str
    query: str


def page_key(url: str) -> tuple[_Place, str]:
    """What makes two URLs the same page however they are spelled (default port,
    case, trailing slash): the place, and the host, not resolved."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or DEFAULT_PORTS[scheme]
    path = parts.path.rstrip("/") or "/"
    host = (parts.hostname or "").lower().rstrip(".")
    return _Place(scheme, port, path, parts.query), host


def _literal_address(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.split("%")[0]))
    except ValueError:
        return None


def resolve_hosts(names: Iterable[str], timeout: float = RESOLVE_TIMEOUT) -> dict[str, set[str]]:
    """The addresses of each host name, looked up in parallel within `timeout`
    seconds in all; a name that fails or is not answered in time is absent."""
    found: dict[str, set[str]] = {}
    lock = threading.Lock()

    def lookup(name: str) -> None:
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            addresses = {str(ipaddress.ip_address(info[4][0].split("%")[0])) for info in infos}
        except Exception:  # noqa: BLE001 - whatever fails, the name is compared as written
            return
        with lock:
            found[name] = addresses

    # Daemon threads: a lookup that hangs past the deadline must not hold the exit.
    threads = [threading.Thread(target=lookup, args=(n,), daemon=True) for n in set(names)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        return dict(found)


def first_duplicate(urls: Sequence[str]) -> tuple[int, int] | None:
    """The first (earlier, later) indices of two URLs reaching the same engine."""
    placed = [page_key(url) for url in urls]
    names = {
        host
        for index, (place, host) in enumerate(placed)
        if _literal_address(host) is None
        and any(p == place and h != host for p, h in placed[:index] + placed[index + 1 :])
    }
    resolved = resolve_hosts(names) if names else {}

    def addresses(host: str) -> set[str]:
        literal = _literal_address(host)
        if literal is not None:
            return {literal}
        return resolved.get(host, set())

    for later, (place, host) in enumerate(placed):
        for earlier, (other_place, other_host) in enumerate(placed[:later]):
            if other_place != place:
                continue
            if other_host == host or addresses(other_host) & addresses(host):
                return earlier, later
    return None
