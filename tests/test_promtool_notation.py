"""promtool's series notation, expanded as promtool expands it."""

from __future__ import annotations

import math

import pytest
from promtool_notation import STALE, parse_duration, parse_series, samples
from promtool_notation import expand_values as expand


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", [1.0]),
        ("0+0.5x3", [0.0, 0.5, 1.0, 1.5]),
        ("10-2x2", [10.0, 8.0, 6.0]),
        ("7x2", [7.0, 7.0, 7.0]),
        ("1 _ 3", [1.0, None, 3.0]),
        ("_x3 1x1", [None, None, None, 1.0, 1.0]),
        ("0+1x1 stale", [0.0, 1.0, STALE]),
        ("-1 +Inf -Inf 1e3", [-1.0, math.inf, -math.inf, 1000.0]),
        ("0+1x1 15+3x1", [0.0, 1.0, 15.0, 18.0]),
    ],
)
def test_expand_values(text: str, expected: list) -> None:
    assert expand(text) == expected


def test_nan_expands_to_nan() -> None:
    (value,) = expand("NaN")
    assert math.isnan(value)


@pytest.mark.parametrize("text", ["1x", "x3", "a+1x2", "1+x2", "1,2"])
def test_bad_notation_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="notation"):
        expand(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("1440m", 86400), ("1h30m", 5400), ("15s", 15), ("1d", 86400)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "1h 30m", "5x"])
def test_bad_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_series() -> None:
    assert parse_series('up{job="llm-cost",instance="a:1"}') == (
        "up",
        {"job": "llm-cost", "instance": "a:1"},
    )
    assert parse_series('{a="x\\"y", b=""}') == ("", {"a": 'x"y', "b": ""})
    assert parse_series("metric") == ("metric", {})
    with pytest.raises(ValueError, match="bad label"):
        parse_series("up{job=llm}")


def test_samples_skip_missing_and_keep_times() -> None:
    got = [(s.seconds, s.value) for s in samples("1 _ 3 stale", 60)]
    assert got == [(0, 1.0), (120, 3.0), (180, STALE)]
