"""Where the Kubernetes API is and which node this is: from the configuration, else from
the pod's environment (the API's service variables, the downward API's NODE_NAME)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from llm_cost_exporter.config import ConfigError
from llm_cost_exporter.config.settings import DiscoveryConfig

NODE_NAME_VARIABLE = "NODE_NAME"
WHERE = "kubernetes.discovery"


@dataclass(frozen=True)
class Connection:
    api_server: str
    node_name: str
    token_file: str
    ca_file: str


def node_name(config: DiscoveryConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The configured node name, else the NODE_NAME variable, else None."""
    return config.node_name or environ.get(NODE_NAME_VARIABLE) or None


def api_server(config: DiscoveryConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The configured API server, else the in-cluster service, else None."""
    if config.api_server:
        return config.api_server.rstrip("/")
    host = environ.get("KUBERNETES_SERVICE_HOST")
    port = environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def connection(config: DiscoveryConfig, environ: Mapping[str, str] = os.environ) -> Connection:
    """Everything the watch needs, or ConfigError naming the setting that is missing."""
    node = node_name(config, environ)
    if node is None:
        raise ConfigError(
            f"{WHERE}.node_name: missing; set it, or the {NODE_NAME_VARIABLE} environment "
            "variable (the downward API's spec.nodeName)"
        )
    server = api_server(config, environ)
    if server is None:
        raise ConfigError(
            f"{WHERE}.api_server: missing; set it, or run in a pod "
            "(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT)"
        )
    return Connection(server, node, config.token_file, config.ca_file)
