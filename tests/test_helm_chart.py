"""The Helm chart: rendered by the real Helm engine for each values file of
tests/fixtures/helm/, linted strictly, every manifest validated against the schemas of
each Kubernetes version claimed, its configuration accepted by the exporter's own
check-config, its rules and dashboards equal to the committed ones."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from realparts.certificates import Pki
from realparts.exporter_process import ExporterProcess
from realparts.helm import (
    CHART,
    KUBERNETES_VERSIONS,
    NAMESPACE,
    RELEASE,
    ROOT,
    Rendered,
    fixture_values,
    lint,
    render,
    validate_manifest,
    validate_schema,
)
from realparts.loopback_http import LoopbackHttp, QuietHandler
from realparts.timeouts import scaled

from llm_cost_exporter import __version__, cli
from llm_cost_exporter.collectors.registry import ENGINE_TYPES
from llm_cost_exporter.generators import dashboards, helm_chart, rules

VARIANTS = (
    "minimal",
    "monitoring",
    "discovery",
    "web-config",
    "pod-resources",
    "keda",
    "empty-dir",
    "rule-params",
)
FULLNAME = f"{RELEASE}-llm-cost-exporter"
SCRAPE_PASSWORD = "scrape-secret"
"""The password whose bcrypt hash web-config.yaml's basic_auth_users holds."""


def _web_config_values(pki_dir: Path) -> dict[str, Any]:
    pki = Pki(pki_dir)
    ca = pki.ca("ca")
    server = pki.issue(ca, "server", "IP:127.0.0.1,DNS:localhost")
    values = fixture_values("web-config")
    values["webConfig"]["files"] = {
        "tls.crt": server.cert.read_text(),
        "tls.key": server.key.read_text(),
    }
    return values


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


@pytest.fixture(scope="module")
def values(pki_dir: Path) -> dict[str, dict[str, Any]]:
    result = {name: fixture_values(name) for name in VARIANTS}
    result["web-config"] = _web_config_values(pki_dir)
    return result


@pytest.fixture(scope="module")
def rendered(values: dict[str, dict[str, Any]]) -> dict[str, Rendered]:
    return {name: render(given) for name, given in values.items()}


def container(rendered: Rendered, name: str = "exporter") -> dict[str, Any]:
    spec = rendered.one("DaemonSet")["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name)


def pod_spec(rendered: Rendered) -> dict[str, Any]:
    return rendered.one("DaemonSet")["spec"]["template"]["spec"]


def with_values(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`base` with dotted keys set (`config.cost=None` removes the key)."""
    result = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = result
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return result


# --- the chart itself ------------------------------------------------------------------


def test_committed_chart_files_are_the_generated_ones() -> None:
    for name, text in helm_chart.render().items():
        assert (CHART / name).read_text() == text, (
            f"helm/llm-cost-exporter/{name} differs from its source: run "
            "`llm-cost-exporter chart --output-dir helm/llm-cost-exporter`"
        )
    committed = {p.name for p in (CHART / helm_chart.DASHBOARD_DIR).iterdir()}
    assert committed == {Path(n).name for n in helm_chart.dashboard_files()}


def test_chart_metadata_names_the_package_version_and_the_validated_kubernetes() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "llm-cost-exporter"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == __version__
    # The oldest validated release is the floor; a newer cluster is not refused.
    assert chart["kubeVersion"] == f">={KUBERNETES_VERSIONS[0]}.0-0"


@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_is_clean_for_every_kubernetes_version(
    variant: str, values: dict[str, dict[str, Any]]
) -> None:
    for version in KUBERNETES_VERSIONS:
        assert lint(values[variant], version) == [], version


def test_every_manifest_validates_strictly_for_every_kubernetes_version(
    rendered: dict[str, Rendered],
) -> None:
    kinds = set()
    for variant, result in rendered.items():
        for manifest in result.manifests:
            kinds.add(manifest["kind"])
            for version in KUBERNETES_VERSIONS:
                try:
                    validate_manifest(manifest, version)
                except jsonschema.ValidationError as error:
                    pytest.fail(f"{variant}: {manifest['kind']} on {version}: {error.message}")
    assert kinds >= {"DaemonSet", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject"}


def test_validation_catches_a_misspelt_field(rendered: dict[str, Rendered]) -> None:
    """The validation above can fail: a typo in a built-in and in a custom resource."""
    daemonset = copy.deepcopy(rendered["minimal"].one("DaemonSet"))
    daemonset["spec"]["template"]["spec"]["tolerationz"] = []
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(daemonset, KUBERNETES_VERSIONS[0])
    monitor = copy.deepcopy(rendered["monitoring"].one("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["honorLabel"] = True
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(monitor, KUBERNETES_VERSIONS[0])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"serviceMonitr": {"enabled": True}}, "serviceMonitr"),
        ({"serviceMonitor": {"intervall": "30s"}}, "intervall"),
        ({"prometheusRule": {"params": {"rate_window": "5 minutes"}}}, "rate_window"),
        ({"state": {"type": "hostpath"}}, "type"),
        ({"discovery": {"type": "vLLM"}}, "discovery/type"),
    ],
)
def test_values_schema_refuses_mistakes_in_the_charts_own_keys(
    change: dict[str, Any], named: str, values: dict[str, dict[str, Any]]
) -> None:
    validate_schema(values["minimal"])
    with pytest.raises(helm.HelmValuesError, match=named):
        validate_schema({**values["minimal"], **change})


def test_the_schema_knows_every_engine_type_and_nothing_else() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    engine_type = schema["properties"]["discovery"]["properties"]["type"]
    assert engine_type["enum"] == sorted(ENGINE_TYPES)


@pytest.mark.parametrize("missing", ["cost", "api_prices"])
def test_no_price_refuses_to_render_naming_the_value(
    missing: str, values: dict[str, dict[str, Any]]
) -> None:
    with pytest.raises(helm.HelmRenderError, match=f"config.{missing}: set"):
        render(with_values(values["minimal"], **{f"config.{missing}": None}))


# --- the exporter's configuration -------------------------------------------------------


@dataclass
class Checked:
    returncode: int
    stdout: str
    stderr: str


def check_config(
    config_text: str, workdir: Path, web: dict[str, str] | None = None, *, process: bool = False
) -> Checked:
    """`llm-cost-exporter check-config` on the rendered file (and web configuration):
    in this process (the CLI's own main), or with `process` as a command."""
    config = workdir / "config.yml"
    config.write_text(config_text)
    args = ["check-config", str(config)]
    if web is not None:
        (workdir / "web").mkdir()
        for name, text in web.items():
            (workdir / "web" / name).write_text(text)
        args.append(f"--web.config.file={workdir / 'web' / 'web-config.yml'}")
    if process:
        done = subprocess.run(
            [sys.executable, "-m", "llm_cost_exporter", *args],
            capture_output=True,
            text=True,
            timeout=scaled(120),
            check=False,
        )
        return Checked(done.returncode, done.stdout, done.stderr)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(args)
    return Checked(code, out.getvalue(), err.getvalue())


def web_files(rendered: Rendered) -> dict[str, str]:
    return rendered.one("Secret")["stringData"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_check_config_accepts_the_rendered_configuration(
    variant: str, rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    result = rendered[variant]
    files = web_files(result) if variant == "web-config" else None
    done = check_config(result.config_text, tmp_path, files)
    assert done.returncode == 0, done.stderr
    if files is not None:
        assert "TLS, basic auth for 1 user(s)" in done.stdout


def test_a_typo_in_config_passes_the_chart_and_check_config_names_it(
    values: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    typo = with_values(values["minimal"], **{"config.cost.gpu_price_per_hour": {"H100": 2.49}})
    done = check_config(render(typo).config_text, tmp_path, process=True)
    assert done.returncode == 2
    assert "gpu_price_per_hour" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_chart_sets_the_state_file_listen_address_and_kubernetes_keys(
    rendered: dict[str, Rendered],
) -> None:
    minimal = rendered["minimal"].config
    assert minimal["state_file"] == "/var/lib/llm-cost-exporter/state.json"
    assert minimal["web"]["listen_address"] == "0.0.0.0:9478"
    assert minimal["kubernetes"] == {
        "pod_resources": {"enabled": False},
        "discovery": {"enabled": False},
    }
    assert minimal["cost"]["gpu_prices_per_hour"] == {"H100": 2.49}
    assert rendered["empty-dir"].config["web"]["listen_address"] == "0.0.0.0:9100"
    discovery = rendered["discovery"].config["kubernetes"]["discovery"]
    assert discovery == {
        "enabled": True,
        "label_selector": "app.kubernetes.io/name=vllm",
        "port": 8080,
        "path": "/metrics",
        "type": "vllm",
        "api_server": "https://kubernetes.default.svc",
    }
    assert rendered["pod-resources"].config["kubernetes"]["pod_resources"] == {
        "enabled": True,
        "socket": "/var/lib/kubelet/pod-resources/kubelet.sock",
    }


def test_a_config_change_rolls_the_pods(
    rendered: dict[str, Rendered], values: dict[str, dict[str, Any]]
) -> None:
    def checksum(result: Rendered) -> str:
        return result.one("DaemonSet")["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]

    before = checksum(rendered["minimal"])
    configmap = rendered["minimal"].files["llm-cost-exporter/templates/configmap.yaml"]
    assert before == hashlib.sha256(configmap.encode()).hexdigest()
    changed = with_values(values["minimal"], **{"config.cost.node_extra_per_hour": 1.1})
    assert checksum(render(changed)) != before


# --- the DaemonSet ----------------------------------------------------------------------


def test_the_pod_runs_hardened_and_non_root_by_default(rendered: dict[str, Rendered]) -> None:
    result = rendered["minimal"]
    spec = pod_spec(result)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert result.one("ServiceAccount")["automountServiceAccountToken"] is False
    assert not result.of_kind("ClusterRole") and not result.of_kind("ClusterRoleBinding")
    exporter = container(result)
    assert exporter["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = {m["name"]: m["mountPath"] for m in exporter["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["tmp"] == "/tmp" and "emptyDir" in volumes["tmp"]
    assert volumes["state"]["hostPath"] == {
        "path": "/var/lib/llm-cost-exporter",
        "type": "DirectoryOrCreate",
    }
    assert mounts["state"] == "/var/lib/llm-cost-exporter"
    assert "pod-resources" not in volumes


def test_the_state_directory_is_handed_to_the_exporter_by_chown_alone(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    init = container(rendered["minimal"], "state-owner")
    assert init["image"] == container(rendered["minimal"])["image"]
    assert init["securityContext"]["runAsUser"] == 0
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    # Its script, run for real on a root-owned directory with a state file in it.
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    *command, directory, uid = init["command"]
    assert directory == "/var/lib/llm-cost-exporter" and uid == "65532"
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text("{}")
    subprocess.run([sys.executable, *command[1:], str(state), uid], check=True, timeout=scaled(60))
    assert (state.stat().st_uid, (state / "state.json").stat().st_gid) == (65532, 65532)


def test_gpu_nodes_every_gpu_and_the_node_name(rendered: dict[str, Rendered]) -> None:
    result = rendered["minimal"]
    spec = pod_spec(result)
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    exporter = container(result)
    env = {e["name"]: e for e in exporter["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "nvidia.com/gpu" not in json.dumps(exporter["resources"])
    assert exporter["resources"]["requests"] == {"cpu": "20m", "memory": "80Mi"}
    assert "cpu" not in exporter["resources"]["limits"]
    assert exporter["args"] == ["--config=/etc/llm-cost-exporter/config.yml"]
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 9478, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert exporter[probe]["httpGet"] == {
            "path": "/healthz",
            "port": "metrics",
            "scheme": "HTTP",
        }
    daemonset = result.one("DaemonSet")["spec"]
    assert daemonset["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1},
    }
    assert daemonset["template"]["spec"]["terminationGracePeriodSeconds"] >= 15
    assert "runtimeClassName" not in spec and "priorityClassName" not in spec


def test_pod_resources_runs_as_root_without_capabilities(rendered: dict[str, Rendered]) -> None:
    result = rendered["pod-resources"]
    spec = pod_spec(result)
    exporter = container(result)
    assert exporter["securityContext"] == {
        "runAsNonRoot": False,
        "runAsUser": 0,
        "runAsGroup": 0,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["pod-resources"]["hostPath"]["path"] == "/var/lib/kubelet/pod-resources"
    mount = next(m for m in exporter["volumeMounts"] if m["name"] == "pod-resources")
    assert mount == {
        "name": "pod-resources",
        "mountPath": "/var/lib/kubelet/pod-resources",
        "readOnly": True,
    }
    # Root without CAP_DAC_OVERRIDE writes only what it owns: the state directory too.
    assert container(result, "state-owner")["command"][-1] == "0"
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["priorityClassName"] == "system-node-critical"
    assert result.one("DaemonSet")["spec"]["updateStrategy"]["rollingUpdate"] == {
        "maxUnavailable": "10%"
    }
    assert spec["automountServiceAccountToken"] is False


def test_discovery_brings_the_token_and_read_only_pod_access(
    rendered: dict[str, Rendered],
) -> None:
    result = rendered["discovery"]
    assert pod_spec(result)["automountServiceAccountToken"] is True
    role = result.one("ClusterRole")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    binding = result.one("ClusterRoleBinding")
    account = result.one("ServiceAccount")["metadata"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
    ]
    assert pod_spec(result)["serviceAccountName"] == account["name"]
    assert account["annotations"] == {"example.com/owner": "sre"}


def test_state_in_an_empty_dir_needs_no_chown(rendered: dict[str, Rendered]) -> None:
    result = rendered["empty-dir"]
    spec = pod_spec(result)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["state"] and "hostPath" not in volumes["state"]
    assert "initContainers" not in spec
    assert container(result)["ports"][0]["containerPort"] == 9100
    service = result.one("Service")["spec"]
    assert service["clusterIP"] == "None"
    assert service["ports"] == [
        {"name": "metrics", "port": 9478, "targetPort": "metrics", "protocol": "TCP"}
    ]


# --- web configuration ------------------------------------------------------------------


def test_web_config_is_mounted_and_switches_probes_and_monitors_to_https(
    rendered: dict[str, Rendered],
) -> None:
    result = rendered["web-config"]
    exporter = container(result)
    assert "--web.config.file=/etc/llm-cost-exporter/web/web-config.yml" in exporter["args"]
    secret = result.one("Secret")
    assert set(secret["stringData"]) == {"web-config.yml", "tls.crt", "tls.key"}
    volumes = {v["name"]: v for v in pod_spec(result)["volumes"]}
    assert volumes["web-config"]["secret"]["secretName"] == secret["metadata"]["name"]
    # /healthz is open without credentials: an HTTPS GET is enough for the kubelet.
    for probe in ("livenessProbe", "readinessProbe"):
        assert exporter[probe]["httpGet"]["scheme"] == "HTTPS"
    template = result.one("DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/web-config" in template
    values = fixture_values("web-config")["scrape"]
    for endpoint in (
        result.one("ServiceMonitor")["spec"]["endpoints"][0],
        result.one("PodMonitor")["spec"]["podMetricsEndpoints"][0],
    ):
        assert endpoint["scheme"] == "https"
        assert endpoint["tlsConfig"] == values["tlsConfig"]
        assert endpoint["basicAuth"] == values["basicAuth"]


def test_probes_check_the_port_when_client_certificates_are_required(
    values: dict[str, dict[str, Any]],
) -> None:
    strict = with_values(
        values["web-config"],
        **{"webConfig.config.tls_server_config.client_auth_type": "RequireAndVerifyClientCert"},
    )
    exporter = container(render(strict))
    for probe in ("livenessProbe", "readinessProbe"):
        assert exporter[probe]["tcpSocket"] == {"port": "metrics"}
        assert "httpGet" not in exporter[probe]


def test_an_existing_web_config_secret_is_used_as_is(values: dict[str, dict[str, Any]]) -> None:
    existing = with_values(
        values["minimal"],
        **{"webConfig.enabled": True, "webConfig.existingSecret": "my-web", "webConfig.tls": True},
    )
    result = render(existing)
    assert not result.of_kind("Secret")
    volumes = {v["name"]: v for v in pod_spec(result)["volumes"]}
    assert volumes["web-config"]["secret"]["secretName"] == "my-web"
    assert container(result)["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"


# --- monitoring -------------------------------------------------------------------------


def test_monitors_honor_the_exporters_labels_and_set_the_rules_job(
    rendered: dict[str, Rendered],
) -> None:
    result = rendered["monitoring"]
    for kind, endpoints in (("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints")):
        monitor = result.one(kind)
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "llm-cost-exporter",
            "app.kubernetes.io/instance": RELEASE,
        }
        (endpoint,) = monitor["spec"][endpoints]
        assert endpoint["honorLabels"] is True
        assert endpoint["port"] == "metrics" and endpoint["scheme"] == "http"
        assert {"action": "replace", "targetLabel": "job", "replacement": "llm-cost"} in endpoint[
            "relabelings"
        ]
    service = result.one("ServiceMonitor")["spec"]["endpoints"][0]
    assert (service["interval"], service["scrapeTimeout"]) == ("15s", "5s")
    assert service["metricRelabelings"][0]["action"] == "drop"
    job = rendered["rule-params"].one("ServiceMonitor")["spec"]["endpoints"][0]["relabelings"][0]
    assert job["replacement"] == "gpu-cost"
    assert not rendered["minimal"].of_kind("ServiceMonitor")
    assert not rendered["minimal"].of_kind("PodMonitor")
    assert not rendered["minimal"].of_kind("PrometheusRule")


def committed_groups() -> list[dict[str, Any]]:
    alerts = ROOT / "alerts"
    return [
        group
        for name in (rules.RECORDING_FILE, rules.ALERTING_FILE)
        for group in yaml.safe_load((alerts / name).read_text())["groups"]
    ]


def test_the_prometheus_rule_is_the_committed_rule_files(rendered: dict[str, Rendered]) -> None:
    groups = rendered["monitoring"].one("PrometheusRule")["spec"]["groups"]
    assert groups == committed_groups()
    committed_exprs = [r["expr"] for g in committed_groups() for r in g["rules"]]
    assert [r["expr"] for g in groups for r in g["rules"]] == committed_exprs
    labels = rendered["monitoring"].one("PrometheusRule")["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"


def test_rule_parameters_from_values_render_as_the_generator_does(
    rendered: dict[str, Rendered],
) -> None:
    given = fixture_values("rule-params")["prometheusRule"]["params"]
    expected = rules.params_with({name: str(value) for name, value in given.items()})
    wanted = [
        group
        for name in (rules.RECORDING_FILE, rules.ALERTING_FILE)
        for group in yaml.safe_load(rules.render(expected)[name])["groups"]
    ]
    groups = rendered["rule-params"].one("PrometheusRule")["spec"]["groups"]
    assert groups == wanted
    low = next(
        r for g in groups for r in g["rules"] if r.get("alert") == "LLMCostGpuUtilizationLow"
    )
    assert low["expr"].endswith(":avg3h < 0.5")
    assert "under 50% busy" in low["annotations"]["summary"]


def test_promtool_accepts_the_rendered_rules(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (tests/install-test-deps.sh)")
    paths = []
    for variant in ("monitoring", "rule-params"):
        path = tmp_path / f"{variant}.yml"
        spec = rendered[variant].one("PrometheusRule")["spec"]
        path.write_text(yaml.safe_dump({"groups": spec["groups"]}))
        paths.append(path)
    done = subprocess.run(
        ["promtool", "check", "rules", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=scaled(300),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "duplicate" not in done.stdout + done.stderr


def dashboard_data(result: Rendered) -> dict[str, str]:
    maps = [m for m in result.of_kind("ConfigMap") if "config.yml" not in m["data"]]
    return {name: text for m in maps for name, text in m["data"].items()}


def test_dashboards_are_the_committed_json_for_the_grafana_sidecar(
    values: dict[str, dict[str, Any]],
) -> None:
    result = render(with_values(values["minimal"], **{"dashboards.enabled": True}))
    committed = {p.name: p.read_text() for p in (ROOT / "dashboards").glob("*.json")}
    assert dashboard_data(result) == committed
    for configmap in result.of_kind("ConfigMap"):
        if "config.yml" not in configmap["data"]:
            assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
            assert "annotations" not in configmap["metadata"]


def test_dashboards_follow_the_currency_and_the_folder(rendered: dict[str, Rendered]) -> None:
    result = rendered["monitoring"]
    wanted = {n: t for n, t in dashboards.render_files("EUR").items() if n.endswith(".json")}
    assert dashboard_data(result) == wanted
    for configmap in result.of_kind("ConfigMap"):
        if "config.yml" not in configmap["data"]:
            assert configmap["metadata"]["annotations"] == {"grafana_folder": "LLM cost"}


# --- autoscaling ------------------------------------------------------------------------


def test_keda_scales_the_engine_on_tokens_in_flight(rendered: dict[str, Rendered]) -> None:
    scaled_object = rendered["keda"].one("ScaledObject")
    assert scaled_object["metadata"]["namespace"] == "inference"
    spec = scaled_object["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "vllm-llama",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 6)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "Value"
    assert trigger["metadata"]["query"] == (
        'sum(llmcost_tokens_in_flight{model="llama-3.1-8b"}) / '
        'sum(llmcost_kv_cache_capacity_tokens{model="llama-3.1-8b"})'
    )
    assert trigger["metadata"]["threshold"] == "0.75"
    assert not rendered["minimal"].of_kind("ScaledObject")


def test_keda_series_are_exported_with_a_model_label() -> None:
    golden = "\n".join(p.read_text() for p in (ROOT / "tests" / "golden").glob("*.prom"))
    for series in ("llmcost_tokens_in_flight{model=", "llmcost_kv_cache_capacity_tokens{model="):
        assert series in golden


def test_keda_without_a_target_refuses_to_render(values: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(helm.HelmRenderError, match="keda.scaleTargetRef.name"):
        render(with_values(values["minimal"], **{"keda.enabled": True}))


# --- helm test and NOTES ----------------------------------------------------------------


def pod_script(result: Rendered) -> tuple[list[str], str]:
    pod = result.one("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (test_container,) = pod["spec"]["containers"]
    assert test_container["image"] == container(result)["image"]
    *command, url = test_container["command"]
    return command, url


class _NoBuildInfo(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"# a page without the exporter's build info\nup 1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.realparts
def test_the_chart_test_pod_passes_on_the_exporter_and_fails_elsewhere(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    """The test pod's own script, run against the real daemon on the rendered config."""
    result = rendered["minimal"]
    command, url = pod_script(result)
    assert url == f"http://{FULLNAME}.{NAMESPACE}.svc:9478/metrics"
    config = {**result.config, "state_file": str(tmp_path / "state.json")}
    with ExporterProcess(config, tmp_path) as exporter:
        run = [sys.executable, *command[1:], f"{exporter.url}/metrics"]
        done = subprocess.run(run, capture_output=True, text=True, timeout=scaled(120))
        assert done.returncode == 0, done.stderr
    with LoopbackHttp(_NoBuildInfo) as elsewhere:
        run = [sys.executable, *command[1:], f"{elsewhere.url}/metrics"]
        done = subprocess.run(run, capture_output=True, text=True, timeout=scaled(120))
    assert done.returncode != 0 and "no llmcost_build_info" in done.stderr


@pytest.mark.realparts
def test_the_chart_test_pod_passes_through_tls_and_basic_auth(
    rendered: dict[str, Rendered], tmp_path: Path, pki_dir: Path
) -> None:
    result = rendered["web-config"]
    command, url = pod_script(result)
    assert url.startswith("https://")
    env = {e["name"]: e for e in result.one("Pod")["spec"]["containers"][0]["env"]}
    assert env["TEST_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "llm-cost-exporter-scrape",
        "key": "password",
    }
    web = tmp_path / "web"
    web.mkdir()
    for name, text in web_files(result).items():
        (web / name).write_text(text)
    config = {**result.config, "state_file": str(tmp_path / "state.json")}
    client = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    exporter = ExporterProcess(
        config, tmp_path, f"--web.config.file={web / 'web-config.yml'}", tls_client=client
    )
    with exporter:
        https = f"{exporter.url}/metrics"
        credentials = {"TEST_USERNAME": "prometheus", "TEST_PASSWORD": SCRAPE_PASSWORD}
        done = subprocess.run(
            [sys.executable, *command[1:], https],
            capture_output=True,
            text=True,
            timeout=scaled(120),
            env={**os.environ, **credentials},
        )
        assert done.returncode == 0, done.stderr


def test_notes_say_how_to_reach_metrics_and_what_to_check(rendered: dict[str, Rendered]) -> None:
    notes = rendered["minimal"].notes
    assert f"port-forward ds/{FULLNAME} 9478" in notes
    assert "llmcost_collector_up" in notes and "runtimeClassName" in notes
    assert "serviceMonitor.enabled=true" in notes
    assert "https://" in rendered["web-config"].notes
    assert "tokens in flight" in rendered["keda"].notes
