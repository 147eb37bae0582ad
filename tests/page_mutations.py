"""Hostile variants of real engine pages, for the parser's fuzz test and fuzz benchmark.

Every mutation starts from a real page (tests/fixtures/) and changes it the way
a broken or hostile engine might: a value replaced by an edge number, a number
label of `vllm:cache_config_info` made huge or non-finite, a line repeated,
dropped or cut, a label value made hostile, raw garbage or invalid UTF-8
spliced in. A `Picker` makes every choice, so the same catalogue runs under
hypothesis (which shrinks a failure to its smallest case) and under atheris
(which steers by coverage).

`check_page` is the property both assert: a page yields readings that are
finite, non-negative and consistent, or a CollectorError with a known reason;
reading it in chunks gives what reading it whole gives; and so does reading it
after another page, following that page's shape (collectors/page_shape.py).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from llm_cost_exporter.collectors.base import REASONS, CollectorError
from llm_cost_exporter.collectors.page_shape import LastPage
from llm_cost_exporter.collectors.readings import REJECT_REASONS, EngineReadings
from llm_cost_exporter.collectors.vllm import SERIES, VllmPageReader, parse_vllm_page

FIXTURES = Path(__file__).resolve().parent / "fixtures"

EDGE_NUMBERS = (
    b"NaN",
    b"nan",
    b"-nan",
    b"+Inf",
    b"-Inf",
    b"inf",
    b"Infinity",
    b"-1",
    b"-0",
    b"-0.0",
    b"-1e-300",
    b"0",
    b"1e400",
    b"-1e400",
    b"1e308",
    b"1.7976931348623157e308",
    b"9007199254740992",
    b"9007199254740993",
    b"18446744073709551616",
    b"1" * 400,
    b"4.9e-324",
    b"0.5",
    b"1.0000001",
    b"1_000",
    b"0x10",
    b"1e",
    b"--1",
    b"",
    b" ",
    b"None",
)
"""Numbers an engine should never send, and some it may: where a value goes."""

HOSTILE_TEXT = (
    b'\\"',
    b"\\\\",
    b"\\n",
    b"\\",
    b"}",
    b'"} 1',
    b'",engine="0',
    b"{",
    b"=",
    b",",
    b"\xff\xfe",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\x00",
    b"\r",
    b"\xe2\x80\xa8",
    b"\xc2\x85",
    b"\t",
    "modèle-🦙".encode(),
    b"m" * 300,
)
"""Label values and fragments that break naive parsers: escapes, braces, quotes,
invalid or unusual UTF-8, line separators other than newline."""

_READ = tuple(series.name.encode() for series in SERIES)
_SAMPLE_VALUE = re.compile(rb"^(\S+?(?:\{.*\})?) (\S+)(.*)$")
_NAME_END = re.compile(rb"[{ ]")
_LABEL_VALUE = re.compile(rb'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Picker(Protocol):
    """Where a mutation's choices come from: hypothesis draws or a seeded random."""

    def below(self, n: int) -> int:
        """A whole number in [0, n); n >= 1."""
        ...


def _pick(picker: Picker, items: list | tuple):
    return items[picker.below(len(items))]


def seed_pages() -> dict[str, bytes]:
    """Every fixture page, by file name: vLLM pages of several releases and other engines'."""
    return {path.name: path.read_bytes() for path in sorted(FIXTURES.glob("*/*.prom"))}


def wanted_lines_only(page: bytes) -> bytes:
    """A page cut down to the samples the parser reads and their comments: small, so
    fuzzing is fast."""
    comments = tuple(b"# " + kind + b" " + name for kind in (b"HELP", b"TYPE") for name in _READ)
    return b"".join(
        line for line in page.splitlines(keepends=True) if line.startswith((*_READ, *comments))
    )


def _sample_lines(lines: list[bytes], picker: Picker) -> list[int]:
    """Lines worth mutating: mostly the samples the parser reads, else any vLLM
    sample, else any line."""
    if picker.below(4):
        read = [i for i, line in enumerate(lines) if line.startswith(_READ)]
        if read:
            return read
    chosen = [i for i, line in enumerate(lines) if line.startswith(b"vllm")]
    return chosen or list(range(len(lines)))


def replace_value(lines: list[bytes], picker: Picker) -> None:
    """A sample's value becomes an edge number."""
    index = _pick(picker, _sample_lines(lines, picker))
    match = _SAMPLE_VALUE.match(lines[index].rstrip(b"\n"))
    if match:
        lines[index] = match.group(1) + b" " + _pick(picker, EDGE_NUMBERS) + match.group(3) + b"\n"


def replace_label_value(lines: list[bytes], picker: Picker) -> None:
    """A label value becomes an edge number (KV geometry) or hostile text (a model name)."""
    index = _pick(picker, _sample_lines(lines, picker))
    line = lines[index]
    labels = list(_LABEL_VALUE.finditer(line))
    if not labels:
        return
    label = _pick(picker, labels)
    replacement = _pick(picker, (*EDGE_NUMBERS, *HOSTILE_TEXT))
    lines[index] = line[: label.start(2)] + replacement + line[label.end(2) :]


def duplicate_line(lines: list[bytes], picker: Picker) -> None:
    index = _pick(picker, _sample_lines(lines, picker))
    lines.insert(picker.below(len(lines) + 1), lines[index])


def drop_line(lines: list[bytes], picker: Picker) -> None:
    del lines[_pick(picker, _sample_lines(lines, picker))]


def rename_metric(lines: list[bytes], picker: Picker) -> None:
    """A sample takes the `vllm_` spelling, or another wanted metric's name."""
    index = _pick(picker, _sample_lines(lines, picker))
    line = lines[index]
    if picker.below(2):
        lines[index] = line.replace(b"vllm:", b"vllm_", 1)
        return
    other = lines[_pick(picker, _sample_lines(lines, picker))]
    name, other_name = _NAME_END.split(line, maxsplit=1)[0], _NAME_END.split(other, maxsplit=1)[0]
    lines[index] = other_name + line[len(name) :]


def cut_line(lines: list[bytes], picker: Picker) -> None:
    """A sample line ends early, as in a page cut off mid-write."""
    index = _pick(picker, _sample_lines(lines, picker))
    lines[index] = lines[index][: picker.below(len(lines[index]) + 1)]


def splice_garbage(lines: list[bytes], picker: Picker) -> None:
    """Raw bytes (hostile fragments, or any byte at all) land inside a line."""
    index = _pick(picker, _sample_lines(lines, picker))
    line = lines[index]
    at = picker.below(len(line) + 1)
    if picker.below(2):
        garbage = _pick(picker, HOSTILE_TEXT)
    else:
        garbage = bytes(picker.below(256) for _ in range(1 + picker.below(8)))
    lines[index] = line[:at] + garbage + line[at:]


def crlf(lines: list[bytes], picker: Picker) -> None:
    """Line endings become CRLF."""
    lines[:] = [line.replace(b"\n", b"\r\n") for line in lines]


def long_line(lines: list[bytes], picker: Picker) -> None:
    """A sample line grows a label value beyond what a line may hold."""
    index = _pick(picker, _sample_lines(lines, picker))
    line = lines[index]
    brace = line.find(b"{")
    if brace != -1:
        filler = b"x" * (64 * 1024 + picker.below(3) - 1)
        lines[index] = line[: brace + 1] + b'pad="' + filler + b'",' + line[brace + 1 :]


MUTATIONS: tuple[Callable[[list[bytes], Picker], None], ...] = (
    replace_value,
    replace_value,
    replace_label_value,
    replace_label_value,
    duplicate_line,
    drop_line,
    rename_metric,
    cut_line,
    splice_garbage,
    splice_garbage,
    crlf,
    long_line,
)
"""Value mutations appear twice: they are what this catalogue is for."""


def mutate(page: bytes, picker: Picker, rounds: int) -> bytes:
    """`page` after `rounds` mutations picked by `picker`."""
    lines = page.splitlines(keepends=True) or [b""]
    for _ in range(rounds):
        _pick(picker, MUTATIONS)(lines, picker)
        if not lines:
            lines = [b""]
    return b"".join(lines)


def outcome(read: Callable[[], EngineReadings], detail: bool = False) -> tuple:
    """What a read gave; in `detail`, with the error's message or the first rejection."""
    try:
        readings = read()
    except CollectorError as error:
        return ("error", error.reason, *([str(error)] if detail else []))
    shown = [readings.first_rejected] if detail else []
    return ("readings", list(readings), readings.rejected, *shown)


def read_in_chunks(page: bytes, size: int, reader: VllmPageReader | None = None) -> EngineReadings:
    """The page fed to the streaming reader `size` bytes at a time."""
    reader = reader or VllmPageReader()
    for start in range(0, len(page), size):
        reader.feed(page[start : start + size])
    return reader.readings()


def read_following(
    last_page: bytes, page: bytes, size: int, last: LastPage | None = None
) -> EngineReadings:
    """`last_page`, then `page`, each read in `size`-byte pieces by a reader following the
    shape the page before left (in `last`), as an engine's collector reads one page after
    the other."""
    last = last or LastPage()
    with contextlib.suppress(CollectorError):
        read_in_chunks(last_page, size, VllmPageReader().follow(last))
    return read_in_chunks(page, size, VllmPageReader().follow(last))


def check_page(page: bytes, chunk_size: int, last_page: bytes | None = None) -> tuple:
    """Assert the parser's contract on `page`; return its outcome. With `last_page`, the
    page is also read following the shape that one left, which must change nothing.

    Anything but readings or a CollectorError propagates and fails the caller.
    """
    whole = outcome(lambda: parse_vllm_page(page))
    if whole[0] == "error":
        assert whole[1] in REASONS, whole
    else:
        readings, rejected = whole[1], whole[2]
        assert set(rejected) <= set(REJECT_REASONS), rejected
        assert all(isinstance(n, int) and n > 0 for n in rejected.values()), rejected
        for reading in readings:
            for name in ("prompt_tokens", "cached_prompt_tokens", "generation_tokens"):
                value = getattr(reading, name)
                assert math.isfinite(value) and value >= 0, (name, reading)
            optional = ("requests", "preemptions", "transferred_prompt_tokens")
            for name in ("running", "waiting", "kv_usage_ratio", "kv_capacity_tokens", *optional):
                value = getattr(reading, name)
                assert value is None or (math.isfinite(value) and value >= 0), (name, reading)
            if reading.kv_tokens is not None:
                assert math.isfinite(reading.kv_tokens) and reading.kv_tokens >= 0, reading
            if reading.started_at is not None:
                assert math.isfinite(reading.started_at) and reading.started_at >= 0, reading
            assert isinstance(reading.model, str) and isinstance(reading.engine, str)
    streamed = outcome(lambda: read_in_chunks(page, chunk_size))
    assert streamed == whole, (chunk_size, streamed, whole)
    if last_page is not None:
        # Read in the same pieces, following the last page changes not even a message.
        alone = outcome(lambda: read_in_chunks(page, chunk_size), detail=True)
        followed = outcome(lambda: read_following(last_page, page, chunk_size), detail=True)
        assert followed == alone, (chunk_size, followed, alone)
    return whole
