"""Reading a real daemon's /metrics samples in end-to-end tests, and waiting for them."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .timeouts import scaled

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""Every sample of a page, keyed by (name, sorted labels): `ExporterProcess.samples()`."""


def page_samples(text: str) -> Samples:
    """Every sample of a /metrics page."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int) -> Samples:
    """The samples of http://127.0.0.1:PORT/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=scaled(10)) as page:
        return page_samples(page.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The one sample of `name` whose labels include `labels`, or None."""
    found = [
        v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()
    ]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
    return found[0] if found else None


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    return sum(
        v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()
    )


def eventually(
    check: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.1,
) -> Any:
    """Poll `check` until it returns a truthy value and return it; fail after `timeout`
    (scaled) seconds, naming `what`."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {scaled(timeout):g}s")
        time.sleep(interval)


def assert_pod_costs_add_up(samples: Samples) -> None:
    """Within one scrape, llmcost_pod_cost_total sums by model to llmcost_model_cost_total
    and in all to llmcost_cost_total (float tolerance: the sums are added in other orders)."""
    models = {
        dict(labels)["model"]
        for name, labels in samples
        if name in ("llmcost_pod_cost_total", "llmcost_model_cost_total")
    }
    for model in sorted(models):
        by_pods = total(samples, "llmcost_pod_cost_total", model=model)
        assert by_pods == pytest.approx(
            total(samples, "llmcost_model_cost_total", model=model), rel=1e-9, abs=1e-12
        ), model
    assert total(samples, "llmcost_pod_cost_total") == pytest.approx(
        total(samples, "llmcost_cost_total"), rel=1e-9, abs=1e-12
    )
