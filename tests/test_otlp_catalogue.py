"""The metric catalogue as OTLP: units, kinds, and names that come back as on /metrics.

The golden nodes (tests/golden_pages.py) carry nearly every family we export;
each is converted as the OTLP output converts it and named back the way
Prometheus-backed receivers do (tests/otlp_prometheus_names.py), under both
translation strategies that add suffixes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pytest
from golden_pages import SCENARIOS
from otlp_prometheus_names import STRATEGIES, escaped, utf8
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from llm_cost_exporter.outputs.families import Counter, Gauge
from llm_cost_exporter.outputs.otlp.conversion import Stamps, to_export

UCUM = re.compile(r"^(|1|s|By|W|J|Cel|Hz|\{[A-Za-z0-9_./]+\})$")
"""The units we use: plain UCUM base units, or one annotation."""

STAMPS = Stamps(time=1_700_000_000_000_000_000, counting_since=1_600_000_000_000_000_000,
                process_start=1_690_000_000_000_000_000)  # fmt: skip


class LastFamilies:
    """An output keeping the last cycle's families."""

    def __init__(self) -> None:
        self.families: Sequence[Metric] = ()

    def publish(self, families: Sequence[Metric]) -> None:
        self.families = families

    def own_families(self) -> Sequence[Metric]:
        return ()

    def close(self) -> None:
        pass


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def node(request: pytest.FixtureRequest) -> tuple[bytes, Sequence[Metric]]:
    last = LastFamilies()
    page = SCENARIOS[request.param](outputs=[last])
    return page, last.families


def _page_families(page: bytes) -> dict[str, str]:
    """Prometheus sample name -> type, from a /metrics page."""
    return {
        sample.name: family.type
        for family in text_string_to_metric_families(page.decode())
        for sample in family.samples
    }


@pytest.mark.parametrize(
    ("name", "unit", "kind", "under_escaping", "under_utf8"),
    [
        # The specification's own cases.
        ("requests", "1/s", "gauge", "requests_per_second", "requests_per_second"),
        ("throughput", "By/s", "gauge",
         "throughput_bytes_per_second", "throughput_bytes_per_second"),
        ("http.server.duration", "s", "gauge",
         "http_server_duration_seconds", "http.server.duration_seconds"),
        ("requests", "1/s", "counter", "requests_per_second_total", "requests_per_second_total"),
        ("custom_metric", "By/{custom}", "gauge", "custom_metric_bytes", "custom_metric_bytes"),
        ("hit", "1", "gauge", "hit_ratio", "hit_ratio"),
        ("hits", "1", "counter", "hits_total", "hits_total"),
        # Why a compound unit of ours is one annotation: a per-unit is appended again to a
        # name that already ends in it, when the name is split into words.
        ("llmcost_throughput_tokens_per_second", "{token}/s", "gauge",
         "llmcost_throughput_tokens_per_second_per_second", "llmcost_throughput_tokens_per_second"),
        ("llmcost_throughput_tokens_per_second", "{token/s}", "gauge",
         "llmcost_throughput_tokens_per_second", "llmcost_throughput_tokens_per_second"),
        ("llmcost_hourly_cost", "{USD}/h", "gauge",
         "llmcost_hourly_cost_per_hour", "llmcost_hourly_cost_per_hour"),
        ("llmcost_hourly_cost", "{USD/h}", "gauge", "llmcost_hourly_cost", "llmcost_hourly_cost"),
        ("llmcost_cost", "{USD}", "counter", "llmcost_cost_total", "llmcost_cost_total"),
        ("llmcost_gpu_energy_joules", "J", "counter",
         "llmcost_gpu_energy_joules_total", "llmcost_gpu_energy_joules_total"),
        # Unit "1" on a name without `_ratio` would grow one.
        ("llmcost_projected_token_share", "1", "gauge",
         "llmcost_projected_token_share_ratio", "llmcost_projected_token_share_ratio"),
    ],
)  # fmt: skip
def test_the_fake_translator_names_as_the_specification_does(
    name: str, unit: str, kind: str, under_escaping: str, under_utf8: str
) -> None:
    assert escaped(name, unit, kind) == under_escaping
    assert utf8(name, unit, kind) == under_utf8


def test_every_family_declares_a_ucum_unit_and_only_ratios_are_in_1(node) -> None:
    _, families = node
    assert families
    for family in families:
        assert isinstance(family, (Gauge, Counter)), f"{family.name} has no declared unit"
        assert UCUM.match(family.ucum), f"{family.name}: {family.ucum!r} is not one of our units"
        assert (family.ucum == "1") == family.name.endswith("_ratio"), family.name


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_series_comes_back_with_the_name_and_labels_of_metrics(node, strategy) -> None:
    page, families = node
    export = to_export(families, {"service.name": "llm-cost-exporter"}, STAMPS)
    metrics = export.resource_metrics[0].scope_metrics[0].metrics
    on_page = _page_families(page)
    translated = {}
    for metric in metrics:
        kind = "counter" if hasattr(metric.data, "is_monotonic") else "gauge"
        name = STRATEGIES[strategy](metric.name, metric.unit, kind)
        translated[name] = kind
    ours = {name: kind for name, kind in on_page.items() if not name.startswith("process_")}
    assert {n: k for n, k in translated.items() if not n.startswith("process_")} == ours

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page.decode())
        for sample in family.samples
    }
    arrived = {
        (
            STRATEGIES[strategy](
                m.name, m.unit, "counter" if hasattr(m.data, "is_monotonic") else "gauge"
            ),
            tuple(sorted(point.attributes.items())),
        ): point.value
        for m in metrics
        for point in m.data.data_points
    }
    assert {k: v for k, v in arrived.items() if not k[0].startswith("process_")} == {
        k: v for k, v in samples.items() if not k[0].startswith("process_")
    }


def test_counters_are_cumulative_monotonic_sums_started_when_their_count_began(node) -> None:
    _, families = node
    export = to_export(families, {}, STAMPS)
    metrics = {m.name: m for m in export.resource_metrics[0].scope_metrics[0].metrics}
    by_name = {f.name: f for f in families}
    for name, metric in metrics.items():
        family = by_name[name]
        points = metric.data.data_points
        assert all(p.time_unix_nano == STAMPS.time for p in points)
        if family.type == "counter":
            assert metric.data.is_monotonic
            assert metric.data.aggregation_temporality.name == "CUMULATIVE"
            start = STAMPS.process_start if family.per_process else STAMPS.counting_since
            assert {p.start_time_unix_nano for p in points} == {start}
        else:
            assert not hasattr(metric.data, "is_monotonic")
        assert metric.unit == family.ucum
        assert metric.description == family.documentation


def test_families_without_series_are_left_out_and_infinities_kept() -> None:
    empty = Gauge("llmcost_empty", "No series.", (), "")
    inf = Gauge("llmcost_cost_ratio", "Ratio.", ("window",), "1")
    inf.add_metric(["5m"], math.inf)
    tokens = Counter("llmcost_tokens", "Tokens.", ("model", "kind"), "{token}")
    tokens.add_metric(["m", "cached_prompt"], 12)
    export = to_export([empty, inf, tokens], {"service.name": "x"}, STAMPS)
    metrics = export.resource_metrics[0].scope_metrics[0].metrics
    assert [m.name for m in metrics] == ["llmcost_cost_ratio", "llmcost_tokens"]
    assert metrics[0].data.data_points[0].value == math.inf
    assert metrics[1].data.data_points[0].value == 12.0
    assert isinstance(metrics[1].data.data_points[0].value, float)
    assert export.resource_metrics[0].resource.attributes == {"service.name": "x"}


def test_gen_ai_attributes_are_added_beside_ours_only_when_asked() -> None:
    tokens = Counter("llmcost_tokens", "Tokens.", ("model", "kind"), "{token}")
    for kind, value in (("prompt", 1), ("cached_prompt", 2), ("generation", 3)):
        tokens.add_metric(["llama", kind], value)
    cost = Counter("llmcost_cost", "Spend.", ("component",), "{USD}")
    cost.add_metric(["gpu"], 1.5)
    plain = to_export([tokens, cost], {}, STAMPS).resource_metrics[0].scope_metrics[0].metrics
    assert [dict(p.attributes) for p in plain[0].data.data_points][0] == {
        "model": "llama",
        "kind": "prompt",
    }
    both = to_export([tokens, cost], {}, STAMPS, gen_ai=True)
    metrics = both.resource_metrics[0].scope_metrics[0].metrics
    assert [dict(p.attributes) for p in metrics[0].data.data_points] == [
        {"model": "llama", "kind": k, "gen_ai.request.model": "llama", "gen_ai.token.type": t}
        for k, t in (("prompt", "input"), ("cached_prompt", "input"), ("generation", "output"))
    ]
    assert dict(metrics[1].data.data_points[0].attributes) == {"component": "gpu"}
