"""A fake Kubernetes API server: pods only, over TLS on 127.0.0.1, with bearer tokens.

No API server can run here, so this stand-in speaks the real wire format of the two
requests the exporter's discovery makes: `GET /api/v1/pods` (a PodList whose
metadata carries the resourceVersion) and the same with `watch=true` (newline-delimited
JSON events ADDED, MODIFIED, DELETED, BOOKMARK and ERROR, sent chunked). It honours
`fieldSelector` (spec.nodeName, metadata.name, metadata.namespace) and `labelSelector`
(equality and set-based), sends an object that stops or starts matching a watch's
selectors as DELETED or ADDED as the real one does, answers an expired resourceVersion
with an ERROR event carrying a 410 `Status`, ends a watch after `timeoutSeconds`, and
refuses a missing or wrong token with a 401 `Status`. Tests add, change and delete
pods, expire versions, change the token, and stop and restart the server.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import socket
import ssl
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .certificates import Pki

ANNOTATION = "llm-cost-exporter.io"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_object(code: int, reason: str, message: str) -> dict[str, Any]:
    """A meta/v1 Status, as the API server sends for failures."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def pod_object(
    name: str,
    *,
    namespace: str = "inference",
    node: str = "gpu-node-1",
    ip: str | None = "127.0.0.1",
    phase: str = "Running",
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    port: int = 8000,
    started: str | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    """A core/v1 Pod as the API server returns it (a vLLM container serving `port`)."""
    started = started or _now()
    running = phase == "Running"
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": created or _now(),
            "labels": {"app.kubernetes.io/name": "vllm", **(labels or {})},
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "vllm",
                    "image": "vllm/vllm-openai:v0.10.0",
                    "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct"],
                    "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
            "restartPolicy": "Always",
            "serviceAccountName": "default",
        },
        "status": {
            "phase": phase,
            "hostIP": "10.0.0.11",
            **({"podIP": ip, "podIPs": [{"ip": ip}]} if ip and running else {}),
            "startTime": started,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {
                    "type": "Ready",
                    "status": "True" if running else "False",
                    "lastTransitionTime": started,
                },
            ],
            "containerStatuses": [
                {
                    "name": "vllm",
                    "ready": running,
                    "started": running,
                    "restartCount": 0,
                    "image": "vllm/vllm-openai:v0.10.0",
                    "imageID": "",
                    "containerID": "containerd://" + uuid.uuid4().hex,
                    "state": (
                        {"running": {"startedAt": started}}
                        if running
                        else {"waiting": {"reason": "ContainerCreating"}}
                    ),
                }
            ],
        },
    }


def scraped_pod(name: str, port: int, path: str = "/metrics", **pod: Any) -> dict[str, Any]:
    """A pod annotated to be read as an engine on `port` at `path` (see `pod_object`)."""
    annotations = {
        f"{ANNOTATION}/scrape": "true",
        f"{ANNOTATION}/port": str(port),
        f"{ANNOTATION}/path": path,
    }
    return pod_object(name, annotations=annotations, port=port, **pod)


# --- selectors --------------------------------------------------------------------

_SET = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    """Requirements separated by commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in [*parts, current] if p.strip()]


def _requirement_holds(requirement: str, values: dict[str, str]) -> bool:
    found = _SET.match(requirement)
    if found:
        key, op, items = found.groups()
        wanted = {item.strip() for item in items.split(",")}
        return (values.get(key) in wanted) if op == "in" else (values.get(key) not in wanted)
    for op in ("!=", "==", "="):
        if op in requirement:
            key, _, wanted = (s.strip() for s in requirement.partition(op))
            return (values.get(key) != wanted) if op == "!=" else (values.get(key) == wanted)
    if requirement.startswith("!"):
        return requirement[1:].strip() not in values
    return requirement in values


def selector_matches(selector: str | None, values: dict[str, str]) -> bool:
    return all(_requirement_holds(r, values) for r in _split_selector(selector or ""))


def _fields(pod: dict[str, Any]) -> dict[str, str]:
    return {
        "spec.nodeName": pod["spec"].get("nodeName") or "",
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"]["namespace"],
    }


# --- the server ---------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """No access log."""

    def _send_json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        api: FakeKubernetes = self.server.owner
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        api.requests.append(self.path)
        sent = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if sent not in (api.token, api.previous_token):
            self._send_json(401, status_object(401, "Unauthorized", "Unauthorized"))
            return
        if parts.path != "/api/v1/pods":
            self._send_json(404, status_object(404, "NotFound", "the server could not find it"))
            return
        if query.get("watch") in ("true", "1"):
            self._watch(api, query)
        else:
            self._send_json(
                200, api.pod_list(query.get("fieldSelector"), query.get("labelSelector"))
            )

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, api: FakeKubernetes, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        api.watches += 1
        try:
            for event in api.events(query):
                self._chunk(event)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, owner: FakeKubernetes, context: ssl.SSLContext) -> None:
        self.owner = owner
        self.context = context
        super().__init__(("127.0.0.1", port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake in the request's own thread, never in the accepting one."""
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        self.owner.connections.add(tls)
        try:
            super().finish_request(tls, client_address)
        finally:
            self.owner.connections.discard(tls)


class FakeKubernetes:
    """The fake API server; a context manager. `token_file` and `ca_file` are what a
    client configures; `requests` lists every request path received."""

    def __init__(self, directory: Path, token: str = "sa-token-1") -> None:
        pki = Pki(directory / "pki")
        ca = pki.ca("kubernetes-ca")
        server = pki.issue(ca, "kube-apiserver", "IP:127.0.0.1,DNS:localhost")
        self.ca_file = ca.cert
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(server.cert, server.key)
        self.token_file = directory / "token"
        self.token = ""
        self.previous_token: str | None = None
        self.set_token(token)
        self.requests: list[str] = []
        self.connections: set[ssl.SSLSocket] = set()
        self.watches = 0
        """Watch requests answered so far."""
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._log: list[tuple[int, str, dict | None, dict | None]] = []
        """(resourceVersion, type, object before, object after) of every change."""
        self._version = 1000
        self._oldest = 0
        """Versions below this are expired (compacted): watching from one is 410 Gone."""
        self._generation = 0
        """Bumped when the server stops: open watches end."""

    # --- lifecycle --------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def discovery_settings(self, **settings: Any) -> dict[str, Any]:
        """The `kubernetes.discovery` section of an exporter that watches this server."""
        return {
            "enabled": True,
            "api_server": self.url,
            "token_file": str(self.token_file),
            "ca_file": str(self.ca_file),
            **settings,
        }

    def set_token(self, token: str) -> None:
        """A rotation: write `token` to the token file (whole, as the kubelet swaps it in),
        then accept it and, as the API server does until it expires, the one before it; a
        request that read the file just before the rotation is not refused."""
        staged = self.token_file.with_name(self.token_file.name + ".new")
        staged.write_text(token + "\n")
        os.replace(staged, self.token_file)
        self.previous_token, self.token = self.token or None, token

    def start(self) -> FakeKubernetes:
        """Serve (again, on the same port after a stop)."""
        self._server = _Server(self.port, self, self.context)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-kubernetes", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open connection, as a restarting server does."""
        server, self._server = self._server, None
        with self._changed:
            self._generation += 1
            self._changed.notify_all()
        if server is not None:
            server.shutdown()
            server.server_close()
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeKubernetes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the objects ----------------------------------------------------------------

    def _record(self, kind: str, before: dict | None, after: dict | None) -> None:
        """Under the lock: one change, with its new resourceVersion."""
        self._version += 1
        if after is not None:
            after["metadata"]["resourceVersion"] = str(self._version)
        self._log.append((self._version, kind, before, copy.deepcopy(after)))
        self._changed.notify_all()

    def add_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        with self._changed:
            meta = pod["metadata"]
            key = (meta["namespace"], meta["name"])
            assert key not in self._pods, f"pod {key} exists"
            self._pods[key] = pod
            self._record("ADDED", None, pod)
            return copy.deepcopy(pod)

    def modify_pod(self, namespace: str, name: str, change: Any) -> dict[str, Any]:
        """Apply `change(pod)` (it edits the object in place) as one MODIFIED event."""
        with self._changed:
            pod = self._pods[(namespace, name)]
            before = copy.deepcopy(pod)
            change(pod)
            self._record("MODIFIED", before, pod)
            return copy.deepcopy(pod)

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._changed:
            pod = self._pods.pop((namespace, name))
            before = copy.deepcopy(pod)
            self._record("DELETED", before, pod)

    def expire(self) -> None:
        """Compact every version so far: open watches get a 410 ERROR event and end, and a
        watch from an older version is refused the same way."""
        with self._changed:
            self._version += 1
            self._oldest = self._version
            self._changed.notify_all()

    # --- the two requests ---------------------------------------------------------

    @staticmethod
    def _matches(pod: dict | None, fields: str | None, labels: str | None) -> bool:
        return (
            pod is not None
            and selector_matches(fields, _fields(pod))
            and selector_matches(labels, pod["metadata"].get("labels") or {})
        )

    def pod_list(self, fields: str | None, labels: str | None) -> dict[str, Any]:
        with self._changed:
            items = [
                copy.deepcopy(p) for p in self._pods.values() if self._matches(p, fields, labels)
            ]
            return {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._version)},
                "items": items,
            }

    def _expired(self, version: int) -> dict[str, Any]:
        return {
            "type": "ERROR",
            "object": status_object(
                410, "Expired", f"too old resource version: {version} ({self._oldest})"
            ),
        }

    def events(self, query: dict[str, str]):
        """The watch's events, as the API server sends them, until it ends."""
        fields, labels = query.get("fieldSelector"), query.get("labelSelector")
        bookmarks = query.get("allowWatchBookmarks") == "true"
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        with self._changed:
            generation = self._generation
            sent = int(query.get("resourceVersion") or 0)
            current = []
            if sent == 0:  # no version: the current objects first, as ADDED
                current = [copy.deepcopy(p) for p in self._pods.values()]
                sent = self._version
        for pod in current:
            if self._matches(pod, fields, labels):
                yield {"type": "ADDED", "object": pod}
        while True:
            with self._changed:
                if self._generation != generation:
                    return
                if sent < self._oldest:
                    yield self._expired(sent)
                    return
                pending = [entry for entry in self._log if entry[0] > sent]
                if not pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self._changed.wait(min(left, 1.0))
                    if bookmarks and not [e for e in self._log if e[0] > sent]:
                        sent = self._version
                        yield {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": "Pod",
                                "apiVersion": "v1",
                                "metadata": {"resourceVersion": str(sent)},
                            },
                        }
                    continue
            for rv, kind, before, after in pending:
                sent = rv
                was = self._matches(before, fields, labels)
                now = kind != "DELETED" and self._matches(after, fields, labels)
                if kind == "DELETED" and was:
                    yield {"type": "DELETED", "object": after}
                elif was and now:
                    yield {"type": "MODIFIED", "object": after}
                elif now:
                    yield {"type": "ADDED", "object": after}
                elif was:  # no longer matches the selectors: gone, for this watch
                    yield {"type": "DELETED", "object": after}
