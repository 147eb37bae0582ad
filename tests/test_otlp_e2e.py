"""End to end over OTLP: the simulator's engines -> the real daemon -> the fake OTLP receiver.

The daemon runs as `python -m llm_cost_exporter --config FILE` and pushes to
the test receiver (tests/realparts/otlp_receiver.py), which decodes the
requests with the official protos. What arrives must be what `/metrics` shows,
series for series and bit for bit, over OTLP/HTTP and OTLP/gRPC, with TLS,
client certificates and rotated header files; an outage or a slow receiver
must cost neither collection nor a single counted increase.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests.certs
from conftest import minimal_config_dict
from prometheus_client.parser import text_string_to_metric_families
from realparts import otlp_points
from realparts.certificates import Issued
from realparts.exporter_process import ExporterProcess
from realparts.otlp_points import Point, SeriesKey, series_key
from realparts.otlp_receiver import OtlpReceiver, Received, receiver_pki
from realparts.samples import Samples, eventually, page_samples, value
from realparts.simulator_process import SimulatorProcess
from realparts.timeouts import scaled
from test_otlp_catalogue import UCUM

from llm_cost_exporter import __version__

pytestmark = pytest.mark.realparts

BUSY, IDLE = 0, 1
"""Simulator engines: 0 serves model-a steadily; 1 serves model-b and is idle, so
model-b's cost per token and cost ratio are +Inf."""
NODE = {"NODE_NAME": "gpu-node-7", "POD_NAME": "llm-cost-exporter-x2k9p", "POD_NAMESPACE": "ops"}
"""The Downward API variables the Helm chart sets."""
RESOURCE = {
    "service.name": "llm-cost-exporter",
    "service.version": __version__,
    "host.name": socket.gethostname(),
    "service.instance.id": "gpu-node-7",
    "k8s.node.name": "gpu-node-7",
    "k8s.pod.name": "llm-cost-exporter-x2k9p",
    "k8s.namespace.name": "ops",
}
CUMULATIVE = "AGGREGATION_TEMPORALITY_CUMULATIVE"
UNITS = {
    "llmcost_cost": "{USD}",
    "llmcost_hourly_cost": "{USD/h}",
    "llmcost_tokens": "{token}",
    "llmcost_model_cost_ratio": "1",
    "llmcost_throughput_tokens_per_second": "{token/s}",
    "llmcost_collector_duration_seconds": "s",
    "llmcost_otlp_exports": "{export}",
    "llmcost_otlp_queued_exports": "{export}",
    "llmcost_build_info": "",
    "process_cpu_seconds": "s",
    "process_resident_memory_bytes": "By",
    "process_open_fds": "{file}",
}
"""Declared units of a few families (exporter/outputs/families.py, process_families.py)."""
PER_PROCESS = {"process_cpu_seconds", "llmcost_otlp_exports"}
"""The counters that restart with the process; every other one is kept in the state file."""
FAILING, RECOVERED = ("OTLP export to", "failing:"), ("OTLP export to", "recovered after")
"""The two log lines of an outage."""


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    workdir = tmp_path_factory.mktemp("simulator")
    with SimulatorProcess(
        workdir,
        "--engines", "2",
        "--model", "model-a,model-b",
        "--profile", "steady",
        "--level", "0.5",
    ) as simulator:  # fmt: skip
        simulator.control(profile="idle", engines=[IDLE])
        yield simulator


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued]:
    return receiver_pki(tmp_path_factory.mktemp("pki"), "gpu-node-7-exporter")


def node_config(
    simulator: SimulatorProcess, workdir: Path, otlp: dict[str, Any], **overrides: Any
) -> dict[str, Any]:
    """Two GPUs, one per engine; collection every second, OTLP every second."""
    config = minimal_config_dict(
        engines=[
            {"url": simulator.engine_url(BUSY), "gpus": [0]},
            {"url": simulator.engine_url(IDLE), "gpus": [1]},
        ],
        collection={"interval": "1s", "timeout": "500ms"},
        nvml={"enabled": False},
        state_file=str(workdir / "state.json"),
        otlp={"interval": "1s", "timeout": "1s", **otlp},
        metrics={"gpu_diagnostics": True, "model_gauges": True},
    )
    config["cost"]["gpus"][0]["count"] = 2
    config.update(overrides)
    return config


def grpc_endpoint(receiver: OtlpReceiver) -> str:
    """Plain text needs the http:// scheme; without one, gRPC is TLS."""
    return receiver.endpoint if receiver.tls else f"http://{receiver.endpoint}"


def endpoint(receiver: OtlpReceiver) -> str:
    return grpc_endpoint(receiver) if receiver.protocol == "grpc" else receiver.endpoint


def otlp_protocol(receiver: OtlpReceiver) -> str:
    return "grpc" if receiver.protocol == "grpc" else "http/protobuf"


def sample_name(point: Point) -> str:
    """The /metrics name of a point's series: a counter's sum is named without `_total`."""
    return point.name + "_total" if point.kind == "sum" else point.name


def exported_samples(received: Received) -> Samples:
    """An export's points keyed as `page_samples` keys /metrics."""
    assert received.request is not None
    points = receiver_points(received)
    samples = {(sample_name(p), tuple(sorted(p.attributes.items()))): p.value for p in points}
    assert len(samples) == len(points), "a series came twice in one export"
    return samples


def receiver_points(received: Received) -> list[Point]:
    assert received.request is not None
    return list(otlp_points.points(received.request))


def accepted(receiver: OtlpReceiver, since: int = 0) -> list[Received]:
    return [r for r in receiver.requests[since:] if r.accepted and r.request is not None]


def export_of_the_page(exporter: ExporterProcess, receiver: OtlpReceiver) -> tuple[str, Received]:
    """A page of /metrics and the export that carries exactly its samples.

    The page changes every cycle and the sender pushes the newest cycle every
    interval, so the pages read lately are each looked for among the exports.
    """
    deadline = time.monotonic() + scaled(30)
    pages: list[tuple[str, Samples]] = []
    while True:
        text = exporter.get("/metrics")[2].decode()
        pages = [*pages[-4:], (text, page_samples(text))]
        for received in reversed(accepted(receiver)):
            exported = exported_samples(received)
            for page, samples in pages:
                if exported == samples:
                    return page, received
        if time.monotonic() > deadline:
            last = accepted(receiver)
            assert last, "no export arrived"
            assert exported_samples(last[-1]) == pages[-1][1]  # shows the difference
        time.sleep(0.1)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_every_series_of_the_page_arrives_with_its_value_unit_and_kind(
    simulator: SimulatorProcess, tmp_path: Path, protocol: str
) -> None:
    with OtlpReceiver(protocol) as receiver:  # type: ignore[arg-type]
        config = node_config(
            simulator,
            tmp_path,
            {"endpoint": endpoint(receiver), "protocol": otlp_protocol(receiver)},
            # Two seconds between cycles: each page stays put while its export arrives.
            collection={"interval": "2s", "timeout": "500ms"},
        )
        with ExporterProcess(config, tmp_path, env=NODE) as exporter:
            # From the second cycle on the windows' figures are there, +Inf among them.
            eventually(
                lambda: (
                    value(
                        exporter.samples(), "llmcost_model_cost_ratio", model="model-b", window="5m"
                    )
                    == math.inf
                ),
                what="model-b's cost ratio of +Inf on /metrics",
            )
            text, received = export_of_the_page(exporter, receiver)
            saved = json.loads((tmp_path / "state.json").read_text())
            assert b'href="/metrics"' in exporter.get("/")[2]

    families = {family.name: family for family in text_string_to_metric_families(text)}
    points = receiver_points(received)
    samples = page_samples(text)
    # The same series and values, exactly: page_samples == exported_samples held above.
    assert math.inf in samples.values()
    assert value(samples, "llmcost_tokens_total", model="model-a", kind="generation") > 0
    assert {n for n, _ in samples} >= {"process_cpu_seconds_total", "llmcost_otlp_exports_total"}
    if protocol == "http":
        assert received.compressed is True
    counting_since = int(saved["node"]["tokens"]["watching_since"] * 1e9)
    process_started = samples[("process_start_time_seconds", ())]
    at = {p.time_unix_nano for p in points}
    assert len(at) == 1, "one export, one cycle"
    for point in points:
        family = families[point.name]
        where = f"{point.name}{point.attributes}"
        assert point.resource == RESOURCE, where
        assert (point.scope_name, point.scope_version) == ("llm_cost_exporter", __version__)
        assert point.description == family.documentation, where
        assert UCUM.match(point.unit), f"{where}: unit {point.unit!r}"
        assert (point.unit == "1") == point.name.endswith("_ratio"), where
        if family.type == "counter":
            assert (point.kind, point.is_monotonic, point.aggregation_temporality) == (
                "sum",
                True,
                CUMULATIVE,
            ), where
            if point.name in PER_PROCESS:  # they count from the process's start
                assert point.start_time_unix_nano / 1e9 == pytest.approx(
                    process_started, abs=1e-6
                ), where
            else:
                assert point.start_time_unix_nano == counting_since, where
        else:
            assert family.type == "gauge", where
            assert (point.kind, point.aggregation_temporality) == ("gauge", None), where
    units = {p.name: p.unit for p in points}
    assert {name: units.get(name) for name in UNITS} == UNITS
    per_process_starts = {p.start_time_unix_nano for p in points if p.name in PER_PROCESS}
    assert len(per_process_starts) == 1


@pytest.mark.parametrize(
    ("protocol", "client_certificate"),
    [("http", False), ("http", True), ("grpc", True)],
    ids=["https", "https-client-certificate", "grpc-tls-client-certificate"],
)
def test_headers_and_tls_reach_the_receiver_and_a_rotated_header_file_needs_no_restart(
    simulator: SimulatorProcess,
    pki: dict[str, Issued],
    tmp_path: Path,
    protocol: str,
    client_certificate: bool,
) -> None:
    token = tmp_path / "token"
    token.write_text("Bearer first-token\n")
    tls: dict[str, str] = {"ca_file": str(pki["ca"].cert)}
    if client_certificate:
        tls.update(cert_file=str(pki["client"].cert), key_file=str(pki["client"].key))
    receiver = OtlpReceiver(
        protocol,  # type: ignore[arg-type]
        tls=pki["server"],
        client_ca=pki["ca"].cert if client_certificate else None,
    )
    # The bundles requests and curl are told to use lack our CA: the exporter keeps its own.
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or requests.certs.where()
    env = {
        "REQUESTS_CA_BUNDLE": bundle,
        "CURL_CA_BUNDLE": os.environ.get("CURL_CA_BUNDLE") or bundle,
    }
    with receiver:
        otlp = {
            "endpoint": receiver.endpoint,
            "protocol": otlp_protocol(receiver),
            "headers": {"X-Scope-OrgID": "team-a"},
            "header_files": {"Authorization": str(token)},
            "tls": tls,
        }
        with ExporterProcess(node_config(simulator, tmp_path, otlp), tmp_path, env=env):
            first = receiver.wait_for(lambda p: p.name == "llmcost_cost")
            delivered = accepted(receiver)
            assert delivered, receiver.requests
            for request in delivered:
                assert request.headers["x-scope-orgid"] == "team-a"
                assert request.headers["authorization"] == "Bearer first-token"
                assert request.client_cn == ("gpu-node-7-exporter" if client_certificate else None)
            rotated = tmp_path / "token.new"
            rotated.write_text("Bearer second-token\n")
            os.replace(rotated, token)  # as a Secret's mount swaps it
            mark = receiver.mark()
            arrived = eventually(
                lambda: [
                    r
                    for r in accepted(receiver, mark)
                    if r.headers["authorization"] == "Bearer second-token"
                ],
                what="an export with the rotated header",
            )
            assert arrived[0].headers["x-scope-orgid"] == "team-a"
            since_rotation = accepted(receiver, receiver.requests.index(arrived[0]))
            assert {r.headers["authorization"] for r in since_rotation} == {"Bearer second-token"}
            later = receiver.wait_for(
                lambda p: p.name == "llmcost_cost" and p.time_unix_nano > first.time_unix_nano
            )
            assert later.resource["service.name"] == "llm-cost-exporter"
    assert all(r.accepted for r in receiver.requests), [r.answer for r in receiver.requests]


def saved_counters(state_file: Path) -> dict[SeriesKey, float]:
    """llmcost_cost{component} and llmcost_tokens{model,kind} as the state file keeps them."""
    node = json.loads(state_file.read_text())["node"]
    saved = {
        series_key("llmcost_cost", {"component": component}): spend
        for component, spend in node["cost"]["spend"].items()
    }
    for model, totals in node["tokens"]["models"].items():
        for kind, tokens in totals["tokens"].items():
            saved[series_key("llmcost_tokens", {"model": model, "kind": kind})] = tokens
    return saved


def assert_in_order_and_monotonic(points: list[Point]) -> None:
    """Per series, in arrival order: later points are later, and sums never go down."""
    last: dict[SeriesKey, Point] = {}
    for point in points:
        before = last.get(point.key)
        if before is not None:
            assert point.time_unix_nano > before.time_unix_nano, point.key
            if point.kind == "sum":
                assert point.value >= before.value, point.key
        last[point.key] = point


def log_lines(exporter: ExporterProcess, *words: str) -> list[str]:
    return [line for line in exporter.log().splitlines() if all(w in line for w in words)]


@pytest.mark.parametrize(
    ("protocol", "queue_size"), [("http", 50), ("grpc", 2)], ids=["http-queue-50", "grpc-queue-2"]
)
def test_an_outage_loses_no_counted_increase_and_shutdown_flushes_the_last_figures(
    simulator: SimulatorProcess, tmp_path: Path, protocol: str, queue_size: int
) -> None:
    receiver = OtlpReceiver(protocol)  # type: ignore[arg-type]
    receiver.start()
    try:
        otlp = {
            "endpoint": endpoint(receiver),
            "protocol": otlp_protocol(receiver),
            "queue_size": queue_size,
        }
        exporter = ExporterProcess(node_config(simulator, tmp_path, otlp), tmp_path)
        with exporter:
            receiver.wait_for(lambda p: p.name == "llmcost_tokens" and p.value > 0)
            tokens_before = exporter.samples()
            receiver.stop()
            stopped_at = time.time_ns()
            # Exports fail (and, with a small queue, get dropped) while tokens keep coming.
            wanted = ("dropped", 1) if queue_size == 2 else ("failure", 3)
            eventually(
                lambda: (
                    value(exporter.samples(), "llmcost_otlp_exports_total", result=wanted[0])
                    >= wanted[1]
                ),
                what=f"{wanted[1]} {wanted[0]} exports on /metrics",
            )
            during = exporter.samples()
            assert value(during, "llmcost_otlp_queued_exports") >= 1
            assert value(during, "llmcost_tokens_total", model="model-a", kind="prompt") > value(
                tokens_before, "llmcost_tokens_total", model="model-a", kind="prompt"
            )
            mark = receiver.mark()
            restarted_at = time.time_ns()
            receiver.start()
            failure = receiver.wait_for(
                lambda p: (
                    p.name == "llmcost_otlp_exports"
                    and p.attributes == {"result": "failure"}
                    and p.value > 0
                ),
                since=mark,
            )
            eventually(
                lambda: value(exporter.samples(), "llmcost_otlp_queued_exports") == 0,
                what="the queue emptied",
            )
            after = exporter.samples()
            assert value(after, "llmcost_otlp_exports_total", result="failure") >= failure.value
            dropped = value(after, "llmcost_otlp_exports_total", result="dropped")
        # SIGTERM (leaving the with): the last cycle is saved, then pushed.
        assert log_lines(exporter, "llm-cost-exporter: stopped")
    finally:
        receiver.stop()

    assert not log_lines(exporter, "dropped at shutdown")
    assert len(log_lines(exporter, *FAILING)) == 1, exporter.log()
    assert len(log_lines(exporter, *RECOVERED)) == 1, exporter.log()
    everything = receiver.points()
    assert_in_order_and_monotonic(everything)
    cycles_of_the_outage = {
        p.time_unix_nano
        for p in receiver.points(mark)
        if p.name == "llmcost_cost" and stopped_at < p.time_unix_nano < restarted_at
    }
    if queue_size == 2:
        assert dropped >= 1
        assert 1 <= len(cycles_of_the_outage) <= queue_size
    else:
        # The cycles queued during the outage arrived, none dropped.
        assert dropped == 0
        assert len(cycles_of_the_outage) >= 2
    delivered = accepted(receiver)
    last_points = {p.key: p for p in receiver_points(delivered[-1])}
    last_time = next(iter(last_points.values())).time_unix_nano
    assert max(p.time_unix_nano for p in everything) == last_time
    # The shutdown export counts every earlier delivery but itself (and one more that
    # may have been under way when its cycle was computed): none lost, none sent twice.
    successes = last_points[series_key("llmcost_otlp_exports", {"result": "success"})].value
    assert len(delivered) - 2 <= successes <= len(delivered) - 1
    assert last_points[series_key("llmcost_otlp_exports", {"result": "dropped"})].value == dropped
    saved = saved_counters(tmp_path / "state.json")
    assert saved[series_key("llmcost_tokens", {"model": "model-a", "kind": "prompt"})] > 0
    assert {key: last_points[key].value for key in saved} == saved


def test_a_slow_receiver_costs_collection_and_metrics_nothing(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    """Exports time out one after the other while cycles go on and the pages answer at once:
    the sender's waits never reach the event loop that collects and serves."""
    with OtlpReceiver("http") as receiver:
        receiver.hang(scaled(30))  # far beyond otlp.timeout
        otlp = {"endpoint": receiver.endpoint}
        with ExporterProcess(node_config(simulator, tmp_path, otlp), tmp_path) as exporter:
            answered_in: list[float] = []

            def timed(read: Callable[[], Any]) -> Any:
                started = time.monotonic()
                result = read()
                answered_in.append(time.monotonic() - started)
                return result

            seen: list[Samples] = [exporter.samples()]

            def next_cycle() -> bool:
                samples = timed(exporter.samples)
                assert timed(exporter.health) == "ok"
                cost = value(samples, "llmcost_cost_total", component="gpu")
                if cost > value(seen[-1], "llmcost_cost_total", component="gpu"):
                    seen.append(samples)
                return len(seen) >= 5

            eventually(next_cycle, what="four more cycles on /metrics", interval=0.02)
            failures = [value(s, "llmcost_otlp_exports_total", result="failure") for s in seen]
            tokens = [
                value(s, "llmcost_tokens_total", model="model-a", kind="generation") for s in seen
            ]
            assert failures[-1] > failures[0] >= 0, failures
            assert tokens[-1] > tokens[0], tokens
            assert {value(s, "llmcost_otlp_exports_total", result="success") for s in seen} == {0}
            assert len(receiver.requests) >= 2
            assert log_lines(exporter, *FAILING)
            # Each export hangs for the whole otlp.timeout (1s); none of that shows here.
            assert max(answered_in) < scaled(0.5), sorted(answered_in)[-5:]


def test_an_otlp_only_node_serves_no_metrics_page_and_pushes_the_figures(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    with OtlpReceiver("grpc") as receiver:
        config = node_config(
            simulator, tmp_path, {"endpoint": grpc_endpoint(receiver), "protocol": "grpc"}
        )
        config["web"] = {"serve_metrics": False}
        with ExporterProcess(config, tmp_path) as exporter:
            with pytest.raises(urllib.error.HTTPError) as refused:
                exporter.get("/metrics")
            assert refused.value.code == 404
            status, _, body = exporter.get("/healthz")
            assert (status, body.decode().strip()) == (200, "ok")
            status, _, landing = exporter.get("/")
            assert status == 200
            assert b'href="/healthz"' in landing
            assert b'href="/metrics"' not in landing
            assert f"pushed over OTLP to {grpc_endpoint(receiver)}".encode() in landing
            receiver.wait_for(
                lambda p: (
                    p.name == "llmcost_tokens"
                    and p.attributes == {"model": "model-a", "kind": "generation"}
                    and p.value > 0
                )
            )
            receiver.wait_for(lambda p: p.name == "llmcost_cost" and p.value > 0)
            assert "/metrics is not served" in exporter.log()


BUILD_OUTPUTS = """
import json, sys
from llm_cost_exporter import cli
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.config.loading import config_from_mapping
from llm_cost_exporter.daemon import assembly

config = config_from_mapping(json.loads(sys.argv[1]))
output = assembly._otlp_output(config, NodeState(config, *assembly.resolve_prices(config)))
print(json.dumps({
    "output": type(output).__name__,
    "sdk": sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"),
}))
"""


@pytest.mark.parametrize("otlp", [False, True], ids=["otlp-off", "otlp-on"])
def test_the_sdk_is_imported_only_when_otlp_is_on(otlp: bool) -> None:
    """In a fresh interpreter, as the daemon starts: the CLI, the assembly, the outputs."""
    config = minimal_config_dict(engines=[{"url": "http://127.0.0.1:9/metrics"}])
    if otlp:
        config["otlp"] = {"endpoint": "http://127.0.0.1:9/v1/metrics"}
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", BUILD_OUTPUTS, json.dumps(config)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=scaled(60),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    if otlp:
        assert result["output"] == "OtlpOutput"
        assert "opentelemetry.sdk.metrics.export" in result["sdk"]
    else:
        assert result == {"output": "NoneType", "sdk": []}
