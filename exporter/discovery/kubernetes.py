"""The watch of this node's pods: list, then watch from the list's resourceVersion.

The API server filters by node (field selector) and by the label selector; each pod
event becomes an engine target, a skipped pod, or nothing (see pods.py), and the
bounded set of targets is republished. A watch that ends is resumed from the last
version seen; an expired version (410 Gone, as a status or as an ERROR event) is
answered by listing again, which replaces every pod known, so nothing is lost or
counted twice. Any other failure keeps the last known targets, is recorded as the
source's health (reason as a collector's), and is retried with a growing delay; the
credentials and the CA are read again at each reconnection (and the token on a 401).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2
from lightkube import ALL_NS, ApiError, AsyncClient, ConfigError
from lightkube.config.kubeconfig import KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.core.exceptions import NotReadyError
from lightkube.operators import exists
from lightkube.resources.core_v1 import Pod

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


class _Expired(Exception):
    """The watch's resourceVersion is too old: list again."""


def _status_code(error: BaseException) -> int | None:
    if isinstance(error, ApiError) and error.status is not None and error.status.code:
        return int(error.status.code)
    if isinstance(error, httpx2.HTTPStatusError):
        return error.response.status_code
    return None


def failure_reason(error: BaseException) -> tuple[str, str]:
    """The collector reason and one-line message of a failed list or watch."""
    code = _status_code(error)
    message = f"{type(error).__name__}: {error}".splitlines()[0]
    if code in (401, 403):
        return "credentials", f"HTTP {code}: the token was refused ({message})"
    if code is not None:
        return "http_status", f"HTTP {code}: {message}"
    if isinstance(error, ConfigError):
        return "credentials", message
    if isinstance(error, (httpx2.TimeoutException, asyncio.TimeoutError)):
        return "timeout", message
    if isinstance(error, httpx2.TransportError):
        cause = error.__cause__ or error.__context__
        if isinstance(cause, ssl.SSLError) or "CERTIFICATE" in message.upper():
            return "connection", f"TLS: {message}"
        return "connection", message
    return "internal", repr(error)


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

    def _client(self) -> AsyncClient:
        cluster = Cluster(
            server=self.connection.api_server, certificate_auth=self.connection.ca_file
        )
        config = KubeConfig.from_one(
            cluster=cluster, user=User(token_file=self.connection.token_file)
        )
        return AsyncClient(config.get(), timeout=httpx2.Timeout(REQUEST_TIMEOUT))

    def _selectors(self) -> dict[str, object]:
        selectors: dict[str, object] = {"fields": {"spec.nodeName": self.connection.node_name}}
        if self.config.label_selector:
            # The selector as written: a key with the "exists" operator is sent unchanged.
            selectors["labels"] = [(self.config.label_selector, exists())]
        return selectors

    async def run(self) -> None:
        """List and watch until cancelled; failures are recorded and retried."""
        delay = BACKOFF_FIRST
        while True:
            try:
                client = self._client()
            except (ConfigError, OSError, ssl.SSLError, ValueError) as error:
                self._failed("credentials", f"{type(error).__name__}: {error}")
            else:
                try:
                    while True:
                        version = await self._list(client)
                        delay = BACKOFF_FIRST
                        await self._watch(client, version)
                except (httpx2.HTTPError, ConfigError, asyncio.TimeoutError) as error:
                    self._failed(*failure_reason(error))
                except Exception as error:  # a bug must cost the watch a retry, never the daemon
                    log.exception("the pod watch failed unexpectedly")
                    self._failed("internal", repr(error))
                finally:
                    await client.close()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    def _failed(self, reason: str, message: str) -> None:
        self.health.failed(reason, message)

    async def _list(self, client: AsyncClient) -> str:
        started = self._clock()
        listing = client.list(Pod, namespace=ALL_NS, **self._selectors())
        pods = {pod.metadata.uid: engine_target(pod, self.config) async for pod in listing}
        try:
            version = listing.resourceVersion
        except NotReadyError:
            version = ""
        self._pods = pods
        self.synced = True
        self.health.up = True
        self.health.duration_seconds = self._clock() - started
        self._publish()
        return version

    async def _watch(self, client: AsyncClient, version: str) -> None:
        """Apply events until the version expires (return: list again) or a failure."""
        events = client.watch(
            Pod,
            namespace=ALL_NS,
            resource_version=version or None,
            server_timeout=WATCH_SECONDS,
            **self._selectors(),
        )
        try:
            while True:
                try:
                    kind, pod = await asyncio.wait_for(
                        events.__anext__(), WATCH_SECONDS + WATCH_GRACE
                    )
                except (ApiError, httpx2.HTTPStatusError) as error:
                    if _status_code(error) == 410:
                        log.info("pod watch: resourceVersion %s expired; listing again", version)
                        return
                    raise
                if kind == "BOOKMARK":
                    continue
                self.health.up = True
                uid = pod.metadata.uid
                if kind == "DELETED":
                    self._pods.pop(uid, None)
                else:
                    self._pods[uid] = engine_target(pod, self.config)
                self._publish()
        finally:
            await events.aclose()

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
