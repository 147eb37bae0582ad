"""Helpers that run real external parts (Prometheus, HTTP servers) in tests.

Import as ``from realparts import PrometheusServer``: ``tests/`` has no
``__init__.py``, so pytest's default import mode puts it on ``sys.path``.
"""

from __future__ import annotations

from .ports import free_port, wait_http_ok
from .prometheus_server import PrometheusError, PrometheusServer, find_prometheus_binary
from .victoria_metrics import VictoriaMetricsServer, VmalertServer

__all__ = [
    "PrometheusError",
    "PrometheusServer",
    "VictoriaMetricsServer",
    "VmalertServer",
    "find_prometheus_binary",
    "free_port",
    "wait_http_ok",
]
