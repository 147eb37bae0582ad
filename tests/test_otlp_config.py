"""The `otlp:` section: the file, the SDK's environment variables behind it, and errors.

Every OTEL_* variable the section reads is cleared first, so the machine's own
environment never decides a test.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import minimal_config_dict
from test_config import run_cli, write

from llm_cost_exporter import __version__
from llm_cost_exporter.config import ConfigError, config_from_mapping
from llm_cost_exporter.config.otlp_settings import OtlpConfig
from llm_cost_exporter.outputs.otlp.resource import resource_attributes


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_") or name in ("NODE_NAME", "POD_NAME", "POD_NAMESPACE"):
            monkeypatch.delenv(name)


def otlp(**section: Any) -> OtlpConfig:
    return config_from_mapping(minimal_config_dict(otlp=section or None)).otlp


def error(**changes: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        config_from_mapping(minimal_config_dict(**changes))
    assert "\n" not in str(raised.value)
    return str(raised.value)


def test_off_unless_an_endpoint_is_configured() -> None:
    off = otlp()
    assert not off.enabled and off.endpoint is None
    on = otlp(endpoint="https://collector.example:4318")
    assert on.enabled and on.target == "https://collector.example:4318/v1/metrics"
    assert otlp(endpoint="https://c.example:4318/otlp/v1/metrics").target == (
        "https://c.example:4318/otlp/v1/metrics"
    )
    assert not otlp(endpoint="https://c.example:4318", enabled=False).enabled
    local = otlp(enabled=True, protocol="grpc")
    assert local.enabled and local.target == "http://localhost:4317"
    assert (local.interval, local.timeout, local.compression, local.queue_size) == (
        60.0,
        10.0,
        "gzip",
        10,
    )


def test_the_sdk_variables_stand_behind_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://agent:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-scope-orgid=team%20a,api-key=k1")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "30000")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "5000")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "9000")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
    config = otlp()
    assert config.enabled
    assert config.target == "http://agent:4318/v1/metrics"  # the base URL gets the path
    assert config.headers == {"x-scope-orgid": "team a", "api-key": "k1"}
    assert (config.interval, config.timeout, config.compression) == (30.0, 5.0, "none")
    # The file wins over the environment.
    config = otlp(endpoint="https://other:4318/v1/metrics", interval="2m", compression="gzip")
    assert config.target == "https://other:4318/v1/metrics"
    assert (config.interval, config.compression) == (120.0, "gzip")


def test_grpc_takes_the_base_endpoint_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://agent:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    config = otlp()
    assert (config.protocol, config.target, config.tls.insecure) == (
        "grpc",
        "https://agent:4317",
        True,
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "agent:4317")
    assert otlp().target == "agent:4317"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"OTEL_METRIC_EXPORT_INTERVAL": "soon"}, "OTEL_METRIC_EXPORT_INTERVAL: must be milli"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL: must be"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"}, "OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://x' is"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "OTEL_EXPORTER_OTLP_HEADERS: 'novalue' is"),
        (
            {"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"},
            "OTEL_EXPORTER_OTLP_CERTIFICATE: ",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_RESOURCE_ATTRIBUTES": "x"},
            "OTEL_RESOURCE_ATTRIBUTES: 'x' is not key=value",
        ),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "zstd"},
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION: must be",
        ),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert error().startswith(message)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"endpoint": "collector:4318"}, "otlp.endpoint: http/protobuf needs an http(s):// URL"),
        ({"endpoint": "https://u:p@c:4318"}, "otlp.endpoint: give credentials in otlp.headers"),
        ({"enabled": True, "interval": "10s", "timeout": "30s"}, "otlp.timeout: must be at most"),
        ({"enabled": True, "protocol": "thrift"}, "otlp.protocol: must be"),
        ({"enabled": True, "tls": {"cert_file": __file__}}, "otlp.tls.cert_file: a client"),
        ({"enabled": True, "header_files": {"authorization": "/nonexistent"}}, "otlp.header_files"),
        ({"enabled": True, "queue_size": 0}, "otlp.queue_size: must be between 1 and 1000"),
        ({"enabled": True, "gen_ai_attributes": "yes"}, "otlp.gen_ai_attributes: must be true"),
    ],
)
def test_a_bad_section_is_one_line_naming_the_field(section: dict, message: str) -> None:
    assert error(otlp=section).startswith(message)


def test_metrics_can_be_turned_off_only_where_otlp_carries_the_figures() -> None:
    assert error(web={"serve_metrics": False}).startswith(
        "web.serve_metrics: false leaves the figures nowhere to go"
    )
    config = config_from_mapping(
        minimal_config_dict(web={"serve_metrics": False}, otlp={"endpoint": "http://a:4318"})
    )
    assert not config.serve_metrics and config.otlp.enabled


def test_the_sdk_switches_turn_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://agent:4318")
    assert otlp().enabled
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    assert not otlp().enabled
    monkeypatch.delenv("OTEL_METRICS_EXPORTER")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not otlp().enabled


def test_the_resource_says_who_the_figures_are_about() -> None:
    config = otlp(endpoint="http://a:4318", resource_attributes={"deployment.environment": "prod"})
    plain = resource_attributes(config, {})
    host = socket.gethostname()
    assert plain == {
        "service.name": "llm-cost-exporter",
        "service.version": __version__,
        "host.name": host,
        "service.instance.id": host,
        "deployment.environment": "prod",
    }
    on_kubernetes = resource_attributes(
        config,
        {
            "NODE_NAME": "gpu-node-7",
            "POD_NAME": "llm-cost-exporter-x1",
            "POD_NAMESPACE": "monitoring",
            "POD_UID": "1234",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging,team=ml%2Cinfra",
            "OTEL_SERVICE_NAME": "gpu-cost",
        },
    )
    assert on_kubernetes["service.instance.id"] == "gpu-node-7"
    assert on_kubernetes["k8s.node.name"] == "gpu-node-7"
    assert on_kubernetes["k8s.pod.name"] == "llm-cost-exporter-x1"
    assert on_kubernetes["k8s.namespace.name"] == "monitoring"
    assert on_kubernetes["k8s.pod.uid"] == "1234"
    assert on_kubernetes["service.name"] == "gpu-cost"
    assert on_kubernetes["team"] == "ml,infra"
    assert on_kubernetes["deployment.environment"] == "prod"  # the file wins


def test_a_bad_variable_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, minimal_config_dict())
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318"}
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "-1"
    done = run_cli("check-config", str(path), env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "configuration error: OTEL_METRIC_EXPORT_INTERVAL: must be milliseconds" in (done.stderr)
    assert "Traceback" not in done.stderr
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "15000"
    done = run_cli("check-config", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert "interval: 15s" in done.stdout and "http://a:4318/v1/metrics" in done.stdout
