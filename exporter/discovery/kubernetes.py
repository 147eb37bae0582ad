"""The watch of this node's pods: list, then watch from the list's resourceVersion.

The API server filters by node (field selector) and by the label selector; each pod
event becomes an engine target, a skipped pod, or nothing (see pods.py), and the
bounded set of targets is republished. A watch that ends is resumed from the last
version seen; an expired version (410 Gone, as a status or as an ERROR event) is
answered by listing again, which replaces every pod known, so nothing is lost or
counted twice. Any other failure keeps the last known targets, is recorded as the
source's health (reason as a collector's), and is retried with a growing delay. The
token file is read for every request (the kubelet rotates it), the CA at each
reconnection. Spoken over the daemon's own HTTP client: the two requests need nothing
more, and a Kubernetes client library would cost the daemon megabytes of memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.credentials import BearerTokenFile
from llm_cost_exporter.config.settings import DiscoveryConfig
from llm_cost_exporter.discovery.connection import Connection
from llm_cost_exporter.discovery.pods import SKIP_REASONS, EngineTarget, Skipped, engine_target

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0
WATCH_SECONDS = 300
"""The API server ends each watch after this long; it is resumed at once."""
WATCH_GRACE = 30.0
"""A watch silent for WATCH_SECONDS and this much more is dead: reconnect."""
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
MAX_EVENT_BYTES = 8 * 1024**2
"""One watch event (one pod) larger than this is refused: the stream is not trusted."""
MAX_LIST_BYTES = 64 * 1024**2


@dataclass
class SourceHealth:
    """The watch's health, drained into the node state by the collection loop."""

    up: bool = False
    duration_seconds: float = 0.0
    """How long the last list took."""
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(reason, message) of each failure since the loop last drained them."""

    def failed(self, reason: str, message: str) -> None:
        self.up = False
        if len(self.failures) < 100:  # the loop drains every interval
            self.failures.append((reason, message))

    def drain(self) -> list[tuple[str, str]]:
        failures, self.failures = self.failures, []
        return failures


class ApiFailure(Exception):
    """The API server answered with a failure (an HTTP status or a Status object)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"HTTP {code}: {message}")
        self.code = code


def failure_reason(error: BaseException) -> tuple[str, str]:
    """The collector reason and one-line message of a failed list or watch."""
    message = (f"{type(error).__name__}: {error}".splitlines() or [""])[0]
    if isinstance(error, CollectorError):  # the token file
        return error.reason, str(error)
    if isinstance(error, ApiFailure):
        if error.code in (401, 403):
            return "credentials", f"the token was refused ({error})"
        return "http_status", str(error)
    if isinstance(error, (aiohttp.ClientSSLError, ssl.SSLError)):
        return "connection", f"TLS: {message}"
    if isinstance(error, asyncio.TimeoutError):
        return "timeout", f"no answer within {REQUEST_TIMEOUT:g}s"
    if isinstance(error, (aiohttp.ClientError, ConnectionError)):
        return "connection", message
    if isinstance(error, OSError):  # the CA file
        return "credentials", message
    if isinstance(error, ValueError):
        return "http_status", f"not a Kubernetes answer: {message}"
    return "internal", repr(error)


def _status_failure(status: Any, fallback: int) -> ApiFailure:
    """The failure a Status object (or an unexpected body) describes."""
    if isinstance(status, dict):
        code = status.get("code") if isinstance(status.get("code"), int) else fallback
        return ApiFailure(code, str(status.get("message") or status.get("reason") or ""))
    return ApiFailure(fallback, "unexpected answer")


class _Api:
    """The two requests, authenticated and verified, over one session."""

    def __init__(self, connection: Connection, session: aiohttp.ClientSession) -> None:
        self.connection = connection
        self.session = session
        self.tls: ssl.SSLContext | None = None
        if connection.api_server.startswith("https:"):
            self.tls = ssl.create_default_context(cafile=connection.ca_file)

    def _headers(self) -> dict[str, str]:
        token = BearerTokenFile(self.connection.token_file)
        return {"Authorization": token.authorization(), "Accept": "application/json"}

    def _url(self, selector: str | None, **params: str) -> str:
        query = {"fieldSelector": f"spec.nodeName={self.connection.node_name}", **params}
        if selector:
            query["labelSelector"] = selector
        encoded = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        return f"{self.connection.api_server}/api/v1/pods?{encoded}"

    async def _failure(self, response: aiohttp.ClientResponse) -> ApiFailure:
        try:
            status = json.loads(await response.content.read(64 * 1024))
        except ValueError:
            status = None
        return _status_failure(status, response.status)

    async def list(self, selector: str | None) -> tuple[list[dict[str, Any]], str]:
        """The pods and the list's resourceVersion."""
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        url = self._url(selector)
        async with self.session.get(
            url, headers=self._headers(), ssl=self.tls or True, timeout=timeout
        ) as response:
            if response.status != 200:
                raise await self._failure(response)
            body = await response.content.read(MAX_LIST_BYTES + 1)
        if len(body) > MAX_LIST_BYTES:
            raise ValueError(f"a pod list over {MAX_LIST_BYTES} bytes")
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise ValueError("not a PodList")
        return data["items"], str((data.get("metadata") or {}).get("resourceVersion") or "")

    async def watch(self, selector: str | None, version: str) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch from `version`, until the server ends it."""
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=REQUEST_TIMEOUT, sock_read=WATCH_SECONDS + WATCH_GRACE
        )
        params = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        url = self._url(selector, **params)
        async with self.session.get(
            url, headers=self._headers(), ssl=self.tls or True, timeout=timeout
        ) as response:
            if response.status != 200:
                raise await self._failure(response)
            pending = b""
            async for piece in response.content.iter_any():
                pending += piece
                *lines, pending = pending.split(b"\n")
                if len(pending) > MAX_EVENT_BYTES:
                    raise ValueError(f"a watch event over {MAX_EVENT_BYTES} bytes")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
                            raise ValueError("not a watch event")
                        yield event


class PodWatch:
    """This node's engine pods, kept current: `targets` (by URL), `skipped` by reason."""

    def __init__(
        self,
        config: DiscoveryConfig,
        connection: Connection,
        limit: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`limit`: the most pods read; later pods beyond it are skipped (too_many)."""
        self.config = config
        self.connection = connection
        self.limit = limit
        self._clock = clock
        self.targets: dict[str, EngineTarget] = {}
        self.skipped: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)
        self.synced = False
        """A list has succeeded: `targets` is the node's whole set, not a start."""
        self.health = SourceHealth()
        self._pods: dict[str, EngineTarget | Skipped | None] = {}
        """Every pod the API server sent, by uid: what it is to us."""
        self._logged: dict[str, str] = {}
        """Skip reason last logged per pod: one line when a pod starts being skipped."""

    @property
    def target(self) -> str:
        """The `target` label of the watch's health series."""
        return self.connection.api_server

    async def run(self) -> None:
        """List and watch until cancelled; failures are recorded and retried."""
        delay = BACKOFF_FIRST
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT)
        while True:
            try:
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    api = _Api(self.connection, session)
                    while True:
                        version = await self._list(api)
                        delay = BACKOFF_FIRST
                        await self._watch(api, version)
            except (
                ApiFailure,
                CollectorError,
                aiohttp.ClientError,
                OSError,
                ValueError,
                asyncio.TimeoutError,
            ) as error:
                self.health.failed(*failure_reason(error))
            except Exception as error:  # a bug must cost the watch a retry, never the daemon
                log.exception("the pod watch failed unexpectedly")
                self.health.failed("internal", repr(error))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _list(self, api: _Api) -> str:
        started = self._clock()
        items, version = await api.list(self.config.label_selector)
        pods = {}
        for pod in items:
            if isinstance(pod, dict):
                pods[(pod.get("metadata") or {}).get("uid")] = engine_target(pod, self.config)
        self._pods = pods
        self.synced = True
        self.health.up = True
        self.health.duration_seconds = self._clock() - started
        self._publish()
        return version

    async def _watch(self, api: _Api, version: str) -> None:
        """Apply events, watching again from the last version whenever the server ends
        a watch, until the version expires (return: list again) or a failure."""
        while True:
            async for event in api.watch(self.config.label_selector, version):
                kind, pod = event.get("type"), event["object"]
                if kind == "ERROR":
                    failure = _status_failure(pod, 500)
                    if failure.code == 410:
                        log.info("pod watch: resourceVersion %s expired; listing again", version)
                        return
                    raise failure
                meta = pod.get("metadata") or {}
                version = str(meta.get("resourceVersion") or version)
                self.health.up = True
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    self._pods.pop(meta.get("uid"), None)
                elif kind in ("ADDED", "MODIFIED"):
                    self._pods[meta.get("uid")] = engine_target(pod, self.config)
                self._publish()

    def _publish(self) -> None:
        """Recompute the targets (bounded, older pods first) and the skipped counts."""
        outcomes: dict[str, EngineTarget | Skipped] = {}
        targets: dict[str, EngineTarget] = {}
        running = [(uid, o) for uid, o in self._pods.items() if isinstance(o, EngineTarget)]
        for uid, target in sorted(running, key=lambda item: (item[1].created, item[1].pod)):
            name = f"pod {target.namespace}/{target.pod}"
            if target.url in targets:
                other = targets[target.url]
                outcomes[uid] = Skipped(
                    "duplicate", f"{name}: {target.url} is read for {other.namespace}/{other.pod}"
                )
            elif len(targets) >= self.limit:
                outcomes[uid] = Skipped(
                    "too_many", f"{name}: the node already has {self.limit} engines to read"
                )
            else:
                targets[target.url] = outcomes[uid] = target
        outcomes.update((uid, o) for uid, o in self._pods.items() if isinstance(o, Skipped))
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        for uid, outcome in outcomes.items():
            if isinstance(outcome, Skipped):
                skipped[outcome.reason] += 1
                if self._logged.get(uid) != outcome.reason:
                    log.warning("%s; skipped (llmcost_discovery_skipped_pods)", outcome.message)
                    self._logged[uid] = outcome.reason
            else:
                self._logged.pop(uid, None)
        for uid in [uid for uid in self._logged if uid not in outcomes]:
            del self._logged[uid]
        self._log_changes(targets)
        self.targets, self.skipped = targets, skipped

    def _log_changes(self, targets: dict[str, EngineTarget]) -> None:
        for url, target in targets.items():
            if url not in self.targets:
                log.info(
                    "engine pod %s/%s: reading %s (%s)",
                    target.namespace,
                    target.pod,
                    url,
                    target.engine_type,
                )
        for url, target in self.targets.items():
            if url not in targets:
                log.info(
                    "engine pod %s/%s at %s: no longer read", target.namespace, target.pod, url
                )
