"""The Helm chart rendered and linted by the real Helm engine (helm-python-sdk: Helm's Go
SDK in a shared library), its manifests validated against Kubernetes' own schemas
(kubernetes-validate) and, for custom resources, against schemas read from their CRDs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
CHART = ROOT / "helm" / "llm-cost-exporter"
VALUES_DIR = ROOT / "tests" / "fixtures" / "helm"
CRD_SCHEMAS = ROOT / "tests" / "fixtures" / "crds"
RELEASE = "llmcost"
NAMESPACE = "monitoring"
KUBERNETES_VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36", "1.37")
"""Every version the chart claims (Chart.yaml kubeVersion), each validated."""
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.json",
}


def fixture_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text())


@dataclass(frozen=True)
class Rendered:
    """One rendering: template path -> text, and the manifests parsed."""

    files: dict[str, str]

    @property
    def manifests(self) -> list[dict[str, Any]]:
        docs = []
        for path, text in sorted(self.files.items()):
            if path.endswith(".txt"):
                continue
            docs += [doc for doc in yaml.safe_load_all(text) if doc]
        return docs

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.manifests if doc["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"{len(found)} {kind} rendered"
        return found[0]

    @property
    def notes(self) -> str:
        return next(text for path, text in self.files.items() if path.endswith("NOTES.txt"))

    @property
    def config(self) -> dict[str, Any]:
        """The exporter's configuration file as the ConfigMap holds it."""
        return yaml.safe_load(self.config_text)

    @property
    def config_text(self) -> str:
        maps = [m for m in self.of_kind("ConfigMap") if "config.yml" in m.get("data", {})]
        assert len(maps) == 1
        return maps[0]["data"]["config.yml"]


@cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(values: dict[str, Any]) -> Rendered:
    """`helm template` of the chart with `values` (over the chart's defaults)."""
    files = _chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return Rendered({path: text for path, text in files.items() if text.strip()})


def validate_schema(values: dict[str, Any]) -> None:
    """values.schema.json against `values` merged over the defaults, as install does."""
    _chart().validate_schema(_chart().merge_values(values))


def lint(values: dict[str, Any], kube_version: str) -> list[str]:
    """`helm lint --strict` findings of warning level or worse, and errors."""
    report = helm.lint(
        CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}.0"
    )
    messages = [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2]
    return messages + list(report["errors"])


# kubernetes-validate parses a version's definitions (megabytes of JSON) on every call:
# parse each file once (its validation itself is unchanged).
if not hasattr(kubernetes_validate.utils.schema_contents, "cache_info"):
    kubernetes_validate.utils.schema_contents = cache(kubernetes_validate.utils.schema_contents)


@cache
def _crd_schema(name: str) -> dict[str, Any]:
    return json.loads((CRD_SCHEMAS / name).read_text())


def validate_manifest(manifest: dict[str, Any], kube_version: str) -> None:
    """Strict schema validation: Kubernetes' for built-in kinds, the CRD's for the rest.

    Raises jsonschema.ValidationError (kubernetes-validate's is a subclass)."""
    custom = CUSTOM_KINDS.get((manifest["apiVersion"], manifest["kind"]))
    if custom is None:
        kubernetes_validate.validate(manifest, kube_version, strict=True)
    else:
        jsonschema.Draft202012Validator(_crd_schema(custom)).validate(manifest)
