"""Who the exported figures are about: the OTLP resource.

`service.instance.id` becomes the `instance` label where a backend turns OTLP
into Prometheus series, and `service.name` the `job`: the node's name (the
Kubernetes node, else the host) keeps `instance` one per node, as the
dashboards expect of a scrape.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from llm_cost_exporter import __version__
from llm_cost_exporter.config.otlp_settings import SERVICE_NAME, OtlpConfig, parse_pairs

DOWNWARD_API = {
    "NODE_NAME": "k8s.node.name",
    "POD_NAME": "k8s.pod.name",
    "POD_NAMESPACE": "k8s.namespace.name",
    "POD_UID": "k8s.pod.uid",
}
"""Environment variable (set from the Downward API by the Helm chart) -> attribute."""


def resource_attributes(
    config: OtlpConfig, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """Ours, then `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`, then the
    configuration's: each later one wins."""
    host = socket.gethostname()
    attributes = {
        "service.name": SERVICE_NAME,
        "service.version": __version__,
        "host.name": host,
        "service.instance.id": environ.get("NODE_NAME") or host,
    }
    for variable, attribute in DOWNWARD_API.items():
        if environ.get(variable):
            attributes[attribute] = environ[variable]
    text = environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if text.strip():
        attributes.update(parse_pairs("OTEL_RESOURCE_ATTRIBUTES", text))
    if environ.get("OTEL_SERVICE_NAME", "").strip():
        attributes["service.name"] = environ["OTEL_SERVICE_NAME"].strip()
    attributes.update(config.resource_attributes)
    return attributes
