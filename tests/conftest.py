"""Shared test helpers: fixture pages and a minimal valid configuration."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures" / "vllm"
sys.path.insert(0, str(TESTS))


def fixture_page(name: str) -> str:
    return (FIXTURES / name).read_text()


def minimal_config_dict(**overrides: Any) -> dict[str, Any]:
    """A valid configuration: one A100 at $3.20/h against a $0.80/$4.00 API."""
    data: dict[str, Any] = {
        "cost": {
            "gpus": [{"model": "A100-80GB", "count": 1}],
            "gpu_prices_per_hour": {"A100-80GB": 3.20},
            "overhead_ratio": 0.0,
        },
        "api_prices": {"default": {"input": 0.80, "cached_input": 0.08, "output": 4.00}},
    }
    data.update(overrides)
    return data


def render_page(state: Any) -> str:
    """The `/metrics` page the Prometheus output renders for a node state."""
    from llm_cost_exporter.outputs.node_families import node_families
    from llm_cost_exporter.outputs.prometheus import PrometheusPage

    page = PrometheusPage()
    page.publish(node_families(state))
    return page.body.decode()


@pytest.fixture
def config_dict() -> dict[str, Any]:
    return minimal_config_dict()


@pytest.fixture(scope="session")
def lib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake libnvidia-ml.so.1, compiled once per session: put it on LD_LIBRARY_PATH."""
    from realparts.fake_nvml import build_fake_nvml

    return build_fake_nvml(tmp_path_factory.mktemp("fake_nvml"))


@pytest.fixture(scope="session")
def old_driver_lib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake as an R470 driver: without the memory v2, GPM, clock-event and
    versioned-temperature entry points (for child processes only)."""
    from realparts.fake_nvml import build_fake_nvml

    return build_fake_nvml(tmp_path_factory.mktemp("fake_nvml_r470"), driver_branch=470)


@pytest.fixture(scope="session")
def fake_lib(lib_dir: Path) -> ctypes.CDLL:
    """The fake loaded into this process, where pynvml finds it by soname."""
    from realparts.fake_nvml import preload

    return preload(lib_dir)


# The hourly recording rules the monthly review reads; backfilling the month with their
# results takes promtool ~20 s, so one backfilled month serves every test.
REVIEW_RULES = (
    "instance_component:llmcost_cost:increase1h",
    "instance_model:llmcost_cost:increase1h",
    "instance_model_kind:llmcost_tokens:increase1h",
    "instance_model:llmcost_api_equivalent_cost:increase1h",
    "instance:llmcost_capacity_tokens_per_second:avg1h",
    "instance_model:llmcost_capacity_tokens_per_second:avg1h",
    "instance:llmcost_build_info:count_over_time1h",
    "instance_model:llmcost_cost:resets1h",
    "instance:llmcost_pricing_info:last_over_time1h",
)


def review_rule_file(directory: Path) -> Path:
    """The ``llmcost-hourly`` group as generated, cut to the rules the review reads."""
    import json

    from llm_cost_exporter.generators.rules import params_with, recording_rules

    hourly = next(
        g for g in recording_rules(params_with({}))["groups"] if g["name"] == "llmcost-hourly"
    )
    hourly = {**hourly, "rules": [r for r in hourly["rules"] if r["record"] in REVIEW_RULES]}
    assert len(hourly["rules"]) == len(REVIEW_RULES)
    rule_file = directory / "hourly-rules.yml"
    rule_file.write_text(json.dumps({"groups": [hourly]}))  # JSON is valid YAML
    return rule_file


@pytest.fixture(scope="session")
def synthetic_october() -> Any:
    """The synthetic October with 5-minute samples, generated once for every fixture and
    test that reads it: ``(OpenMetrics text, truth)``."""
    from realparts.synthetic_month import Scenario, generate

    return generate(Scenario(step_seconds=300))


@pytest.fixture(scope="session")
def backfilled_month(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Any:
    """The synthetic October (5-minute samples) and the review's hourly rules, backfilled
    into a real Prometheus: yields ``(server, truth)``."""
    import shutil

    from realparts.backfill import HistoricalPrometheusServer, backfill

    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        pytest.skip("promtool and prometheus are needed")
    text, truth = request.getfixturevalue("synthetic_october")
    workdir = tmp_path_factory.mktemp("month")
    rule_file = review_rule_file(workdir)
    backfill(text, [rule_file], truth.start, truth.end, workdir / "prometheus")
    with HistoricalPrometheusServer(workdir / "prometheus") as server:
        yield server, truth


@pytest.fixture(scope="session")
def victoria_month(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    """The same October imported into a real VictoriaMetrics, the same hourly rules
    replayed over it by vmalert: yields ``(server, truth)``."""
    import time
    from datetime import datetime, timezone

    from realparts.victoria_metrics import (
        VictoriaMetricsServer,
        find_victoria_metrics,
        find_vmalert,
        openmetrics_to_import,
        replay_rules,
    )

    try:
        find_victoria_metrics(), find_vmalert()
    except RuntimeError as error:
        pytest.skip(str(error))
    began = time.monotonic()
    text, truth = request.getfixturevalue("synthetic_october")
    workdir = tmp_path_factory.mktemp("victoria-month")
    rule_file = review_rule_file(workdir)
    with VictoriaMetricsServer(workdir=workdir / "victoria-metrics") as server:
        server.import_prometheus(openmetrics_to_import(text))
        server.flush()
        replay_rules(
            [rule_file],
            server,
            datetime.fromtimestamp(truth.start, timezone.utc),
            datetime.fromtimestamp(truth.end, timezone.utc),
            workdir=workdir,
        )
        print(f"victoria_month ready in {time.monotonic() - began:.1f}s")
        yield server, truth


MONTH_BACKENDS = (
    pytest.param("backfilled_month", id="prometheus"),
    pytest.param("victoria_month", id="victoria-metrics"),
)


@pytest.fixture(scope="module", params=MONTH_BACKENDS)
def backend(request: pytest.FixtureRequest) -> Any:
    """The synthetic October on each store the review reads: ``(server, truth)``."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """Which month fixture ``backend`` is in this test (``backfilled_month`` or
    ``victoria_month``), for the few facts that differ between the stores."""
    return request.node.callspec.params["backend"]


# --- containers (the image tests and the systemd unit's) ---------------------------

EXPORTER_IMAGE = "localhost/llm-cost-exporter:test"


@pytest.fixture(scope="session")
def podman() -> Any:
    """Rootful podman on private configuration files (tests/realparts/containers.py)."""
    import os

    from realparts.containers import PACKAGES, Podman

    if os.geteuid() != 0:
        pytest.skip(
            "builds a Debian base with debootstrap and runs rootful podman: needs root "
            "(this user has no rootless container setup the tests could rely on)"
        )
    try:
        return Podman()
    except RuntimeError as error:
        pytest.fail(f"{error} (the container tests need: {PACKAGES})")


@pytest.fixture(scope="session")
def base_image(podman: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The local Debian base: debootstrapped on the first run, then cached."""
    from realparts.containers import ensure_base_image

    return ensure_base_image(podman, tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def exporter_image(podman: Any, base_image: str) -> str:
    """The image, built from the repository's Dockerfile on the local base (layers
    reused across runs)."""
    from realparts.containers import build_image

    build = build_image(
        podman,
        TESTS.parent,
        EXPORTER_IMAGE,
        {"BASE_IMAGE": base_image},
        ignorefile=TESTS / "realparts" / "image-build.ignore",
    )
    print(f"image built in {build.seconds:.1f}s")
    return build.tag
