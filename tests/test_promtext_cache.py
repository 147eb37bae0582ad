"""The parser keeps each wanted line's parsed name and labels (its head) for the next
cycles: what it keeps is bounded, and never stands in for what a page says."""

from __future__ import annotations

import itertools

import pytest

from llm_cost_exporter.collectors import promtext
from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.promtext import MAX_LINE_BYTES, ExpositionError, SelectiveParser
from llm_cost_exporter.collectors.vllm import parse_vllm_page

_fresh = itertools.count()


def fresh_names(*suffixes: str) -> tuple[str, ...]:
    """Metric names no other test reads, so that the test starts with nothing kept."""
    prefix = f"cache_test_{next(_fresh)}_"
    return tuple(prefix + suffix for suffix in suffixes)


def read(names: tuple[str, ...], page: str | bytes) -> tuple[list, int]:
    """The samples of a whole page, and the duplicates left out."""
    parser = SelectiveParser(names)
    data = page.encode() if isinstance(page, str) else page
    found = parser.feed(data) + parser.close()
    return [(name, dict(labels), value) for name, labels, value in found], parser.duplicates


def kept(names: tuple[str, ...]) -> dict[bytes, object]:
    return promtext._plan(names).heads


def vllm_page(model: str, engine: str, prompt: str, generation: str = "7") -> str:
    labels = f'engine="{engine}",model_name="{model}"'
    return (
        f"vllm:prompt_tokens_total{{{labels}}} {prompt}\n"
        f"vllm:generation_tokens_total{{{labels}}} {generation}\n"
    )


def test_a_kept_head_reads_the_new_value_of_each_cycle() -> None:
    (name,) = fresh_names("total")
    assert read((name,), f'{name}{{model="a"}} 5\n') == ([(name, {"model": "a"}, 5.0)], 0)
    assert f'{name}{{model="a"}}'.encode() in kept((name,))
    assert read((name,), f'{name}{{model="a"}} 7.5\n') == ([(name, {"model": "a"}, 7.5)], 0)
    assert read((name,), f'{name} 3\n{name}{{model="a"}} 9\n') == (
        [(name, {}, 3.0), (name, {"model": "a"}, 9.0)],
        0,
    )


@pytest.mark.parametrize(("before", "after"), [("a", "b"), ("a", "ab"), ("llama", "llam")])
def test_a_changed_label_value_is_read_on_the_next_cycle(before: str, after: str) -> None:
    (first,) = parse_vllm_page(vllm_page(before, "0", "5"))
    (second,) = parse_vllm_page(vllm_page(after, "1", "6"))
    (again,) = parse_vllm_page(vllm_page(before, "0", "8"))
    assert (first.model, first.engine, first.prompt_tokens) == (before, "0", 5)
    assert (second.model, second.engine, second.prompt_tokens) == (after, "1", 6)
    assert (again.model, again.engine, again.prompt_tokens) == (before, "0", 8)


@pytest.mark.parametrize("value", ["1_000", "-nan", "+nan", "NAN", "twelve", "0x10", ""])
def test_a_value_the_format_forbids_is_an_error_after_its_head_was_kept(value: str) -> None:
    (name,) = fresh_names("total")
    read((name,), f'{name}{{model="a"}} 5\n')
    assert kept((name,))
    with pytest.raises(ExpositionError):
        read((name,), f'{name}{{model="a"}} {value}\n')


@pytest.mark.parametrize(
    ("tail", "value"),
    [(" NaN", None), (" nan", None), (" 5 1700000000000", 5.0), ("\t6\r", 6.0), ("7", 7.0)],
)
def test_a_kept_head_takes_what_the_full_parse_takes(tail: str, value: float | None) -> None:
    (name,) = fresh_names("total")
    read((name,), f'{name}{{model="a"}} 5\n')
    ((_, _, found),), _ = read((name,), f'{name}{{model="a"}}{tail}\n')
    assert found == value if value is not None else found != found


def test_invalid_utf8_after_a_kept_head_is_an_error() -> None:
    page = vllm_page("m", "0", "5").encode()
    parse_vllm_page(page)
    with pytest.raises(CollectorError) as error:
        parse_vllm_page(page.replace(b"} 5", b"} 5\xff"))
    assert error.value.reason == "parse" and "UTF-8" in str(error.value)


def test_a_line_past_the_limit_is_an_error_after_its_head_was_kept() -> None:
    (name,) = fresh_names("total")
    read((name,), f'{name}{{model="a"}} 5\n')
    padded = f'{name}{{model="a"}}' + " " * MAX_LINE_BYTES + "5\n"
    with pytest.raises(ExpositionError, match="longer than"):
        read((name,), padded)


def test_labels_that_end_before_the_last_brace_are_read_again_each_cycle() -> None:
    """Only the first token after the labels is the value: a later `}` must not make
    the rest of the line part of a kept head."""
    (name,) = fresh_names("total")
    assert read((name,), f'{name}{{a="b"}} 5 }}\n')[0] == [(name, {"a": "b"}, 5.0)]
    assert read((name,), f'{name}{{a="b"}} 5 }} 9\n')[0] == [(name, {"a": "b"}, 5.0)]
    # Multi-byte characters after the labels do not make the rest look like a value.
    assert read((name,), f'{name}{{a="c"}} 5 }}éééé\n')[0] == [(name, {"a": "c"}, 5.0)]
    assert read((name,), f'{name}{{a="c"}} 5 }} 9\n')[0] == [(name, {"a": "c"}, 5.0)]
    assert read((name,), f'{name}{{a="x}}y"}} 5\n')[0] == [(name, {"a": "x}y"}, 5.0)]
    assert read((name,), f'{name}{{a="x}}y"}} 6\n')[0] == [(name, {"a": "x}y"}, 6.0)]


def test_escaped_labels_read_the_same_from_a_kept_head() -> None:
    (name,) = fresh_names("total")
    page = f'{name}{{model="a \\"q\\" \\\\ b"}} 5\n'
    first, again = read((name,), page), read((name,), page.replace(" 5", " 6"))
    assert first[0] == [(name, {"model": 'a "q" \\ b'}, 5.0)]
    assert again[0] == [(name, {"model": 'a "q" \\ b'}, 6.0)]


def test_a_repeated_series_is_a_duplicate_in_every_cycle() -> None:
    (name,) = fresh_names("total")
    page = f'{name}{{a="1",b="2"}} 5\n{name}{{b="2",a="1"}} 6\n'
    for _ in range(3):
        assert read((name,), page) == ([(name, {"a": "1", "b": "2"}, 5.0)], 1)


def test_kept_heads_are_bounded_in_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(promtext, "HEADS_KEPT", 8)
    (name,) = fresh_names("total")
    page = "".join(f'{name}{{model="m{i}"}} {i}\n' for i in range(100))
    for _ in range(2):
        found, _ = read((name,), page)
        assert [value for _, _, value in found] == [float(i) for i in range(100)]
        assert 0 < len(kept((name,))) <= 8


def test_kept_heads_are_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(promtext, "HEADS_KEPT_BYTES", 1000)
    (name,) = fresh_names("total")
    page = "".join(f'{name}{{model="{i:0>60}"}} {i}\n' for i in range(100))
    found, _ = read((name,), page)
    assert len(found) == 100
    plan = promtext._plan((name,))
    assert 0 < plan.kept_bytes <= 1000
    assert sum(map(len, plan.heads)) == plan.kept_bytes
    # A kept head read again whole (a NaN value is) is not counted twice.
    last = page.splitlines()[-1].rsplit(" ", 1)[0]
    for _ in range(3):
        read((name,), f"{last} NaN\n")
    assert sum(map(len, plan.heads)) == plan.kept_bytes


def test_a_long_head_is_parsed_every_time() -> None:
    (name,) = fresh_names("total")
    long_value = "v" * 5000
    for value in (1, 2):
        found, _ = read((name,), f'{name}{{model="{long_value}"}} {value}\n')
        assert found == [(name, {"model": long_value}, float(value))]
    assert not kept((name,))


def test_names_that_begin_other_names_are_told_apart() -> None:
    names = fresh_names("a_total", "a_total_x", "b")
    a, a_x, b = names
    page = (
        f"{a} 1\n{a_x} 2\n{a}_y 3\n{a[:-1]} 4\n{b} 5\n{b}b 6\n{a}\t7\n"
        f'{a}{{k="v"}} 8\n{a_x}{{k="v"}} 9\n'
    )
    for chunk in (len(page), 1, 5):
        parser = SelectiveParser(names)
        data = page.encode()
        found = [s for i in range(0, len(data), chunk) for s in parser.feed(data[i : i + chunk])]
        found += parser.close()
        assert [(n, dict(labels), v) for n, labels, v in found] == [
            (a, {}, 1.0),
            (a_x, {}, 2.0),
            (b, {}, 5.0),
            (a, {"k": "v"}, 8.0),
            (a_x, {"k": "v"}, 9.0),
        ]
