"""A selective, streaming parser for the Prometheus text exposition format (0.0.4).

An engine page has hundreds of lines (histogram buckets, Python runtime, HTTP
middleware) of which we need a couple of dozen. The generic parser in
prometheus_client builds objects for every line; this one finds the lines of
the metric names we asked for in the raw bytes and only decodes and parses
those, which keeps an 8-engine node's scrape cost negligible.

The page is fed in chunks as they arrive, so a large page is never held whole:
only the unfinished line at the end of a chunk is kept, and an unwanted line
longer than a chunk is dropped as it streams by.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import NamedTuple

Labels = dict[str, str]

MAX_LINE_BYTES = 64 * 1024
"""A wanted line longer than this is an error (vLLM's longest, cache_config_info,
is about 1.5 kB); unwanted lines may be any length."""


class ExpositionError(ValueError):
    """A wanted sample line could not be parsed."""


_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')
_PLAIN_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"'
_PLAIN_LABELS = re.compile(r"\{((?:" + _PLAIN_PAIR + r"(?:," + _PLAIN_PAIR + r")*,?)?)\}\s*(\S+)")
"""A label set as engines print it, without spaces or escapes, and the value token
after it. Where it matches, `_parse_labels` and the first token after its `}` read
the same; where it does not, `_parse_labels` reads the line or says why it is
malformed."""
_PLAIN_PAIRS = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE_RE = re.compile(r'\\[\\"n]')
_NAN_SPELLINGS = frozenset(("NaN", "nan"))
_NO_LABELS: frozenset[tuple[str, str]] = frozenset()


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value)


def _shown(line: str | bytes) -> str:
    return repr(line[:120])


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


def _parse_line(raw: bytes, name: str, name_end: int) -> tuple[Labels, float]:
    """One wanted sample line, `name{labels} value [timestamp]` or `name value`, whose
    name ends at `name_end`: its labels and value."""
    if len(raw) > MAX_LINE_BYTES:
        raise ExpositionError(f"a {name} line is longer than {MAX_LINE_BYTES} bytes")
    try:
        line = raw.decode()
    except UnicodeDecodeError:
        raise ExpositionError(f"invalid UTF-8 in line: {_shown(raw)}") from None
    after_name = line[name_end : name_end + 1]
    if after_name == " ":
        labels: Labels = {}
        tokens = line[name_end + 1 :].split(None, 1)
        token = tokens[0] if tokens else ""
    elif after_name != "{":
        raise ExpositionError(f"sample without value: {_shown(line)}")
    elif plain := _PLAIN_LABELS.match(line, name_end):
        pairs, token = plain.groups()
        labels = dict(_PLAIN_PAIRS.findall(pairs)) if pairs else {}
    else:
        labels, end = _parse_labels(line, name_end)
        tokens = line[end:].split(None, 1)
        token = tokens[0] if tokens else ""
    # The value: non-finite and negative values are returned for the caller to judge.
    try:
        value = float(token)
    except ValueError:
        raise ExpositionError(f"bad sample value in line: {_shown(line)}") from None
    # Python's float() also takes `1_000` and `-nan`, which the format does not.
    if "_" in token or (value != value and token not in _NAN_SPELLINGS):
        raise ExpositionError(f"bad sample value in line: {_shown(line)}")
    return labels, value


Found = tuple[str, Labels, float]
"""A wanted sample as read: its metric name, labels and value."""


class _Plan(NamedTuple):
    wanted: dict[bytes, str]
    """The wanted names, by their bytes."""
    prefixes: tuple[bytes, ...]
    """The same, for `startswith`."""
    longest_name: int
    lines: re.Pattern[bytes]
    """The search for the wanted lines: each found as (line, name), from its newline."""


@functools.lru_cache(maxsize=64)
def _plan(names: tuple[str, ...]) -> _Plan:
    """What a parser of `names` needs, built once per set of names (a collector reads
    the same names every cycle)."""
    wanted = {name.encode(): name for name in names}
    alternatives = b"|".join(re.escape(n) for n in sorted(wanted, key=len, reverse=True))
    # A name ends at a brace, a space, or the line's end; the leading newline lets
    # the search skip to candidate lines by its literal prefix.
    search = re.compile(rb"\n((" + alternatives + rb")(?=[{ \n]|\Z)[^\n]*)")
    return _Plan(wanted, tuple(wanted), max(map(len, wanted), default=0), search)


class SelectiveParser:
    """Reads the samples of the `wanted` metric names from a page fed in chunks.

    A regular expression finds the lines that start with a wanted name, so the
    lines in between are skipped without leaving C. Comments, blank lines and
    unwanted names are ignored; a wanted line that is malformed raises
    ExpositionError, because a half-read page would give wrong token counts. A
    sample repeating an earlier one's name and labels (in any order) is dropped
    and counted in `duplicates`, as Prometheus keeps the first.
    """

    def __init__(self, wanted: Iterable[str]) -> None:
        self._wanted, self._prefixes, self._longest_name, self._wanted_lines = _plan(tuple(wanted))
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._skipping = False
        """The unfinished line is unwanted and too long to keep: drop it up to its end."""
        self._seen: set[int] = set()
        """Hashes of the series read: a page of many series costs no copy of their labels."""
        self.duplicates = 0

    def feed(self, chunk: bytes) -> list[Found]:
        """Parse the lines that `chunk` completes; keep its unfinished last line."""
        found: list[Found] = []
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
        self._scan(chunk, start, last, found)
        self._hold(chunk[last + 1 :])
        return found

    def close(self) -> list[Found]:
        """Parse the page's last line if it had no newline."""
        found: list[Found] = []
        self._finish_partial(found)
        return found

    def _scan(self, chunk: bytes, start: int, end: int, found: list[Found]) -> None:
        """The wanted samples among the whole lines in chunk[start:end]."""
        first_end = chunk.find(b"\n", start, end)
        if chunk.startswith(self._prefixes, start):
            self._line(chunk[start : end if first_end == -1 else first_end], found)
        if first_end != -1:
            self._take(self._wanted_lines.findall(chunk, first_end, end), found)

    def _line(self, line: bytes, found: list[Found]) -> None:
        name = self._wanted_name(line)
        if name is not None:
            self._take(((line, name.encode()),), found)

    def _take(self, lines: Iterable[tuple[bytes, bytes]], found: list[Found]) -> None:
        """Parse wanted lines, each with its metric name's bytes; keep the first of a series."""
        wanted, seen = self._wanted, self._seen
        for line, raw_name in lines:
            name = wanted[raw_name]
            labels, value = _parse_line(line, name, len(raw_name))
            # The labels as a set: the same series with its labels in another order repeats.
            identity = hash((name, frozenset(labels.items()) if labels else _NO_LABELS))
            if identity in seen:
                self.duplicates += 1
            else:
                seen.add(identity)
                found.append((name, labels, value))

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

    def _finish_partial(self, found: list[Found]) -> None:
        if self._partial:
            self._line(b"".join(self._partial), found)
        self._partial.clear()
        self._partial_size = 0
        self._skipping = False

    def _wanted_name(self, line: bytes) -> str | None:
        """The wanted metric a line (or its start) is a sample of, if any."""
        head = line[: self._longest_name + 1]
        for delimiter in (b"{", b" "):
            head = head.split(delimiter, 1)[0]
        return self._wanted.get(head)
