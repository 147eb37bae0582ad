"""A selective, streaming parser for the Prometheus text exposition format (0.0.4).

An engine page has hundreds of lines (histogram buckets, Python runtime, HTTP
middleware) of which we need a couple of dozen. The generic parser in
prometheus_client builds objects for every line; this one skips unwanted lines
with a prefix check on the raw bytes and only decodes and parses the samples
whose metric name we asked for, which keeps an 8-engine node's scrape cost
negligible.

The page is fed in chunks as they arrive, so a large page is never held whole:
only the unfinished line at the end of a chunk is kept, and an unwanted line
longer than a chunk is dropped as it streams by.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

Labels = dict[str, str]

MAX_LINE_BYTES = 64 * 1024
"""A wanted line longer than this is an error (vLLM's longest, cache_config_info,
is about 1.5 kB); unwanted lines may be any length."""


class ExpositionError(ValueError):
    """A wanted sample line could not be parsed."""


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float


_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE_RE = re.compile(r'\\[\\"n]')
_NAN_SPELLINGS = frozenset(("NaN", "nan"))


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value)


def _shown(line: str | bytes) -> str:
    return repr(line[:120])


def _parse_value(text: str, line: str) -> float:
    """The sample value; non-finite and negative values are returned for the caller to judge."""
    token = text.split(None, 1)[0] if text else ""
    try:
        value = float(token)
    except ValueError:
        raise ExpositionError(f"bad sample value in line: {_shown(line)}") from None
    # Python's float() also takes `1_000` and `-nan`, which the format does not.
    if "_" in token or (value != value and token not in _NAN_SPELLINGS):
        raise ExpositionError(f"bad sample value in line: {_shown(line)}")
    return value


def _parse_labels(line: str, start: int) -> tuple[Labels, int]:
    """Parse `{a="b",...}` starting at the brace; return labels and the index after `}`."""
    labels: Labels = {}
    pos = start + 1
    if line.startswith("}", pos):
        return labels, pos + 1
    length = len(line)
    while pos < length:
        match = _LABEL_RE.match(line, pos)
        if match is None:
            raise ExpositionError(f"bad label set in line: {_shown(line)}")
        labels[match.group(1)] = _unescape(match.group(2))
        pos = match.end()
        if match.group(3) == "}":
            return labels, pos
        if line.startswith("}", pos):
            return labels, pos + 1
    raise ExpositionError(f"unterminated label set in line: {_shown(line)}")


def _parse_line(raw: bytes, name: str, brace: int, space: int) -> Sample:
    """One wanted sample line: `name{labels} value [timestamp]` or `name value`."""
    if len(raw) > MAX_LINE_BYTES:
        raise ExpositionError(f"a {name} line is longer than {MAX_LINE_BYTES} bytes")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ExpositionError(f"invalid UTF-8 in line: {_shown(raw)}") from None
    if brace != -1:
        labels, end = _parse_labels(line, brace)
        return Sample(labels, _parse_value(line[end:].strip(), line))
    if space == -1:
        raise ExpositionError(f"sample without value: {_shown(line)}")
    return Sample({}, _parse_value(line[space + 1 :].strip(), line))


class SelectiveParser:
    """Reads the samples of the `wanted` metric names from a page fed in chunks.

    Lines not starting with `prefix` are skipped without further inspection.
    Comments, blank lines and unwanted names are ignored; a wanted line that is
    malformed raises ExpositionError, because a half-read page would give wrong
    token counts. A sample repeating an earlier one's name and labels is
    dropped and counted in `duplicates`, as Prometheus keeps the first.
    """

    def __init__(self, wanted: Iterable[str], prefix: str = "") -> None:
        self._wanted = {name.encode(): name for name in wanted}
        self._longest_name = max(map(len, self._wanted), default=0)
        self._prefix = prefix.encode()
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._skipping = False
        """The unfinished line is unwanted and too long to keep: drop it up to its end."""
        self._seen: set[int] = set()
        self.duplicates = 0

    def feed(self, chunk: bytes) -> list[tuple[str, Sample]]:
        """Parse the lines that `chunk` completes; keep its unfinished last line."""
        found: list[tuple[str, Sample]] = []
        start = 0
        if self._partial or self._skipping:
            end = chunk.find(b"\n")
            if end == -1:
                self._hold(chunk)
                return found
            self._hold(chunk[:end])
            self._finish_partial(found)
            start = end + 1
        last = chunk.rfind(b"\n")
        if last < start:
            self._hold(chunk[start:])
            return found
        self._lines(chunk[start:last].split(b"\n"), found)
        self._hold(chunk[last + 1 :])
        return found

    def close(self) -> list[tuple[str, Sample]]:
        """Parse the page's last line if it had no newline."""
        found: list[tuple[str, Sample]] = []
        self._finish_partial(found)
        return found

    def _hold(self, piece: bytes) -> None:
        if self._skipping or not piece:
            return
        self._partial.append(piece)
        self._partial_size += len(piece)
        if self._partial_size > MAX_LINE_BYTES:
            head = b"".join(self._partial)
            if self._wanted_name(head) is not None:
                raise ExpositionError(f"a line is longer than {MAX_LINE_BYTES} bytes")
            self._partial.clear()
            self._partial_size = 0
            self._skipping = True

    def _finish_partial(self, found: list[tuple[str, Sample]]) -> None:
        if self._partial:
            self._lines([b"".join(self._partial)], found)
        self._partial.clear()
        self._partial_size = 0
        self._skipping = False

    def _wanted_name(self, line: bytes) -> str | None:
        """The wanted metric a line (or its start) is a sample of, if any."""
        if not line.startswith(self._prefix) or line.startswith(b"#"):
            return None
        head = line[: self._longest_name + 1]
        for delimiter in (b"{", b" "):
            head = head.split(delimiter, 1)[0]
        return self._wanted.get(head)

    def _lines(self, lines: list[bytes], found: list[tuple[str, Sample]]) -> None:
        prefix, wanted = self._prefix, self._wanted
        for line in lines:
            if not line.startswith(prefix) or line.startswith(b"#"):
                continue
            brace = line.find(b"{")
            space = line.find(b" ")
            if brace != -1 and (space == -1 or brace < space):
                name = wanted.get(line[:brace])
            else:
                brace = -1
                name = wanted.get(line[:space] if space != -1 else line)
            if name is None:
                continue
            sample = _parse_line(line, name, brace, space)
            identity = hash((name, *sorted(sample.labels.items())))
            if identity in self._seen:
                self.duplicates += 1
                continue
            self._seen.add(identity)
            found.append((name, sample))


def parse_selected(
    text: str | bytes, wanted: Iterable[str], prefix: str = ""
) -> dict[str, list[Sample]]:
    """Return the samples of the `wanted` metric names found in a whole page."""
    parser = SelectiveParser(wanted, prefix)
    page = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    found: dict[str, list[Sample]] = {}
    for name, sample in (*parser.feed(page), *parser.close()):
        found.setdefault(name, []).append(sample)
    return found
