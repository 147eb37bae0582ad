"""Answers and their bytes: status line, the headers every answer carries, the body.

Every answer has a Content-Length (bodies are ready bytes; nothing is streamed),
the Server header naming no library or version, and a Date.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from http import HTTPStatus

SERVER_NAME = "llm-cost-exporter"
"""The `Server` header: no library or Python version."""
TEXT = "text/plain; charset=utf-8"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_date_second = -1
_date_text = ""


class Response:
    """Status, headers beyond the ones every answer carries, and the body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers


def text_response(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, text.encode(), {"Content-Type": TEXT, **(headers or {})})


def error_response(status: int) -> Response:
    """`400 Bad Request` and the like, for answers the server gives on its own."""
    return text_response(status, f"{status} {HTTPStatus(status).phrase}\n")


def encode(
    response: Response,
    extra: Mapping[str, str],
    *,
    with_body: bool = True,
    connection: str | None = None,
) -> list[bytes]:
    """The answer's bytes, its head and body apart (a large body is not copied); `extra`
    are the configured headers; `connection` the Connection header, if any."""
    lines = [
        f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}\r\n"
        f"Server: {SERVER_NAME}\r\nDate: {_date()}\r\nContent-Length: {len(response.body)}\r\n"
    ]
    lines += [f"{name}: {value}\r\n" for name, value in response.headers.items()]
    lines += [f"{name}: {value}\r\n" for name, value in extra.items()]
    if connection is not None:
        lines.append(f"Connection: {connection}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("latin-1")
    return [head, response.body] if with_body and response.body else [head]


def _date() -> str:
    """The Date header's value (IMF-fixdate), formatted once a second."""
    global _date_second, _date_text
    now = int(time.time())
    if now != _date_second:
        t = time.gmtime(now)
        _date_text = (
            f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
        )
        _date_second = now
    return _date_text
