"""Which pod is an engine to read, and where: a pod's metadata, spec and status in, an
engine target (or why the pod is skipped) out. Pure: the watch calls it on every event.

A pod is a candidate when the label selector chose it (the API server filters by it)
or, without one, when it is annotated `<prefix>/scrape: "true"`; `"false"` always
excludes it. A candidate is a target only while it runs: phase Running, a pod IP, and
not being deleted. Its annotations override the configured port, path, scheme and
engine type; a value that cannot be right skips the pod, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llm_cost_exporter.collectors.registry import ENGINE_TYPES
from llm_cost_exporter.config.settings import DISCOVERY_ANNOTATION_PREFIX, DiscoveryConfig

SCRAPE = f"{DISCOVERY_ANNOTATION_PREFIX}/scrape"
PORT = f"{DISCOVERY_ANNOTATION_PREFIX}/port"
PATH = f"{DISCOVERY_ANNOTATION_PREFIX}/path"
SCHEME = f"{DISCOVERY_ANNOTATION_PREFIX}/scheme"
ENGINE = f"{DISCOVERY_ANNOTATION_PREFIX}/engine"

SKIP_REASONS = (
    "bad_scrape",
    "bad_port",
    "bad_path",
    "bad_scheme",
    "unknown_engine",
    "too_many",
    "duplicate",
)
"""Why a candidate pod is not read: label values of llmcost_discovery_skipped_pods."""

_SHOWN_CHARS = 60


@dataclass(frozen=True)
class EngineTarget:
    """An engine pod to read: its page, its collector, and who it is."""

    url: str
    engine_type: str
    namespace: str
    pod: str
    uid: str
    created: float
    """The pod's creation (wall seconds): older pods keep their place under the limit."""
    started_at: float | None
    """When the engine's container started (wall seconds), where the pod says."""


@dataclass(frozen=True)
class Skipped:
    """A candidate pod that is not read, and why (one of SKIP_REASONS)."""

    reason: str
    message: str


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "...")


def _wall(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


def _port(value: str | None, default: int) -> int | None:
    if value is None:
        return default
    text = value.strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        return None
    return int(text)


def _path_ok(path: str) -> bool:
    return path.startswith("/") and path.isprintable() and not any(c.isspace() for c in path)


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _engine_started(pod: Any, port: int) -> float | None:
    """The start of the container that serves `port`; else of the earliest running one."""
    serving = {
        container.name
        for container in pod.spec.containers or ()
        if any(p.containerPort == port for p in container.ports or ())
    }
    started = {
        status.name: status.state.running.startedAt
        for status in pod.status.containerStatuses or ()
        if status.state is not None
        and status.state.running is not None
        and status.state.running.startedAt is not None
    }
    chosen = [started[name] for name in serving if name in started] or list(started.values())
    return _wall(min(chosen)) if chosen else None


def engine_target(pod: Any, config: DiscoveryConfig) -> EngineTarget | Skipped | None:
    """The engine target `pod` is, why it is skipped, or None: not a candidate, or not
    running (yet, or any more). `pod` is a core/v1 Pod (lightkube's model)."""
    meta = pod.metadata
    name = f"{meta.namespace}/{meta.name}"
    annotations = meta.annotations or {}
    scrape = annotations.get(SCRAPE)
    if scrape is not None:
        choice = scrape.strip().lower()
        if choice == "false":
            return None
        if choice != "true":
            return Skipped(
                "bad_scrape", f"pod {name}: {SCRAPE} is {_shown(scrape)}, not true/false"
            )
    elif config.label_selector is None:
        return None
    port = _port(annotations.get(PORT), config.port)
    if port is None:
        return Skipped("bad_port", f"pod {name}: {PORT} {_shown(annotations[PORT])} is no port")
    path = annotations.get(PATH, config.path)
    if not _path_ok(path):
        return Skipped("bad_path", f"pod {name}: {PATH} {_shown(path)} is no URL path")
    scheme = annotations.get(SCHEME, "http").strip().lower()
    if scheme not in ("http", "https"):
        return Skipped("bad_scheme", f"pod {name}: {SCHEME} {_shown(scheme)} is not http/https")
    engine_type = annotations.get(ENGINE, config.type).strip().lower()
    if engine_type not in ENGINE_TYPES:
        return Skipped(
            "unknown_engine",
            f"pod {name}: {ENGINE} {_shown(engine_type)} is no known engine type "
            f"({', '.join(sorted(ENGINE_TYPES))})",
        )
    status = pod.status
    if (
        meta.deletionTimestamp is not None
        or status is None
        or status.phase != "Running"
        or not status.podIP
    ):
        return None
    return EngineTarget(
        url=f"{scheme}://{_host(status.podIP)}:{port}{path}",
        engine_type=engine_type,
        namespace=meta.namespace or "",
        pod=meta.name or "",
        uid=meta.uid or name,
        created=_wall(meta.creationTimestamp) or 0.0,
        started_at=_engine_started(pod, port),
    )
