"""A selective, streaming parser for the Prometheus text exposition format (0.0.4).

An engine page has hundreds of lines (histogram buckets, Python runtime, HTTP
middleware) of which we need a couple of dozen. The generic parser in
prometheus_client builds objects for every line; this one finds the lines of
the metric names we asked for in the raw bytes and only decodes and parses
those, which keeps an 8-engine node's scrape cost negligible.

The page is fed in chunks as they arrive, so a large page is never held whole:
only the unfinished line at the end of a chunk is kept, and an unwanted line
longer than a chunk is dropped as it streams by.

An engine prints the same series every cycle with new values, so a wanted
line's name and labels (its "head") are parsed once and kept, by their raw
bytes, for the next cycles: a line whose head was seen before costs a dict
lookup and a float(). Only a head that parsed whole is kept, and only up to a
bound, so a page of ever-new labels cannot grow memory.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

Labels = Mapping[str, str]
"""A sample's labels. Read-only: the same mapping is handed out every cycle."""

MAX_LINE_BYTES = 64 * 1024
"""A wanted line longer than this is an error (vLLM's longest, cache_config_info,
is about 1.5 kB); unwanted lines may be any length."""

HEADS_KEPT = 2048
HEADS_KEPT_BYTES = 256 * 1024
"""At most this many parsed heads, of at most these many bytes in all, are kept per
set of wanted names; the next one drops them all, to be parsed again. A busy 8-rank
vLLM page has a few hundred heads of 60 to 1,500 bytes; pages of ever-new labels
make the kept heads weigh about 2 MiB at most."""
_HEAD_KEPT_BYTES = 4096
"""A longer head is parsed every time."""
TAIL_BYTES = 64
"""A value (and what follows it) longer than this takes the full parse: with a
kept head, a fast-read line stays far below MAX_LINE_BYTES."""


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
_NAN = float("nan")
_UNDERSCORE = ord("_")
"""As an int: `b"_" in tail` first tries the bytes as an int and clears the TypeError."""


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value)


def _shown(line: str | bytes) -> str:
    return repr(line[:120])


def _parse_labels(line: str, start: int) -> tuple[dict[str, str], int]:
    """Parse `{a="b",...}` starting at the brace; return labels and the index after `}`."""
    labels: dict[str, str] = {}
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


def _parse_line(raw: bytes, name: str, name_end: int) -> tuple[dict[str, str], float, int]:
    """One wanted sample line, `name{labels} value [timestamp]` or `name value`, whose
    name ends at `name_end`: its labels, its value, and the length of its decoded text
    after its labels."""
    if len(raw) > MAX_LINE_BYTES:
        raise ExpositionError(f"a {name} line is longer than {MAX_LINE_BYTES} bytes")
    try:
        line = raw.decode()
    except UnicodeDecodeError:
        raise ExpositionError(f"invalid UTF-8 in line: {_shown(raw)}") from None
    after_name = line[name_end : name_end + 1]
    if after_name == " ":
        labels: dict[str, str] = {}
        end = name_end
        tokens = line[name_end + 1 :].split(None, 1)
        token = tokens[0] if tokens else ""
    elif after_name != "{":
        raise ExpositionError(f"sample without value: {_shown(line)}")
    elif plain := _PLAIN_LABELS.match(line, name_end):
        pairs, token = plain.groups()
        labels = dict(_PLAIN_PAIRS.findall(pairs)) if pairs else {}
        end = plain.end(1) + 1
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
    return labels, value, len(line) - end


Found = tuple[str, Labels, float]
"""A wanted sample as read: its metric name, labels and value."""

_Head = tuple[str, Labels, int]
"""A parsed head: the metric name, its labels, and the series' identity (the hash of
the name and the labels as a set, so that labels in another order are the same)."""


def _trie(names: list[bytes]) -> bytes:
    """A pattern matching exactly `names`, factored by common prefix: `re` tries a
    group's alternatives in turn, so each line tries a handful of letters instead of
    every name."""
    by_first: dict[bytes, list[bytes]] = {}
    for name in sorted(set(names)):
        if name:
            by_first.setdefault(name[:1], []).append(name[1:])
    branches = []
    for first, rests in by_first.items():
        prefix = first
        while all(rests) and len({rest[:1] for rest in rests}) == 1:
            prefix += rests[0][:1]
            rests = [rest[1:] for rest in rests]
        branches.append(re.escape(prefix) + _trie(rests))
    if not branches:
        return b""
    pattern = b"(?:" + b"|".join(branches) + b")"
    return pattern + b"?" if b"" in names else pattern


class _Plan:
    """What a parser of a set of wanted names needs, and the heads it has read."""

    __slots__ = ("wanted", "line", "lines", "heads", "kept_bytes")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.wanted = {name.encode(): name for name in names}
        """The wanted names, by their bytes."""
        # A name ends at a brace, a space, or the line's end (a sample without value).
        line = rb"(" + _trie(list(self.wanted)) + rb"(?=[{ \n]|\Z)(?:\{[^\n]*\})?)([^\n]*)"
        self.line = re.compile(line)
        """A wanted line as (head, tail): its name and labels up to its last `}`, and
        the rest (the value and anything after it)."""
        self.lines = re.compile(b"\n" + line)
        """The same for each line after a newline: `findall` skips to them without
        leaving C."""
        self.heads: dict[bytes, _Head] = {}
        """Parsed heads by their bytes, within HEADS_KEPT and HEADS_KEPT_BYTES."""
        self.kept_bytes = 0

    def keep(self, head: bytes, known: _Head) -> None:
        """Keep a parsed head for the next cycles; past the bounds, drop the others."""
        heads = self.heads
        if head in heads:
            return
        if len(heads) >= HEADS_KEPT or self.kept_bytes + len(head) > HEADS_KEPT_BYTES:
            heads.clear()
            self.kept_bytes = 0
        heads[head] = known
        self.kept_bytes += len(head)


@functools.lru_cache(maxsize=64)
def _plan(names: tuple[str, ...]) -> _Plan:
    """The plan of `names`, built once per set of names (a collector reads the same
    names every cycle)."""
    return _Plan(names)


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
        self._plan = _plan(tuple(wanted))
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._skipping = False
        """The unfinished line is unwanted and too long to keep: drop it up to its end."""
        self._seen: set[int] = set()
        """Identities of the series read: a page of many series costs no copy of their labels."""
        self.duplicates = 0

    def feed(self, chunk: bytes) -> list[Found]:
        """Parse the lines that `chunk` completes; keep its unfinished last line."""
        return self.take(self.lines(chunk))

    def close(self) -> list[Found]:
        """Parse the page's last line if it had no newline."""
        return self.take(self.last_lines())

    def lines(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        """The wanted lines that `chunk` completes, unparsed, each as (head, tail): its
        name and labels, and the rest. The unfinished last line is kept."""
        lines: list[tuple[bytes, bytes]] = []
        start = 0
        if self._partial or self._skipping:
            end = chunk.find(b"\n")
            if end == -1:
                self._hold(chunk)
                return lines
            self._hold(chunk[:end])
            self._finish_partial(lines)
            start = end + 1
        last = chunk.rfind(b"\n")
        if last < start:
            self._hold(chunk[start:])
            return lines
        plan = self._plan
        # The first line has no newline before it for `lines` to find.
        first = plan.line.match(chunk, start, chunk.find(b"\n", start))
        found = plan.lines.findall(chunk, start, last)
        if first is not None:
            found.insert(0, first.groups())
        if lines:
            lines.extend(found)
        else:
            lines = found
        self._hold(chunk[last + 1 :])
        return lines

    def last_lines(self) -> list[tuple[bytes, bytes]]:
        """The page's last line, if it was wanted and had no newline."""
        lines: list[tuple[bytes, bytes]] = []
        self._finish_partial(lines)
        return lines

    def take(self, lines: Iterable[tuple[bytes, bytes]]) -> list[Found]:
        """Parse wanted lines (from `lines`); keep the first of a series."""
        found: list[Found] = []
        self._take(lines, found)
        return found

    def known(self, head: bytes) -> _Head | None:
        """The parsed head kept for `head`, if it is kept."""
        return self._plan.heads.get(head)

    def _take(self, lines: Iterable[tuple[bytes, bytes]], found: list[Found]) -> None:
        """Read wanted lines, each as (head, tail); keep the first of a series."""
        heads, seen = self._plan.heads, self._seen
        for head, tail in lines:
            # A kept head and a short value without `_` that float() takes: read here.
            # All else, NaN included (only some spellings are allowed), is parsed whole.
            known = heads.get(head)
            value = _NAN
            if known is not None and len(tail) <= TAIL_BYTES and _UNDERSCORE not in tail:
                try:
                    value = float(tail)
                except ValueError:
                    known = None
            if known is None or value != value:
                known, value = self._read(head, tail)
            name, labels, identity = known
            if identity in seen:
                self.duplicates += 1
            else:
                seen.add(identity)
                found.append((name, labels, value))

    def _read(self, head: bytes, tail: bytes) -> tuple[_Head, float]:
        """The full parse of a wanted line; its head is kept when its labels end where
        the head does, so that they are the same whatever value follows."""
        name_bytes = head.partition(b"{")[0]
        name = self._plan.wanted[name_bytes]
        labels, value, after_labels = _parse_line(head + tail, name, len(name_bytes))
        known = (name, labels, hash((name, frozenset(labels.items()) if labels else _NO_LABELS)))
        if after_labels == len(tail) and tail.isascii() and len(head) <= _HEAD_KEPT_BYTES:
            self._plan.keep(head, known)
        return known, value

    def _hold(self, piece: bytes) -> None:
        if self._skipping or not piece:
            return
        self._partial.append(piece)
        self._partial_size += len(piece)
        if self._partial_size > MAX_LINE_BYTES:
            if self._plan.line.match(b"".join(self._partial)) is not None:
                raise ExpositionError(f"a line is longer than {MAX_LINE_BYTES} bytes")
            self._partial.clear()
            self._partial_size = 0
            self._skipping = True

    def _finish_partial(self, lines: list[tuple[bytes, bytes]]) -> None:
        if self._partial:
            line = self._plan.line.match(b"".join(self._partial))
            if line is not None:
                lines.append(line.groups())
        self._partial.clear()
        self._partial_size = 0
        self._skipping = False
