"""The Helm chart deploying the OTLP push: the pod's identity from the Downward API in
the OTLP resource, the Secret of headers and CA mounted where config.otlp points, and a
node that only pushes (config.web.serve_metrics false) rendered without anything that
would scrape it. Rendered by the real Helm engine, validated with kubernetes-validate,
and the rendered configuration run by the real exporter against the test receiver."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from realparts.certificates import Issued, Pki
from realparts.exporter_process import ExporterProcess
from realparts.helm import (
    KUBERNETES_VERSIONS,
    NAMESPACE,
    Rendered,
    fixture_values,
    lint,
    render,
    validate_manifest,
    validate_schema,
)
from realparts.otlp_receiver import OtlpReceiver
from realparts.timeouts import scaled
from test_helm_chart import check_config, container, pod_script, pod_spec, with_values

from llm_cost_exporter.config import read_config
from llm_cost_exporter.config.otlp_settings import OtlpConfig
from llm_cost_exporter.generators import rules
from llm_cost_exporter.outputs.otlp.resource import DOWNWARD_API, resource_attributes

SECRET_DIR = "/etc/llm-cost-exporter/otlp"
TOKEN = "Bearer s3cret-t0ken"
POD = {
    "spec.nodeName": "gpu-node-7",
    "metadata.name": "llmcost-llm-cost-exporter-x2k9p",
    "metadata.namespace": NAMESPACE,
    "metadata.uid": "7d1c4a52-2f0e-4b8e-9a55-0c3e4f1b2a6d",
}
"""What the kubelet would put in the pod's fieldRef variables."""
SCRAPE_ALERTS = {"LLMCostExporterDown", "LLMCostMetricsMissing", "LLMCostDataStale"}
"""The alerts on a scrape's `up` series alone."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def otlp_ca(pki: Pki) -> Issued:
    """The CA that signs the receiver's certificate."""
    return pki.ca("otlp-ca")


@pytest.fixture(scope="module")
def otlp_only() -> Rendered:
    return render(fixture_values("otlp-only"))


@pytest.fixture(scope="module")
def minimal() -> Rendered:
    return render(fixture_values("minimal"))


def downward_env(rendered: Rendered) -> dict[str, str]:
    """The exporter's environment as the kubelet fills its fieldRef variables."""
    env = {}
    for variable in container(rendered)["env"]:
        field = variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if field is not None:
            env[variable["name"]] = POD[field]
    return env


def mounted(config_text: str, secret: dict[str, str], directory: Path) -> str:
    """The Secret's keys as files in `directory`, standing in for the mount, and the
    configuration with the mount's paths pointing there."""
    directory.mkdir()
    for key, text in secret.items():
        (directory / key).write_text(text)
    assert f"{SECRET_DIR}/" in config_text
    return config_text.replace(f"{SECRET_DIR}/", f"{directory}/")


def secret_of(ca: Issued) -> dict[str, str]:
    """The Secret an SRE creates: the header's value and the receiver's CA."""
    return {"authorization": TOKEN + "\n", "ca.crt": ca.cert.read_text()}


# --- the pod ------------------------------------------------------------------------


def test_the_pod_names_itself_to_the_otlp_resource(minimal: Rendered) -> None:
    env = downward_env(minimal)
    assert set(env) == set(DOWNWARD_API)
    attributes = resource_attributes(OtlpConfig(), env)
    assert attributes["service.instance.id"] == "gpu-node-7"
    assert {name: attributes[name] for name in DOWNWARD_API.values()} == {
        "k8s.node.name": "gpu-node-7",
        "k8s.pod.name": POD["metadata.name"],
        "k8s.namespace.name": NAMESPACE,
        "k8s.pod.uid": POD["metadata.uid"],
    }


def test_the_secret_is_mounted_read_only_where_config_otlp_points(
    otlp_only: Rendered, minimal: Rendered
) -> None:
    spec = pod_spec(otlp_only)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["otlp"] == {"name": "otlp", "secret": {"secretName": "llm-cost-otlp"}}
    exporter = container(otlp_only)
    # The whole directory, not subPath: the kubelet swaps a rotated Secret's files in.
    assert [m for m in exporter["volumeMounts"] if m["name"] == "otlp"] == [
        {"name": "otlp", "mountPath": SECRET_DIR, "readOnly": True}
    ]
    assert exporter["securityContext"] == container(minimal)["securityContext"]
    assert exporter["securityContext"]["readOnlyRootFilesystem"] is True
    # The chart renders no Secret of its own for it.
    assert not otlp_only.of_kind("Secret")
    # Without existingSecret nothing is mounted.
    assert "otlp" not in {v["name"] for v in pod_spec(minimal)["volumes"]}
    mounts = [m["mountPath"] for m in container(minimal)["volumeMounts"]]
    assert not any(path.startswith(SECRET_DIR) for path in mounts)


def test_a_file_in_the_secrets_directory_needs_the_secret() -> None:
    values = with_values(fixture_values("otlp-only"), **{"otlp.existingSecret": ""})
    with pytest.raises(
        helm.HelmRenderError,
        match=r"otlp.existingSecret: config.otlp.header_files.authorization reads "
        rf"{SECRET_DIR}/authorization, but no Secret is mounted",
    ):
        render(values)
    only_tls = with_values(values, **{"config.otlp.header_files": None})
    with pytest.raises(helm.HelmRenderError, match="config.otlp.tls.ca_file reads"):
        render(only_tls)
    # A file elsewhere (mounted through other means) is the user's business.
    elsewhere = with_values(only_tls, **{"config.otlp.tls.ca_file": "/var/run/secrets/otlp/ca.crt"})
    assert render(elsewhere).config["otlp"]["tls"]["ca_file"] == "/var/run/secrets/otlp/ca.crt"


# --- the configuration ----------------------------------------------------------------


def test_the_rendered_otlp_only_configuration_loads(
    otlp_only: Rendered, otlp_ca: Issued, tmp_path: Path
) -> None:
    text = mounted(otlp_only.config_text, secret_of(otlp_ca), tmp_path / "otlp")
    done = check_config(text, tmp_path)
    assert done.returncode == 0, done.stderr
    config, _ = read_config(str(tmp_path / "config.yml"), {})
    assert config.serve_metrics is False
    otlp = config.otlp
    assert otlp.enabled is True
    assert otlp.target == "https://otel-collector.observability:4318/v1/metrics"
    assert otlp.header_files == {"authorization": str(tmp_path / "otlp" / "authorization")}
    assert otlp.tls.ca_file == str(tmp_path / "otlp" / "ca.crt")
    assert otlp.resource_attributes == {"k8s.cluster.name": "gpu-prod"}
    assert config.listen_address == "0.0.0.0:9478"


def test_without_the_secrets_files_the_exporter_names_the_field(
    otlp_only: Rendered, tmp_path: Path
) -> None:
    """What a pod whose Secret lacks a key does: exit 2, one line naming the field."""
    done = check_config(otlp_only.config_text, tmp_path, process=True)
    assert done.returncode == 2
    assert "configuration error: otlp.header_files.authorization: " in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- a node that only pushes ----------------------------------------------------------


def test_an_otlp_only_node_keeps_service_and_probes_and_has_no_monitor(
    otlp_only: Rendered,
) -> None:
    assert not otlp_only.of_kind("ServiceMonitor") and not otlp_only.of_kind("PodMonitor")
    assert otlp_only.one("Service")["spec"]["ports"][0]["targetPort"] == "metrics"
    exporter = container(otlp_only)
    for probe in ("livenessProbe", "readinessProbe"):
        assert exporter[probe]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("monitor", ["serviceMonitor", "podMonitor"])
def test_a_monitor_of_an_otlp_only_node_refuses_to_render(monitor: str) -> None:
    values = with_values(fixture_values("otlp-only"), **{f"{monitor}.enabled": True})
    with pytest.raises(
        helm.HelmRenderError,
        match=rf"{monitor}.enabled: config.web.serve_metrics is false .* every scrape "
        "would fail",
    ):
        render(values)
    # The same monitor renders once the node serves /metrics again.
    serving = with_values(values, **{"config.web.serve_metrics": True})
    kind = monitor[0].upper() + monitor[1:]
    assert render(serving).one(kind)["spec"]


def test_the_rules_leave_out_the_alerts_on_up_for_an_otlp_only_node() -> None:
    def alerts(values: dict[str, Any]) -> dict[str, str]:
        groups = render(values).one("PrometheusRule")["spec"]["groups"]
        return {r["alert"]: r["expr"] for g in groups for r in g["rules"] if "alert" in r}

    pushing = with_values(fixture_values("otlp-only"), **{"prometheusRule.enabled": True})
    scraped = with_values(pushing, **{"config.web.serve_metrics": True})
    everything, kept = alerts(scraped), alerts(pushing)
    assert set(everything) >= SCRAPE_ALERTS
    assert set(kept) == set(everything) - SCRAPE_ALERTS
    assert SCRAPE_ALERTS == rules.SCRAPE_ONLY
    # What stays reads no scrape's up, but for the absence alert, which counts pushed nodes.
    assert {name for name, expr in kept.items() if re.search(r"(?<![\w:])up\{", expr)} == {
        "LLMCostExporterAbsent"
    }
    assert "llmcost_build_info" in kept["LLMCostExporterAbsent"]
    assert "LLMCostExporterSilent" in kept
    assert all(kept[name] == everything[name] for name in kept)
    # The recording rules the dashboards read are all there.
    assert (
        render(pushing).one("PrometheusRule")["spec"]["groups"][0]
        == (render(scraped).one("PrometheusRule")["spec"]["groups"][0])
    )
    assert "LLMCostExporterSilent fires" in render(pushing).notes


def test_notes_say_the_node_pushes_over_otlp(otlp_only: Rendered, minimal: Rendered) -> None:
    notes = otlp_only.notes
    assert "pushes its figures over OTLP to https://otel-collector.observability:4318" in notes
    assert "/metrics answers 404" in notes and "/healthz" in notes
    assert "llmcost_otlp_exports_total" in notes
    assert "serviceMonitor.enabled=true" not in notes and "Reach /metrics" not in notes
    assert "over OTLP" not in minimal.notes and "Reach /metrics" in minimal.notes


# --- schema, lint, Kubernetes' schemas ------------------------------------------------


def test_the_values_schema_knows_the_otlp_secret() -> None:
    validate_schema(fixture_values("otlp-only"))
    with pytest.raises(helm.HelmValuesError, match="existingSecrt"):
        validate_schema({**fixture_values("minimal"), "otlp": {"existingSecrt": "x"}})
    with pytest.raises(helm.HelmValuesError, match="existingSecret"):
        validate_schema({**fixture_values("minimal"), "otlp": {"existingSecret": "My_Secret"}})


def test_lint_and_every_manifest_validate_for_every_kubernetes_version(
    otlp_only: Rendered,
) -> None:
    values = with_values(fixture_values("otlp-only"), **{"prometheusRule.enabled": True})
    manifests = otlp_only.manifests + render(values).of_kind("PrometheusRule")
    for version in KUBERNETES_VERSIONS:
        assert lint(values, version) == [], version
        for manifest in manifests:
            try:
                validate_manifest(manifest, version)
            except jsonschema.ValidationError as error:
                pytest.fail(f"{manifest['kind']} on {version}: {error.message}")


# --- the real exporter on the rendered configuration ---------------------------------


@pytest.mark.realparts
def test_the_rendered_node_pushes_to_the_receiver_as_the_pod(
    pki: Pki, otlp_ca: Issued, tmp_path: Path
) -> None:
    """The exporter on the rendered configuration, its Secret as files and the pod's
    Downward API variables, pushes over HTTPS with the Secret's header and the pod's
    k8s.* resource; it serves no /metrics, and the `helm test` pod passes on /healthz."""
    server = pki.issue(otlp_ca, "otlp-server", "IP:127.0.0.1,DNS:localhost")
    with OtlpReceiver("http", tls=server) as receiver:
        values = with_values(
            fixture_values("otlp-only"),
            **{"config.otlp.endpoint": receiver.endpoint, "config.otlp.interval": "1s"},
        )
        rendered = render(values)
        text = mounted(rendered.config_text, secret_of(otlp_ca), tmp_path / "otlp")
        config = {**yaml.safe_load(text), "state_file": str(tmp_path / "state.json")}
        with ExporterProcess(config, tmp_path, env=downward_env(rendered)) as exporter:
            point = receiver.wait_for(lambda p: p.name == "llmcost_build_info", timeout=60)
            with pytest.raises(urllib.error.HTTPError) as refused:
                exporter.get("/metrics")
            assert refused.value.code == 404
            command, url = pod_script(rendered)
            assert url.endswith(".svc:9478/healthz")
            done = subprocess.run(
                [sys.executable, *command[1:], f"{exporter.url}/healthz"],
                capture_output=True,
                text=True,
                timeout=scaled(120),
                check=False,
            )
            assert done.returncode == 0, done.stderr
        first = next(r for r in receiver.requests if r.accepted)
    assert first.headers["authorization"] == TOKEN
    assert point.resource["k8s.pod.name"] == POD["metadata.name"]
    assert point.resource["k8s.namespace.name"] == NAMESPACE
    assert point.resource["k8s.pod.uid"] == POD["metadata.uid"]
    assert point.resource["k8s.node.name"] == "gpu-node-7"
    assert point.resource["service.instance.id"] == "gpu-node-7"
    assert point.resource["k8s.cluster.name"] == "gpu-prod"
