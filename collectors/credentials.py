"""Credentials an engine's metrics page asks for, sent as an Authorization header.

Secrets come from files (a bearer token file, a basic-auth password file), read
again at every collection so a rotated secret is used without a restart. A file
that cannot be read marks the engine down with reason `credentials`; no message
here ever holds a secret, only the file's path and what is wrong with it.
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass, field
from typing import Protocol

from llm_cost_exporter.collectors.base import CollectorError

MAX_SECRET_BYTES = 64 * 1024
"""A token or password file larger than this is refused (a JWT is a few KiB)."""


class Credentials(Protocol):
    def authorization(self) -> str:
        """The Authorization header's value, or CollectorError("credentials", ...)."""
        ...


def _refuse(path: str, problem: str) -> CollectorError:
    return CollectorError("credentials", f"secret file {path}: {problem}")


def read_secret_file(path: str) -> str:
    """The file's text without surrounding whitespace (the trailing newline most
    editors and `kubectl create secret` leave). Only regular files are read, so a
    FIFO or a device never blocks or floods the reader."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise _refuse(path, f"cannot open ({error.strerror or error})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse(path, "not a regular file")
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    except OSError as error:
        raise _refuse(path, f"cannot read ({error.strerror or error})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES:
        raise _refuse(path, f"larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _refuse(path, "not UTF-8 text") from None
    if not text:
        raise _refuse(path, "empty")
    if not text.isprintable():
        raise _refuse(path, "holds control characters or line breaks")
    return text


@dataclass(frozen=True)
class BearerTokenFile:
    """`Authorization: Bearer <the file's token>`."""

    path: str

    def authorization(self) -> str:
        token = read_secret_file(self.path)
        if not token.isascii() or " " in token:
            raise _refuse(self.path, "a bearer token is ASCII without spaces")
        return f"Bearer {token}"


@dataclass(frozen=True)
class BasicAuth:
    """`Authorization: Basic ...` from a user name and a password given inline or
    read from `password_file` (no password: an empty one, as Prometheus sends)."""

    username: str
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None

    def authorization(self) -> str:
        password = self.password or ""
        if self.password_file is not None:
            password = read_secret_file(self.password_file)
        pair = f"{self.username}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
