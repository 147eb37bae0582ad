"""Fuzzing the engine-page parser: any page yields readings or a CollectorError.

Real fixture pages are mutated (edge numbers, hostile labels, repeated, dropped
and cut lines, garbage bytes, invalid UTF-8) and each result must satisfy
`page_mutations.check_page`: no other exception, readings finite and
non-negative, and the streamed read equal to the whole-page read. The budget is
small and derandomized so CI runs the same examples every time
(LLMCOST_FUZZ_EXAMPLES=5000 searches longer, at random); the HTTP test sends
hostile responses over a real socket through HttpPage.
tests/benchmarks/fuzz_parse.py runs the coverage-guided search at length.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from page_mutations import check_page, mutate, seed_pages, wanted_lines_only
from realparts.loopback_http import LoopbackHttp, QuietHandler
from realparts.timeouts import scaled

from llm_cost_exporter.collectors.base import REASONS, CollectorError
from llm_cost_exporter.collectors.http_client import HttpClient
from llm_cost_exporter.collectors.http_page import HttpPage
from llm_cost_exporter.collectors.readings import EngineReadings
from llm_cost_exporter.collectors.vllm import VllmCollector

PAGES = seed_pages()
SEEDS = {
    **{f"{name} (whole)": page for name, page in PAGES.items()},
    **{f"{name} (vllm lines)": wanted_lines_only(page) for name, page in PAGES.items()},
}
LONGER = int(os.environ.get("LLMCOST_FUZZ_EXAMPLES", "0"))
"""Examples per test for a longer, random search; 0 (unset) keeps the small, fixed CI budget."""
CI_BUDGET = settings(
    max_examples=LONGER or 400,
    derandomize=not LONGER,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class DrawPicker:
    """The mutations' choices, drawn from hypothesis so that a failure shrinks."""

    def __init__(self, data: st.DataObject) -> None:
        self._data = data

    def below(self, n: int) -> int:
        return self._data.draw(st.integers(0, n - 1))


def test_seed_pages_include_every_vllm_fixture_and_other_engines() -> None:
    names = set(PAGES)
    assert {n for n in names if n.startswith("vllm-")} >= {
        "vllm-0.32.0-cpu-busy.prom",
        "vllm-0.6.6-reconstructed.prom",
        "vllm-0.10.0-dp2-reconstructed.prom",
    }
    assert any(n.startswith("sglang-") for n in names)


@CI_BUDGET
@given(st.data())
def test_mutated_real_pages_yield_readings_or_a_collector_error(data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(sorted(SEEDS)), label="seed")
    rounds = data.draw(st.integers(1, 4), label="rounds")
    page = mutate(SEEDS[seed], DrawPicker(data), rounds)
    chunk = data.draw(st.integers(1, 70_000), label="chunk size")
    # The engine's page before or after this one is the real one: the mutated page is
    # read after it, and it after the mutated page, each following the other's shape.
    check_page(page, chunk, last_page=SEEDS[seed])
    check_page(SEEDS[seed], chunk, last_page=page)


@CI_BUDGET
@given(st.binary(max_size=4096), st.integers(1, 64))
def test_arbitrary_bytes_yield_readings_or_a_collector_error(page: bytes, chunk: int) -> None:
    check_page(page, chunk)


@CI_BUDGET
@given(
    st.sampled_from(sorted(PAGES)),
    st.binary(max_size=64),
    st.floats(0, 1),
    st.integers(1, 4096),
)
def test_bytes_spliced_into_a_real_page(
    name: str, garbage: bytes, where: float, chunk: int
) -> None:
    page = PAGES[name]
    at = int(where * len(page))
    check_page(page[:at] + garbage + page[at:], chunk, last_page=page)


# --- the HTTP decode path: hostile responses on a real socket --------------------------------


class _RawHandler(QuietHandler):
    """Answers every GET with the owner's raw bytes: status line, headers and body as given."""

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.write(self.server.owner.response)


class RawResponses:
    response = b""


def _chunked(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


ENCODINGS = {
    b"gzip": lambda body: gzip.compress(body),
    b"deflate": zlib.compress,
    b"identity": lambda body: body,
    b"br": lambda body: body,
    b"x-unknown": lambda body: body,
}


@st.composite
def http_responses(draw: st.DrawFn) -> bytes:
    """A response as a broken or hostile engine might send it, byte for byte."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    body = mutate(SEEDS[name], DrawPicker(draw(st.data())), draw(st.integers(0, 2)))
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))] + draw(st.binary(max_size=32))
    status = draw(
        st.sampled_from(
            [
                b"HTTP/1.1 200 OK",
                b"HTTP/1.0 200 OK",
                b"HTTP/1.1 200",
                b"HTTP/1.1 500 Internal Server Error",
                b"HTTP/1.1 204 No Content",
                b"HTTP/1.1 302 Found\r\nLocation: /again",
                b"HTTP/1.1 999 \xff",
                b"HTTP/2.0 200 OK",
                b"ICY 200 OK",
                b"garbage",
            ]
        )
    )
    headers = [
        b"Content-Type: "
        + draw(
            st.sampled_from(
                [
                    b"text/plain; version=0.0.4; charset=utf-8",
                    b"text/plain; charset=latin-1",
                    b"text/html",
                    b"application/json",
                    b"application/openmetrics-text",
                    b"\xff\xfe",
                    b"",
                ]
            )
        )
    ]
    encoding = draw(st.sampled_from([None, *ENCODINGS]))
    if encoding is not None:
        headers.append(b"Content-Encoding: " + encoding)
        if draw(st.booleans()):
            body = ENCODINGS[encoding](body)
    framing = draw(st.sampled_from(["length", "close", "chunked", "bad length", "bad chunks"]))
    if framing == "length":
        headers.append(b"Content-Length: %d" % len(body))
    elif framing == "bad length":
        headers.append(
            b"Content-Length: "
            + draw(st.sampled_from([b"-1", b"abc", b"99999999999999999999", b"1, 2"]))
        )
    elif framing in ("chunked", "bad chunks"):
        headers.append(b"Transfer-Encoding: chunked")
        body = _chunked(body, draw(st.integers(1, 4096)))
        if framing == "bad chunks":
            at = draw(st.integers(0, len(body)))
            body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    if draw(st.booleans()):
        headers.append(draw(st.binary(max_size=40)))
    return status + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def raw_server():
    owner = RawResponses()
    with LoopbackHttp(_RawHandler, owner, "raw-responses") as server:
        yield owner, server.url + "/metrics"


async def _collect(url: str, max_bytes: int) -> object:
    async with HttpClient() as session:
        collector = VllmCollector(url, HttpPage(session, url, scaled(5), max_bytes))
        try:
            return await collector.collect()
        except CollectorError as error:
            assert error.reason in REASONS
            return error


@settings(CI_BUDGET, max_examples=LONGER or 100)
@given(http_responses(), st.sampled_from([512, 64 * 1024, 16 * 1024 * 1024]))
def test_hostile_http_responses_yield_readings_or_a_collector_error(
    raw_server, response: bytes, max_bytes: int
) -> None:
    owner, url = raw_server
    owner.response = response
    result = asyncio.run(_collect(url, max_bytes))
    assert isinstance(result, (EngineReadings, CollectorError)), result
