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


def _wall(when: str | None) -> float | None:
    """An RFC 3339 time of the API (`2025-03-01T10:00:00Z`) in wall seconds."""
    if not when:
        return None
    try:
        return datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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


def _engine_started(pod: dict[str, Any], port: int) -> float | None:
    """The start of the container that serves `port`; else of the earliest running one."""
    serving = {
        container.get("name")
        for container in (pod.get("spec") or {}).get("containers") or ()
        if any(p.get("containerPort") == port for p in container.get("ports") or ())
    }
    started = {
        status.get("name"): _wall(
            ((status.get("state") or {}).get("running") or {}).get("startedAt")
        )
        for status in (pod.get("status") or {}).get("containerStatuses") or ()
    }
    started = {name: at for name, at in started.items() if at is not None}
    chosen = [started[name] for name in serving if name in started] or list(started.values())
    return min(chosen) if chosen else None


def engine_target(pod: dict[str, Any], config: DiscoveryConfig) -> EngineTarget | Skipped | None:
    """The engine target `pod` is, why it is skipped, or None: not a candidate, or not
    running (yet, or any more). `pod` is a core/v1 Pod as the API's JSON."""
    meta = pod.get("metadata") or {}
    name = f"{meta.get('namespace')}/{meta.get('name')}"
    annotations = meta.get("annotations") or {}
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
    status = pod.get("status") or {}
    ip = status.get("podIP")
    if meta.get("deletionTimestamp") or status.get("phase") != "Running" or not ip:
        return None
    return EngineTarget(
        url=f"{scheme}://{_host(ip)}:{port}{path}",
        engine_type=engine_type,
        namespace=meta.get("namespace") or "",
        pod=meta.get("name") or "",
        uid=meta.get("uid") or name,
        created=_wall(meta.get("creationTimestamp")) or 0.0,
        started_at=_engine_started(pod, port),
    )
