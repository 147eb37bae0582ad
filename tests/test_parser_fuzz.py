"""Fuzzing the engine-page parser: any page yields readings or a CollectorError.

Real fixture pages are mutated (edge numbers, hostile labels, repeated, dropped
and cut lines, garbage bytes, invalid UTF-8) and each result must satisfy
`page_mutations.check_page`: no other exception, readings finite and
non-negative, and the streamed read equal to the whole-page read. The budget is
small and derandomized so CI runs the same examples every time;
tests/benchmarks/fuzz_parse.py runs the coverage-guided search at length.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from page_mutations import check_page, mutate, seed_pages, wanted_lines_only

PAGES = seed_pages()
SEEDS = {
    **{f"{name} (whole)": page for name, page in PAGES.items()},
    **{f"{name} (vllm lines)": wanted_lines_only(page) for name, page in PAGES.items()},
}
CI_BUDGET = settings(
    max_examples=400,
    derandomize=True,
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
    check_page(page, data.draw(st.integers(1, 70_000), label="chunk size"))


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
    check_page(page[:at] + garbage + page[at:], chunk)
