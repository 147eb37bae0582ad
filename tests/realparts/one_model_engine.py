"""A loopback engine serving one model: a `/metrics` page and JSON documents beside it.

Stands in for `llama-server` and TGI, whose pages name no model: the test sets
the page (status, content type, body) and the documents (`/v1/models`, `/info`)
as the engine would answer them, and reads how often each document was asked for.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field

from realparts.loopback_http import LoopbackHttp, QuietHandler

PROMETHEUS_TEXT = "text/plain; version=0.0.4"


@dataclass
class EngineAnswers:
    """What the engine answers now; tests change it between collections."""

    page: bytes = b""
    status: int = 200
    content_type: str = PROMETHEUS_TEXT
    documents: dict[str, object] = field(default_factory=dict)
    reads: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        answers: EngineAnswers = self.server.owner  # type: ignore[assignment]
        with answers.lock:
            answers.reads[self.path] += 1
            if self.path == "/metrics":
                self._send(answers.status, answers.content_type, answers.page)
            elif self.path in answers.documents:
                document = json.dumps(answers.documents[self.path]).encode()
                self._send(200, "application/json", document)
            else:
                self._send(404, "application/json", b'{"error": "not found"}')

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class OneModelEngine(LoopbackHttp):
    """Serves `answers` on 127.0.0.1; `url` + "/metrics" is its page."""

    def __init__(self, answers: EngineAnswers) -> None:
        super().__init__(_Handler, answers, "one-model-engine")
        self.answers = answers
