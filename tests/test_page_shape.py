"""An engine's next page with the last page's wanted lines is read by its values alone
(collectors/page_shape.py): what that changes is only the work, never a reading.

The fuzz test (test_parser_fuzz.py) reads every mutated page after the real one
and the real one after it; here every wanted value of a real page moves on, as a
busy engine's next page does, so the whole page is followed to its end.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from page_mutations import outcome, read_following, read_in_chunks, seed_pages

from llm_cost_exporter.collectors import promtext
from llm_cost_exporter.collectors.page_shape import LastPage
from llm_cost_exporter.collectors.sglang import SglangPageReader
from llm_cost_exporter.collectors.vllm import SERIES, VllmCollector, VllmPageReader

PAGES = {name: page for name, page in seed_pages().items() if name.startswith("vllm-")}
UPPER = {series.name.encode(): series.upper for series in SERIES}
_SAMPLE = re.compile(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^\n]*\})? (\S+)$", re.MULTILINE)


def wanted_values(page: bytes) -> list[re.Match[bytes]]:
    """The samples of `page` the vLLM reader reads, with their values."""
    return [match for match in _SAMPLE.finditer(page) if match.group(1) in UPPER]


def with_values(page: bytes, values: Iterator[float]) -> bytes:
    """`page` with each wanted sample's value replaced by the next of `values`."""

    def replace(match: re.Match[bytes]) -> bytes:
        if match.group(1) not in UPPER:
            return match.group(0)
        return match.group(1) + (match.group(2) or b"") + b" " + repr(next(values)).encode()

    return _SAMPLE.sub(replace, page)


def moved_on(matches: list[re.Match[bytes]]) -> list[float]:
    """A new usable value for each of the wanted samples `matches`: 7i + 3 for the i-th,
    a fraction for a ratio."""
    return [
        float(7 * i + 3) if UPPER[match.group(1)] > 1.0 else 1 / (i + 2)
        for i, match in enumerate(matches)
    ]


def usable(upper: float) -> st.SearchStrategy[float]:
    """A value the reader takes as it is, for a series whose largest usable value is `upper`."""
    if upper <= 1.0:
        return st.one_of(st.just(-0.0), st.floats(0.0, upper))
    return st.one_of(
        st.just(-0.0), st.integers(0, 2**53).map(float), st.floats(0.0, 1e15, allow_nan=False)
    )


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The heads of the lines parsed one by one (SelectiveParser.take), as they are."""
    heads: list[bytes] = []
    take = promtext.SelectiveParser.take

    def counted(self: promtext.SelectiveParser, lines: list[tuple[bytes, bytes]]) -> object:
        lines = list(lines)
        heads.extend(head for head, _ in lines)
        return take(self, lines)

    monkeypatch.setattr(promtext.SelectiveParser, "take", counted)
    return heads


def read_after(last_page: bytes, page: bytes, chunk: int, last: LastPage | None = None) -> tuple:
    """The outcome of `page` read in `chunk`-byte pieces after `last_page`, following it."""
    return outcome(lambda: read_following(last_page, page, chunk, last), detail=True)


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_a_page_with_the_last_pages_lines_reads_as_if_read_alone(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(PAGES)), label="page")
    last_page = PAGES[name]
    uppers = [UPPER[match.group(1)] for match in wanted_values(last_page)]
    values = [data.draw(usable(upper)) for upper in uppers]
    page = with_values(last_page, iter(values))
    chunk = data.draw(st.integers(1, 70_000), label="chunk size")
    alone = outcome(lambda: read_in_chunks(page, chunk), detail=True)
    last = LastPage()
    assert read_after(last_page, page, chunk, last) == alone
    assert last.shape is not None and len(last.shape.heads) == len(values)


def test_the_followed_page_routes_no_line(routed: list[bytes]) -> None:
    """The second page of a busy engine is read without routing a line, to the same
    readings (the p2p part, which vLLM counts as transferred, included)."""
    last_page = PAGES["vllm-0.32.0-cpu-busy.prom"]
    matches = wanted_values(last_page)
    samples = [match.group(0) for match in matches]
    page = with_values(last_page, iter(moved_on(matches)))
    alone = outcome(lambda: read_in_chunks(page, len(page)), detail=True)
    last = LastPage()
    read_in_chunks(last_page, 4096, VllmPageReader().follow(last))
    assert last.shape is not None and len(last.shape.heads) == len(samples)
    routed.clear()
    followed = outcome(lambda: read_in_chunks(page, 4096, VllmPageReader().follow(last)), True)
    assert routed == []
    assert followed == alone
    (reading,) = followed[1]
    p2p = next(i for i, sample in enumerate(samples) if sample.startswith(P2P))
    assert reading.transferred_prompt_tokens == float(7 * p2p + 3)
    # The page after: other values in the same sums, nothing left of the last page's.
    third = with_values(last_page, iter(v / 2 for v in moved_on(matches)))
    again = outcome(lambda: read_in_chunks(third, 4096, VllmPageReader().follow(last)), True)
    assert routed == []
    assert again == outcome(lambda: read_in_chunks(third, len(third)), detail=True)
    assert again != followed


def _lines(page: bytes) -> list[bytes]:
    return page.splitlines(keepends=True)


def _wanted_index(page: bytes, marker: bytes) -> int:
    return next(i for i, line in enumerate(_lines(page)) if line.startswith(marker))


def _edit(edit: Callable[[list[bytes]], None]) -> Callable[[bytes], bytes]:
    def edited(page: bytes) -> bytes:
        lines = _lines(page)
        edit(lines)
        return b"".join(lines)

    return edited


def _set_value(marker: bytes, value: bytes) -> Callable[[list[bytes]], None]:
    def edit(lines: list[bytes]) -> None:
        index = next(i for i, line in enumerate(lines) if line.startswith(marker))
        head, _, _ = lines[index].rstrip(b"\n").rpartition(b" ")
        lines[index] = head + b" " + value + b"\n"

    return edit


def _drop(marker: bytes) -> Callable[[list[bytes]], None]:
    def edit(lines: list[bytes]) -> None:
        del lines[next(i for i, line in enumerate(lines) if line.startswith(marker))]

    return edit


def _repeat(marker: bytes) -> Callable[[list[bytes]], None]:
    def edit(lines: list[bytes]) -> None:
        index = next(i for i, line in enumerate(lines) if line.startswith(marker))
        lines.insert(index + 1, lines[index])

    return edit


def _swap(first: bytes, second: bytes) -> Callable[[list[bytes]], None]:
    def edit(lines: list[bytes]) -> None:
        a = next(i for i, line in enumerate(lines) if line.startswith(first))
        b = next(i for i, line in enumerate(lines) if line.startswith(second))
        lines[a], lines[b] = lines[b], lines[a]

    return edit


def _add_model(lines: list[bytes]) -> None:
    extra = [line.replace(b"tiny-llama", b"other-model") for line in lines if b"tiny-llama" in line]
    lines.extend(extra)


RUNNING = b"vllm:num_requests_running{"
PROMPT = b"vllm:prompt_tokens_total{"
P2P = b'vllm:prompt_tokens_cached_by_source_total{engine="0",model_name="tiny-llama",source="p2p"}'
CHANGES = {
    "a value becomes NaN": _set_value(RUNNING, b"NaN"),
    "a value becomes negative": _set_value(RUNNING, b"-1"),
    "a value becomes infinite": _set_value(PROMPT, b"+Inf"),
    "a value beyond what is counted": _set_value(PROMPT, b"1e300"),
    "a value with an underscore": _set_value(PROMPT, b"1_000"),
    "a value followed by a timestamp": _set_value(PROMPT, b"5 1700000000000"),
    "a value that is no number": _set_value(PROMPT, b"five"),
    "a ratio above one": _set_value(b"vllm:kv_cache_usage_perc{", b"1.5"),
    "a line dropped": _drop(PROMPT),
    "a line repeated": _repeat(PROMPT),
    "two lines swapped": _swap(RUNNING, PROMPT),
    "the last wanted line dropped": _drop(b"vllm:prompt_tokens_created{"),
    "a model added": _add_model,
    "a part's value moved on": _set_value(P2P, b"40"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("chunk", [1, 97, 4096, 1 << 20])
def test_a_changed_page_reads_as_if_nothing_were_kept(change: str, chunk: int) -> None:
    last_page = PAGES["vllm-0.32.0-cpu-busy.prom"]
    assert all(
        marker in last_page for marker in (RUNNING, PROMPT, P2P, b"vllm:prompt_tokens_created{")
    )
    page = _edit(CHANGES[change])(last_page)
    assert page != last_page
    alone = outcome(lambda: read_in_chunks(page, chunk), detail=True)
    last = LastPage()
    assert read_after(last_page, page, chunk, last) == alone
    # And the page after it: read after the changed page, as if alone too.
    assert read_after(page, last_page, chunk, last) == outcome(
        lambda: read_in_chunks(last_page, chunk), detail=True
    )


def test_a_faulty_page_leaves_no_shape() -> None:
    """A page with a rejected value or a repeated series is not followed next time."""
    page = PAGES["vllm-0.32.0-cpu-busy.prom"]
    for change in ("a value becomes negative", "a line repeated"):
        last = LastPage()
        read_in_chunks(page, len(page), VllmPageReader().follow(last))
        assert last.shape is not None
        read_in_chunks(_edit(CHANGES[change])(page), len(page), VllmPageReader().follow(last))
        assert last.shape is None, change


def test_a_reader_whose_key_notes_what_it_sees_does_not_follow(routed: list[bytes]) -> None:
    page = next(p for n, p in sorted(seed_pages().items()) if n.startswith("sglang-"))
    last = LastPage()
    for _ in range(2):
        routed.clear()
        reader = SglangPageReader().follow(last)
        reader.feed(page)
        reader.readings()
        assert routed, "every SGLang page is read line by line"
    assert last.shape is None


class _Pages:
    """A PageSource serving one page after another (the engine's successive pages)."""

    def __init__(self, pages: list[bytes]) -> None:
        self._pages = iter(pages)

    async def read(self, feed: Callable[[bytes], None]) -> None:
        feed(next(self._pages))

    async def read_json(self, path: str) -> object:
        raise AssertionError(path)


def test_an_engines_collector_follows_its_own_last_page(routed: list[bytes]) -> None:
    first = PAGES["vllm-0.32.0-cpu-busy.prom"]
    count = len(wanted_values(first))
    second = with_values(first, iter(moved_on(wanted_values(first))))
    collector = VllmCollector("engine-a", _Pages([first, second]))
    other = VllmCollector("engine-b", _Pages([second]))
    asyncio.run(collector.collect())
    routed.clear()
    readings = asyncio.run(collector.collect())
    assert routed == [], "its second page follows its first"
    assert readings == read_in_chunks(second, len(second))
    routed.clear()
    asyncio.run(other.collect())
    assert len(routed) >= count, "another engine's collector keeps its own last page"
