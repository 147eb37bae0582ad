"""EngineReading's hand-written constructor stays the dataclass it stands in for."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from llm_cost_exporter.collectors.readings import EngineReading


def test_constructor_takes_the_fields_in_order_with_their_defaults() -> None:
    parameters = list(inspect.signature(EngineReading.__init__).parameters.values())[1:]
    fields = dataclasses.fields(EngineReading)
    assert [p.name for p in parameters] == [f.name for f in fields]
    assert [p.default for p in parameters] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields
    ]


def test_reading_is_frozen_equal_by_value_and_replaceable() -> None:
    reading = EngineReading("m", "0", 10.0, 2.0, 5.0, 1.0, 0.0, 0.5, 100.0, 50.0, 7.0)
    assert reading == EngineReading(
        model="m",
        engine="0",
        prompt_tokens=10.0,
        cached_prompt_tokens=2.0,
        generation_tokens=5.0,
        running=1.0,
        waiting=0.0,
        kv_usage_ratio=0.5,
        kv_capacity_tokens=100.0,
        kv_tokens=50.0,
        started_at=7.0,
    )
    assert (reading.requests, reading.preemptions, reading.transferred_prompt_tokens) == (
        None,
        None,
        None,
    )
    assert hash(reading) == hash(dataclasses.replace(reading))
    renamed = dataclasses.replace(reading, model="other", requests=3.0)
    assert (renamed.model, renamed.requests, renamed.prompt_tokens) == ("other", 3.0, 10.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reading.model = "changed"  # type: ignore[misc]
