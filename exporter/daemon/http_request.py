"""Requests read off a connection's bytes, within bounds a client cannot stretch.

The server answers three GETs, so a request is its method, its path and a few
headers. Everything else is refused as a sensible HTTP/1.1 server refuses it:
a request line over MAX_REQUEST_LINE bytes, a header line over
MAX_HEADER_FIELD, more than MAX_HEADERS header lines, a request line that is
not `METHOD TARGET HTTP/1.x`, a header that is not `name: value`, an HTTP/1.1
request without one Host, or a body framed ambiguously (a Content-Length
beside chunked, a repeated or non-numeric Content-Length, a transfer coding
other than chunked) is a BadRequest (400). No route takes a body, so a body is
read and dropped, up to MAX_BODY bytes; a longer one is refused (413) rather
than read. Lines are scanned as they come, so a request trickled a byte at a
time costs no rescanning, and an over-long line is refused before it ends.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

MAX_REQUEST_LINE = 8190
MAX_HEADER_FIELD = 8190
MAX_HEADERS = 32
MAX_BODY = 64 * 1024
"""Bytes of request body read (and dropped); a longer body is refused."""
_MAX_CHUNK_LINE = 1024

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters other than a tab; bytes 0x80-0xff (obs-text) are allowed."""
_VERSIONS = {b"HTTP/1.1": "HTTP/1.1", b"HTTP/1.0": "HTTP/1.0"}


class BadRequest(Exception):
    """A request the server will not read on: answered `status`, then the connection
    is closed. The message is for the log."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Request:
    """A request's head: method, the decoded path it asks for, and its headers."""

    __slots__ = ("method", "target", "path", "version", "headers", "keep_alive", "expects_continue")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        """As sent (printable ASCII), for the log."""
        self.path = _path(target)
        """Percent-decoded, without query or fragment; `*` or an authority as sent."""
        self.version = version
        self.headers = headers
        """Lower-case names; a repeated header's values joined with `, `."""
        connection = headers.get("connection")
        if connection is None:
            self.keep_alive = version == "HTTP/1.1"
        else:
            tokens = {t.strip().lower() for t in connection.split(",")}
            if "close" in tokens:
                self.keep_alive = False
            else:
                self.keep_alive = version == "HTTP/1.1" or "keep-alive" in tokens
        self.expects_continue = headers.get("expect", "").lower() == "100-continue"


def _path(target: str) -> str:
    if target.startswith("/"):
        path = target.partition("#")[0].partition("?")[0]
    elif "://" in target:  # absolute-form, as sent to a proxy
        path = urlsplit(target).path or "/"
    else:
        return target  # `*` (OPTIONS) or host:port (CONNECT): no route has such a path
    return unquote(path, errors="replace")


def _content_length(value: str) -> int:
    if not value.isdigit() or not value.isascii() or len(value) > 18:
        raise BadRequest(f"bad Content-Length {value[:40]!r}")
    return int(value)


def _parse_head(head: bytes) -> tuple[Request, int | None]:
    """The request of a complete head (its lines, without the empty one) and its body
    framing: a length, or None for chunked."""
    request_line, *lines = head.split(b"\r\n")
    parts = request_line.split(b" ")
    parts = [p for p in parts if p] if len(parts) != 3 else parts
    if len(parts) != 3:
        raise BadRequest(f"malformed request line {request_line[:60]!r}")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise BadRequest(f"bad method {method[:20]!r}")
    if not _TARGET.fullmatch(target):
        raise BadRequest(f"bad request target {target[:60]!r}")
    if version not in _VERSIONS:
        raise BadRequest(f"unsupported version {version[:20]!r} (HTTP/1.1 and 1.0 only)")
    odd_form = not target.startswith(b"/") and b"://" not in target and target != b"*"
    if odd_form and method != b"CONNECT":
        raise BadRequest(f"bad request target {target[:60]!r}")
    headers: dict[str, str] = {}
    length: int | None = 0
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise BadRequest(f"malformed header line {line[:60]!r}")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise BadRequest(f"control character in header {name[:40]!r}")
        key = name.decode("ascii").lower()
        text = value.decode("latin-1")
        if key in headers:
            if key in ("content-length", "host", "transfer-encoding"):
                raise BadRequest(f"repeated {key} header")
            headers[key] = f"{headers[key]}, {text}"
        else:
            headers[key] = text
    if version == b"HTTP/1.1" and "host" not in headers:
        raise BadRequest("an HTTP/1.1 request without Host")
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.strip().lower() != "chunked":
            raise BadRequest(f"unsupported transfer coding {coding[:40]!r}")
        if "content-length" in headers:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        length = None
    elif "content-length" in headers:
        length = _content_length(headers["content-length"])
        if length > MAX_BODY:
            raise BadRequest(f"a body of {length} bytes (at most {MAX_BODY} read)", 413)
    request = Request(method.decode("ascii"), target.decode("ascii"), _VERSIONS[version], headers)
    return request, length


class RequestParser:
    """The requests in the bytes fed, one at a time, each once its body is dropped."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._line_start = 0
        """Where the head's line being read starts."""
        self._searched = 0
        """How far the buffer was searched for that line's end."""
        self._lines = 0
        """Head lines read whole, request line included."""
        self._request: Request | None = None
        """A head read whole, its body not yet dropped."""
        self._body_left = 0
        self._chunked = False
        self._chunk_state = "size"  # size, data, data-end, trailer
        self._body_seen = 0
        self.continue_wanted = False
        """A head asking `Expect: 100-continue` waits for its body: send the 100 once."""

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    @property
    def pending(self) -> int:
        """Bytes received and not yet taken as requests."""
        return len(self._buffer)

    def next_request(self) -> Request | None:
        """The next whole request, or None until more bytes come; BadRequest when the
        bytes are no request (the connection is then to be closed)."""
        if self._request is None:
            end = self._scan_head()
            if end is None:
                return None
            head = bytes(self._buffer[: end - 4])
            del self._buffer[:end]
            self._line_start = self._searched = self._lines = 0
            request, length = _parse_head(head)
            self._request = request
            self._chunked = length is None
            self._body_left = length or 0
            self._chunk_state, self._body_seen = "size", 0
            has_body = self._chunked or self._body_left > 0
            self.continue_wanted = has_body and request.expects_continue
        if not self._drop_body():
            return None
        request, self._request = self._request, None
        self.continue_wanted = False
        return request

    def _scan_head(self) -> int | None:
        """The end of the head (past its empty line), once it is all there."""
        buffer = self._buffer
        while True:
            if self._lines == 0:
                while buffer.startswith(b"\r\n"):  # empty lines before a request are allowed
                    del buffer[:2]
                    self._searched = 0
            newline = buffer.find(b"\n", max(self._line_start, self._searched))
            limit = MAX_REQUEST_LINE if self._lines == 0 else MAX_HEADER_FIELD
            if newline < 0:
                self._searched = len(buffer)
                if len(buffer) - self._line_start > limit + 1:  # its CR may have come
                    raise BadRequest(self._too_long())
                return None
            end = newline - 1
            if end < self._line_start or buffer[end] != 13:
                raise BadRequest("a line ending in a bare LF")
            if end - self._line_start > limit:
                raise BadRequest(self._too_long())
            if end == self._line_start:
                return end + 2
            self._lines += 1
            if self._lines > MAX_HEADERS + 1:
                raise BadRequest(f"more than {MAX_HEADERS} header lines")
            self._line_start = self._searched = end + 2

    def _too_long(self) -> str:
        if self._lines == 0:
            return f"a request line over {MAX_REQUEST_LINE} bytes"
        return f"a header line over {MAX_HEADER_FIELD} bytes"

    def _drop_body(self) -> bool:
        """Drop what came of the current request's body; True once it all came."""
        if not self._chunked:
            taken = min(self._body_left, len(self._buffer))
            del self._buffer[:taken]
            self._body_left -= taken
            return self._body_left == 0
        buffer = self._buffer
        while True:
            if self._chunk_state == "data":
                taken = min(self._body_left, len(buffer))
                del buffer[:taken]
                self._body_left -= taken
                if self._body_left:
                    return False
                self._chunk_state = "data-end"
                continue
            end = buffer.find(b"\r\n")
            limit = MAX_HEADER_FIELD if self._chunk_state == "trailer" else _MAX_CHUNK_LINE
            if end < 0 or end > limit:
                if len(buffer) > limit:
                    raise BadRequest("a chunk size or trailer line too long")
                return False
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            if self._chunk_state == "data-end":
                if line:
                    raise BadRequest("a chunk longer than its size says")
                self._chunk_state = "size"
            elif self._chunk_state == "trailer":
                if not line:
                    return True
            else:
                size = _chunk_size(line)
                self._body_seen += size
                if self._body_seen > MAX_BODY:
                    raise BadRequest(f"a chunked body over {MAX_BODY} bytes", 413)
                self._body_left = size
                self._chunk_state = "data" if size else "trailer"


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip(b" \t")
    if not text or len(text) > 16 or not re.fullmatch(rb"[0-9A-Fa-f]+", text):
        raise BadRequest(f"bad chunk size {line[:40]!r}")
    return int(text, 16)
