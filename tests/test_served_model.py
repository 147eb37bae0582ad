"""The served model's name: configured, else read from a JSON document and kept."""

from __future__ import annotations

import pytest

from llm_cost_exporter.collectors.base import CollectorError, StaticPage
from llm_cost_exporter.collectors.served_model import (
    REFRESH_SECONDS,
    ServedModel,
    openai_model_id,
    tgi_model_id,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_names_are_picked_from_each_engines_document() -> None:
    assert openai_model_id({"data": [{"id": "a"}, {"id": "b"}]}) == "a"
    assert tgi_model_id({"model_id": "org/m"}) == "org/m"
    for document in ({}, {"data": []}, {"data": [3]}, [], None, "x"):
        assert openai_model_id(document) is None and tgi_model_id(document) is None


async def test_the_name_is_read_again_once_it_is_old() -> None:
    page, clock = StaticPage("", {"/info": {"model_id": "first"}}), Clock()
    served = ServedModel(page, "/info", tgi_model_id, clock=clock)
    assert await served.name(10) == "first"
    page.documents["/info"] = {"model_id": "second"}
    clock.now += REFRESH_SECONDS - 1
    assert await served.name(20) == "first"
    clock.now += 1
    assert await served.name(30) == "second"


async def test_a_drop_of_the_counters_reads_the_name_again_and_fails_without_one() -> None:
    page = StaticPage("", {"/info": {"model_id": "first"}})
    served = ServedModel(page, "/info", tgi_model_id, clock=Clock())
    assert await served.name(10) == "first"
    del page.documents["/info"]
    with pytest.raises(CollectorError) as error:
        await served.name(5)
    assert error.value.reason == "model_unknown" and "/info" in str(error.value)


@pytest.mark.parametrize("name", ["", "x" * 1025, 7])
async def test_what_is_not_a_name_is_refused(name: object) -> None:
    served = ServedModel(StaticPage("", {"/info": {"model_id": name}}), "/info", tgi_model_id)
    with pytest.raises(CollectorError) as error:
        await served.name(0)
    assert error.value.reason == "model_unknown"


async def test_a_configured_name_is_never_read() -> None:
    served = ServedModel(StaticPage(""), "/info", tgi_model_id, "mine")
    assert await served.name(0) == "mine" and await served.name(-1) == "mine"
