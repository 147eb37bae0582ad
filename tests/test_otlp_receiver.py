"""The fake OTLP receiver decodes exactly what the official OTLP exporters send.

Metrics built by hand with the OpenTelemetry SDK's own classes are pushed by the
real OTLP/HTTP and OTLP/gRPC exporters, plain and gzip-compressed, over TLS with
client certificates, and into an outage, error answers and a slow backend; the
points the receiver reads back must be exactly those sent.
"""

from __future__ import annotations

import gzip
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpExporter,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from realparts.certificates import Issued
from realparts.otlp_points import Point, series_key
from realparts.otlp_receiver import OtlpReceiver, receiver_pki
from realparts.timeouts import scaled

SUCCESS, FAILURE = MetricExportResult.SUCCESS, MetricExportResult.FAILURE
START = 1_700_000_000_000_000_000
NOW = START + 15_000_000_000
RESOURCE = {"service.name": "llm-cost-exporter", "host.name": "gpu-node-1", "node.rank": 3}
SCOPE = ("llm_cost_exporter", "0.1.0")
MODEL = {"model": "llama-3-8b"}
GPU = {"gpu": "0", "uuid": "GPU-1234", "mig": False}
TOKEN = "Bearer otlp-token-1"
CUMULATIVE = "AGGREGATION_TEMPORALITY_CUMULATIVE"
DELTA = "AGGREGATION_TEMPORALITY_DELTA"


def metrics_data(time_unix_nano: int = NOW, cost: float = 12.5) -> MetricsData:
    """One resource, one scope: a gauge, a monotonic cumulative sum of doubles, one of
    ints, and a non-monotonic delta sum."""

    def point(attributes: dict[str, Any], value: float | int) -> NumberDataPoint:
        return NumberDataPoint(attributes, START, time_unix_nano, value)

    cumulative = AggregationTemporality.CUMULATIVE
    metrics = [
        Metric("llmcost_gpu_utilization_ratio", "Busy share", "1", Gauge([point(GPU, 0.75)])),
        Metric(
            "llmcost_cost_total", "Cost so far", "USD", Sum([point(MODEL, cost)], cumulative, True)
        ),
        Metric(
            "llmcost_requests_total",
            "Requests",
            "{request}",
            Sum(
                [point({**MODEL, "ok": True}, 42), point({**MODEL, "ok": False}, 2)],
                cumulative,
                True,
            ),
        ),
        Metric(
            "llmcost_queue_change",
            "",
            "",
            Sum([point({**MODEL, "ranks": [0, 1]}, -3)], AggregationTemporality.DELTA, False),
        ),
    ]
    scope = ScopeMetrics(InstrumentationScope(*SCOPE), metrics, "")
    return MetricsData([ResourceMetrics(Resource(RESOURCE), [scope], "")])


def expected_points(time_unix_nano: int = NOW, cost: float = 12.5) -> list[Point]:
    """What `metrics_data` must read back as, spelled out."""
    gauge = ("gauge", None, None)
    counter = ("sum", True, CUMULATIVE)
    requests = ("llmcost_requests_total", "Requests", "{request}")

    def point(
        metric: tuple[str, str, str],
        kind: tuple[str, bool | None, str | None],
        attributes: dict[str, Any],
        value: float | int,
    ) -> Point:
        # The exporters' encoder sends no start time for a gauge's points.
        start = 0 if kind == gauge else START
        return Point(RESOURCE, *SCOPE, *metric, *kind, attributes, value, start, time_unix_nano)

    return [
        point(("llmcost_gpu_utilization_ratio", "Busy share", "1"), gauge, GPU, 0.75),
        point(("llmcost_cost_total", "Cost so far", "USD"), counter, MODEL, cost),
        point(requests, counter, {**MODEL, "ok": True}, 42),
        point(requests, counter, {**MODEL, "ok": False}, 2),
        point(
            ("llmcost_queue_change", "", ""),
            ("sum", False, DELTA),
            {**MODEL, "ranks": [0, 1]},
            -3,
        ),
    ]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued]:
    return receiver_pki(tmp_path_factory.mktemp("otlp-pki"), "llm-cost-exporter")


@pytest.fixture
def exporter_ca_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) override the CA file the
    OTLP/HTTP exporter sets on its session; these tests give it theirs."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@contextmanager
def exporter(
    receiver: OtlpReceiver,
    timeout: float = 5.0,
    compression: bool = False,
    pki: dict[str, Issued] | None = None,
    client_certificate: bool = True,
) -> Iterator[HttpExporter | GrpcExporter]:
    """The real exporter of the receiver's protocol, pointed at it; `pki` for TLS."""
    client = pki["client"] if pki is not None and client_certificate else None
    made: HttpExporter | GrpcExporter
    if receiver.protocol == "http":
        made = HttpExporter(
            endpoint=receiver.endpoint,
            certificate_file=str(pki["ca"].cert) if pki else None,
            client_key_file=str(client.key) if client else None,
            client_certificate_file=str(client.cert) if client else None,
            headers={"Authorization": TOKEN},
            timeout=scaled(timeout),
            compression=HttpCompression.Gzip if compression else HttpCompression.NoCompression,
        )
    else:
        credentials = None
        if pki is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=pki["ca"].cert.read_bytes(),
                private_key=client.key.read_bytes() if client else None,
                certificate_chain=client.cert.read_bytes() if client else None,
            )
        made = GrpcExporter(
            endpoint=receiver.endpoint,
            insecure=pki is None,
            credentials=credentials,
            headers={"authorization": TOKEN},
            timeout=scaled(timeout),
            compression=grpc.Compression.Gzip if compression else grpc.Compression.NoCompression,
        )
    try:
        yield made
    finally:
        made.shutdown()


PROTOCOLS = pytest.mark.parametrize("protocol", ["http", "grpc"])


@PROTOCOLS
@pytest.mark.parametrize("compression", [False, True], ids=["plain", "gzip"])
def test_an_export_arrives_exactly(protocol: str, compression: bool) -> None:
    with OtlpReceiver(protocol) as receiver, exporter(receiver, compression=compression) as sdk:
        assert sdk.export(metrics_data()) is SUCCESS
        (received,) = receiver.requests
    assert received.accepted and received.answer == (200 if protocol == "http" else "OK")
    assert receiver.points() == expected_points()
    assert received.headers["authorization"] == TOKEN
    assert received.client_cn is None
    if protocol == "http":
        assert received.compressed is compression
        assert received.headers["content-type"] == "application/x-protobuf"
        assert received.headers.get("content-encoding") == ("gzip" if compression else None)
    else:
        assert received.compressed is None
        assert "grpc-python" in received.headers["user-agent"]
    assert abs(received.at - time.time()) < scaled(30)


@PROTOCOLS
def test_compressed_bodies_really_are_compressed(protocol: str) -> None:
    """A receiver refusing compression refuses the gzip exporter, not the plain one."""
    with OtlpReceiver(protocol, refuse_compressed=True) as receiver:
        with exporter(receiver, compression=True) as sdk:
            assert sdk.export(metrics_data()) is FAILURE
        with exporter(receiver) as sdk:
            assert sdk.export(metrics_data()) is SUCCESS
        answers = [r.answer for r in receiver.requests]
    # grpc refuses a disabled compression itself: the servicer never sees that call.
    assert answers == ([415, 200] if protocol == "http" else ["OK"])
    assert receiver.points() == expected_points()


@PROTOCOLS
@pytest.mark.usefixtures("exporter_ca_settings")
def test_tls_with_client_certificates(protocol: str, pki: dict[str, Issued]) -> None:
    with OtlpReceiver(protocol, tls=pki["server"], client_ca=pki["ca"].cert) as receiver:
        assert receiver.endpoint.startswith("https://" if protocol == "http" else "127.0.0.1:")
        with exporter(receiver, pki=pki, compression=True) as sdk:
            assert sdk.export(metrics_data()) is SUCCESS
        with exporter(receiver, timeout=0.5, pki=pki, client_certificate=False) as sdk:
            assert sdk.export(metrics_data()) is FAILURE
        (received,) = receiver.requests
    assert received.client_cn == "llm-cost-exporter"
    assert received.headers["authorization"] == TOKEN
    assert receiver.points() == expected_points()


@PROTOCOLS
@pytest.mark.usefixtures("exporter_ca_settings")
def test_server_tls_without_client_certificates(protocol: str, pki: dict[str, Issued]) -> None:
    with (
        OtlpReceiver(protocol, tls=pki["server"]) as receiver,
        exporter(receiver, pki=pki, client_certificate=False) as sdk,
    ):
        assert sdk.export(metrics_data()) is SUCCESS
    assert receiver.requests[0].client_cn is None
    assert receiver.points() == expected_points()


@PROTOCOLS
def test_an_outage_then_the_same_port_again(protocol: str) -> None:
    """Stopped, the receiver refuses connections and the export fails; started again it
    listens on the same port and the same exporter delivers."""
    receiver = OtlpReceiver(protocol).start()
    try:
        port = receiver.port
        with exporter(receiver, timeout=2) as sdk:
            assert sdk.export(metrics_data(NOW)) is SUCCESS
            receiver.stop()
            assert sdk.export(metrics_data(NOW + 1)) is FAILURE
            assert receiver.mark() == 1
            receiver.start()
            assert receiver.port == port
            assert sdk.export(metrics_data(NOW + 2)) is SUCCESS
    finally:
        receiver.stop()
    assert [p.time_unix_nano for p in receiver.points()] == [NOW] * 5 + [NOW + 2] * 5


@pytest.mark.parametrize(
    ("protocol", "status"), [("http", 503), ("grpc", grpc.StatusCode.UNAVAILABLE)]
)
def test_a_retryable_error_then_recovery(protocol: str, status: Any) -> None:
    """Answered a retryable error (with a short retry delay) the exporter tries again
    until its retries run out; once answers are good again it delivers."""
    with OtlpReceiver(protocol) as receiver, exporter(receiver) as sdk:
        receiver.fail(status, retry_after=0.05)
        assert sdk.export(metrics_data(cost=1.0)) is FAILURE
        refused = receiver.requests
        receiver.answer_ok()
        assert sdk.export(metrics_data(cost=2.0)) is SUCCESS
    name = status if isinstance(status, int) else status.name
    assert len(refused) > 1 and {r.answer for r in refused} == {name}
    assert receiver.points(accepted_only=False)[0].value == 0.75
    assert receiver.points() == expected_points(cost=2.0)


@pytest.mark.parametrize(
    ("protocol", "status"), [("http", 400), ("grpc", grpc.StatusCode.INVALID_ARGUMENT)]
)
def test_a_permanent_error_is_not_retried(protocol: str, status: Any) -> None:
    with OtlpReceiver(protocol) as receiver, exporter(receiver) as sdk:
        receiver.fail(status)
        assert sdk.export(metrics_data()) is FAILURE
        assert len(receiver.requests) == 1
    assert receiver.points() == []
    assert len(receiver.points(accepted_only=False)) == 5


@PROTOCOLS
def test_a_slow_receiver(protocol: str) -> None:
    """A hang shorter than the exporter's timeout delays the export; a longer one fails
    it at the timeout."""
    with OtlpReceiver(protocol) as receiver:
        receiver.hang(0.3)
        with exporter(receiver) as sdk:
            began = time.monotonic()
            assert sdk.export(metrics_data()) is SUCCESS
            assert time.monotonic() - began >= 0.3
        receiver.hang(scaled(60))
        with exporter(receiver, timeout=0.5) as sdk:
            began = time.monotonic()
            assert sdk.export(metrics_data(NOW + 1)) is FAILURE
            assert time.monotonic() - began < scaled(30)
    assert receiver.requests[1].request is not None


def test_latest_and_waiting() -> None:
    with OtlpReceiver() as receiver, exporter(receiver) as sdk:
        assert sdk.export(metrics_data(NOW + 10, cost=20.0)) is SUCCESS
        since = receiver.mark()
        assert sdk.export(metrics_data(NOW, cost=10.0)) is SUCCESS
        assert sdk.export(metrics_data(NOW + 20, cost=30.0)) is SUCCESS
        cost = receiver.wait_for(lambda p: p.name == "llmcost_cost_total", since=since)
        assert cost.value == 10.0
        assert len(receiver.wait_for_requests(2, since=since)) == 2
        with pytest.raises(TimeoutError, match="llmcost_cost_total"):
            receiver.wait_for(lambda p: p.value == 99.0, timeout=0.2)
    latest = receiver.latest()
    assert latest[series_key("llmcost_cost_total", MODEL)].value == 30.0
    assert latest[series_key("llmcost_queue_change", {**MODEL, "ranks": [0, 1]})].value == -3
    assert len(latest) == 5
    assert receiver.latest(since=since)[series_key("llmcost_cost_total", MODEL)].value == 30.0


def _post(url: str, body: bytes, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=scaled(10)) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_http_requests_the_exporter_would_never_send() -> None:
    """Not OTLP/HTTP protobuf: refused with the status a collector answers, recorded."""
    proto = "application/x-protobuf"
    with OtlpReceiver() as receiver:
        url = receiver.endpoint
        root = url.removesuffix("/v1/metrics")
        assert _post(f"{root}/v1/traces", b"", **{"Content-Type": proto})[0] == 404
        assert _post(url, b"{}", **{"Content-Type": "application/json"})[0] == 415
        assert _post(url, b"\xff\xff", **{"Content-Type": proto})[0] == 400
        gzipped = {"Content-Type": proto, "Content-Encoding": "gzip"}
        assert _post(url, b"not gzip", **gzipped)[0] == 400
        assert _post(url, b"", **{"Content-Type": proto, "Content-Encoding": "br"})[0] == 415
        status, body = _post(url, gzip.compress(b""), **gzipped)
    assert status == 200 and ExportMetricsServiceResponse.FromString(body).ByteSize() == 0
    received = receiver.requests
    assert [r.answer for r in received] == [404, 415, 400, 400, 415, 200]
    assert all(r.error for r in received[:-1]) and all(r.request is None for r in received[:-1])
    assert received[-1].compressed and received[-1].request is not None
    assert receiver.points() == []
