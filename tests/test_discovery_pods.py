"""Which pod is an engine target, from its real JSON shape: a table of pods and outcomes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from realparts.fake_kubernetes import ANNOTATION, pod_object

from llm_cost_exporter.config.settings import DiscoveryConfig
from llm_cost_exporter.discovery.pods import EngineTarget, Skipped, engine_target

SCRAPE = {f"{ANNOTATION}/scrape": "true"}
BY_ANNOTATION = DiscoveryConfig(enabled=True, node_name="gpu-node-1")
BY_LABEL = DiscoveryConfig(enabled=True, node_name="gpu-node-1", label_selector="app=vllm")


def pod(annotations: dict[str, str] | None = None, **options: Any) -> dict[str, Any]:
    return pod_object("vllm-0", annotations=annotations, **options)


def annotated(**values: str) -> dict[str, str]:
    return {**SCRAPE, **{f"{ANNOTATION}/{key}": value for key, value in values.items()}}


def terminating(p: dict[str, Any]) -> dict[str, Any]:
    p["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return p


TARGETS = [
    # (pod, configuration, url, engine type)
    (pod(SCRAPE), BY_ANNOTATION, "http://127.0.0.1:8000/metrics", "vllm"),
    (pod(annotated(port="9100", path="/engine/1/metrics")), BY_ANNOTATION,
     "http://127.0.0.1:9100/engine/1/metrics", "vllm"),
    (pod(annotated(scheme="HTTPS", engine="VLLM")), BY_ANNOTATION,
     "https://127.0.0.1:8000/metrics", "vllm"),
    (pod(ip="fd00::7"), BY_LABEL, "http://[fd00::7]:8000/metrics", "vllm"),
    (pod(annotated(port=" 8080 ")), BY_LABEL, "http://127.0.0.1:8080/metrics", "vllm"),
]  # fmt: skip


@pytest.mark.parametrize(("p", "config", "url", "engine_type"), TARGETS)
def test_a_running_candidate_is_a_target_where_its_annotations_say(
    p: Any, config: DiscoveryConfig, url: str, engine_type: str
) -> None:
    target = engine_target(p, config)
    assert isinstance(target, EngineTarget)
    assert (target.url, target.engine_type) == (url, engine_type)
    assert (target.namespace, target.pod) == ("inference", "vllm-0")
    assert target.uid == p["metadata"]["uid"]


NOT_TARGETS = [
    (pod(), BY_ANNOTATION),  # not annotated, no label selector
    (pod({f"{ANNOTATION}/scrape": "false"}), BY_LABEL),  # "false" excludes whatever the labels
    (pod(SCRAPE, phase="Pending"), BY_ANNOTATION),
    (pod(SCRAPE, phase="Succeeded"), BY_ANNOTATION),
    (pod(SCRAPE, ip=None), BY_ANNOTATION),
    (terminating(pod(SCRAPE)), BY_ANNOTATION),
]


@pytest.mark.parametrize(("p", "config"), NOT_TARGETS)
def test_pods_not_chosen_or_not_running_are_not_targets(p: Any, config: DiscoveryConfig) -> None:
    assert engine_target(p, config) is None


SKIPPED = [
    (annotated(port="http"), "bad_port"),
    (annotated(port="0"), "bad_port"),
    (annotated(port="65536"), "bad_port"),
    (annotated(port="-1"), "bad_port"),
    (annotated(path="metrics"), "bad_path"),
    (annotated(path="/a b"), "bad_path"),
    (annotated(scheme="ftp"), "bad_scheme"),
    (annotated(engine="tensorrt-llm"), "unknown_engine"),
    ({f"{ANNOTATION}/scrape": "yes"}, "bad_scrape"),
]


@pytest.mark.parametrize(("annotations", "reason"), SKIPPED)
def test_a_bad_annotation_skips_the_pod_with_its_reason(
    annotations: dict[str, str], reason: str
) -> None:
    outcome = engine_target(pod(annotations), BY_ANNOTATION)
    assert isinstance(outcome, Skipped)
    assert outcome.reason == reason
    assert "inference/vllm-0" in outcome.message and "\n" not in outcome.message


def test_a_pending_pod_with_a_bad_annotation_is_reported_before_it_runs() -> None:
    outcome = engine_target(pod(annotated(port="x"), phase="Pending"), BY_ANNOTATION)
    assert isinstance(outcome, Skipped) and outcome.reason == "bad_port"


def test_the_engine_start_is_its_own_containers() -> None:
    data = pod_object("vllm-0", annotations=SCRAPE, started="2025-03-01T10:00:00Z")
    sidecar = {**data["status"]["containerStatuses"][0], "name": "proxy"}
    sidecar["state"] = {"running": {"startedAt": "2025-03-01T09:00:00Z"}}
    data["status"]["containerStatuses"].append(sidecar)
    data["spec"]["containers"].append({"name": "proxy", "image": "envoy"})
    target = engine_target(data, BY_ANNOTATION)
    assert isinstance(target, EngineTarget)
    assert target.started_at == datetime.fromisoformat("2025-03-01T10:00:00+00:00").timestamp()
