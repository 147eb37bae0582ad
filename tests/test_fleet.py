"""The fleet simulator: real exporter pages for 20 nodes, and a real Prometheus over them.

The pages must parse, every counter must only grow, the cheap arithmetic that
advances a page must be what the exporter itself computes when run on, and a
real Prometheus scraping the fleet with the generated recording rules must add
the fleet up to the simulator's truth, which comes from the nodes' specification
(GPUs, prices, engines' capacity and traffic), not from the pages.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from realparts.fleet import Fleet, FleetServer
from realparts.fleet_nodes import SLOT_SECONDS, fleet_specs
from realparts.fleet_render import CYCLE_SECONDS
from realparts.prometheus_server import PrometheusServer
from realparts.samples import eventually
from realparts.timeouts import scaled

from llm_cost_exporter.generators.rules import params_with, recording_rules

NODES = 20
WINDOW = "10s"
"""The rules' rate window, short enough for a test: the rules are the committed ones
rendered with this window (the generator's parameter)."""


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[Fleet, FleetServer]]:
    fleet = Fleet(fleet_specs(NODES), align=1.0)
    with FleetServer(fleet) as server:
        yield fleet, server


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=scaled(10)) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def _counters(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        if family.type in ("counter", "histogram", "summary")
        for s in family.samples
    }


def test_fleet_has_variety(fleet: tuple[Fleet, FleetServer]) -> None:
    specs = fleet[0].specs
    assert {s.gpu.key for s in specs} == {"H100", "A100", "L40S", "B200"}
    assert {s.shape for s in specs} == {"diurnal", "flat", "bursty"}
    assert {e.engine_type for s in specs for e in s.engines} >= {"vllm", "sglang"}
    assert any(s.down for s in specs) and any(e.down for s in specs for e in s.engines)
    assert {len(s.engines) for s in specs} >= {1, 2, 4}


def test_pages_parse_and_counters_only_grow(fleet: tuple[Fleet, FleetServer]) -> None:
    fleet_, server = fleet
    for spec in fleet_.specs:
        url = f"{server.url}/nodes/{spec.index}/metrics"
        first_status, first = _get(url)
        if spec.down:
            assert first_status == 503
            continue
        assert first_status == 200
        before = _counters(first)
        assert any(name == "llmcost_cost_total" for name, _ in before), spec.name
        # Later instants straight from the fleet, across a traffic slot boundary.
        later = [fleet_.page(spec.index, fleet_.t0 + dt) for dt in (60.0, SLOT_SECONDS + 1.0)]
        for body in later:
            after = _counters(body.decode())
            assert after.keys() == before.keys(), spec.name
            fell = {k: (before[k], v) for k, v in after.items() if v < before[k]}
            assert not fell, f"{spec.name}: counters fell: {fell}"
            before = after


def test_advanced_page_is_what_the_exporter_computes(fleet: tuple[Fleet, FleetServer]) -> None:
    """Run two nodes' exporters on for a minute, a cycle every 5 s, and compare; one of
    them has an engine down (its error counter grows a cycle at a time)."""
    fleet_, _ = fleet
    answering = [p for p in fleet_.pages if not p.spec.down]
    checked = [answering[0], next(p for p in answering if any(e.down for e in p.spec.engines))]
    for page in checked:
        worst = page.check(fleet_.t0 + 12 * CYCLE_SECONDS)
        assert not page.mismatches, page.mismatches[:5]
        assert worst <= 1e-9


def _rules_file(directory: Path) -> Path:
    params = params_with({"rate_window": WINDOW})
    # Only the rules of the short window (the 6h and 24h ones need hours of data), each
    # group at the test's evaluation interval.
    groups = [
        {"name": g["name"], "rules": [r for r in g["rules"] if WINDOW in r["record"]]}
        for g in recording_rules(params)["groups"]
        if g["name"] in ("llmcost-rates", "llmcost-aggregates")
    ]
    path = directory / "rules.yml"
    path.write_text(json.dumps({"groups": groups}))
    return path


def test_prometheus_adds_the_fleet_up_to_the_truth(
    fleet: tuple[Fleet, FleetServer], tmp_path: Path
) -> None:
    fleet_, server = fleet
    job = fleet_.scrape_config(server.url, interval="1s")
    with PrometheusServer(
        [],
        scrape_interval="1s",
        extra_rule_files=[_rules_file(tmp_path)],
        extra_scrape_configs=[job],
    ) as prometheus:
        down = sum(s.down for s in fleet_.specs)
        prometheus.wait_for_scalar('count(up{job="llm-cost"} == 0)', lambda v: v == down)
        engines_down = sum(e.down for s in fleet_.up() for e in s.engines)
        prometheus.wait_for_scalar(
            'count(llmcost_collector_up{collector!="nvml"} == 0)', lambda v: v == engines_down
        )

        def matches(expr: str, truth: callable, tolerance: float) -> float | None:
            """The rule's value once its window lies inside one traffic slot and it
            equals the truth there; None to poll again."""
            result = prometheus.query(expr)
            if not result:
                return None
            at, value = float(result[0]["value"][0]), float(result[0]["value"][1])
            window = float(WINDOW.removesuffix("s"))
            if (at - window) // SLOT_SECONDS != at // SLOT_SECONDS:
                return None
            expected = truth(at)
            return value if abs(value - expected) <= tolerance else None

        hourly = fleet_.hourly_cost()
        cost = eventually(
            lambda: matches(f"cluster:llmcost_cost:rate{WINDOW} * 3600", lambda _: hourly, 0.005),
            timeout=60,
            what=f"fleet cost {hourly:.2f}/h to the cent",
        )
        assert round(cost, 2) == round(hourly, 2)

        def api(at: float) -> float:
            return math.fsum(s.api_equivalent_per_second(at) * 3600 for s in fleet_.up())

        eventually(
            lambda: matches(f"cluster:llmcost_api_equivalent_cost:rate{WINDOW} * 3600", api, 0.005),
            timeout=60,
            what="fleet API-equivalent cost per hour to the cent",
        )

        def tokens(at: float) -> float:
            return math.fsum(v for s in fleet_.up() for v in s.tokens_per_second(at).values())

        # Token counters are whole numbers: a rate is off by at most one token per
        # series over the window.
        series = sum(len(s.tokens_per_second(fleet_.t0)) for s in fleet_.up())
        eventually(
            lambda: matches(f"cluster:llmcost_tokens:rate{WINDOW}", tokens, series / 8.0),
            timeout=60,
            what="fleet tokens per second",
        )
