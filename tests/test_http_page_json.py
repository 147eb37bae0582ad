"""HttpPage.read_json against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from realparts.loopback_http import LoopbackHttp, QuietHandler
from realparts.timeouts import scaled

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.credentials import BasicAuth
from llm_cost_exporter.collectors.http_client import HttpClient
from llm_cost_exporter.collectors.http_page import HttpPage

MAX_BYTES = 4096
MODELS = {"object": "list", "data": [{"id": "stories260K", "object": "model"}]}


class Server:
    """What the handler serves, and what it saw."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        self.paths: list[str] = []
        self.release = threading.Event()


class Handler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        owner: Server = self.server.owner  # type: ignore[assignment]
        owner.paths.append(self.path)
        owner.authorizations.append(self.headers.get("Authorization"))
        if self.path.endswith("/slow"):
            owner.release.wait(scaled(30))
        bodies = {
            "/v1/models": ("application/json", json.dumps(MODELS).encode()),
            "/llama/v1/models": ("application/json", json.dumps(MODELS).encode()),
            "/html": ("text/html", b"<html><body>Welcome to nginx!</body></html>"),
            "/big": ("application/json", b'{"pad": "' + b"x" * (2 * MAX_BYTES) + b'"}'),
            "/slow": ("application/json", b"{}"),
        }
        if self.path not in bodies:
            self.send_error(404)
            return
        content_type, body = bodies[self.path]
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Server, str]]:
    owner = Server()
    with LoopbackHttp(Handler, owner, "json-documents") as http:
        yield owner, http.url
        owner.release.set()


@pytest.fixture
async def session() -> AsyncIterator[HttpClient]:
    async with HttpClient() as session:
        yield session


def page(session: HttpClient, url: str, timeout: float = 10.0, **kw) -> HttpPage:
    return HttpPage(session, url, scaled(timeout), MAX_BYTES, **kw)


async def test_reads_a_json_document_beside_the_page(server, session) -> None:
    _, url = server
    assert await page(session, f"{url}/metrics").read_json("/v1/models") == MODELS


async def test_a_page_under_a_prefix_finds_its_documents_under_it(server, session) -> None:
    owner, url = server
    assert await page(session, f"{url}/llama/metrics").read_json("/v1/models") == MODELS
    assert owner.paths[-1] == "/llama/v1/models"


async def test_a_missing_document_is_an_http_status_failure(server, session) -> None:
    _, url = server
    with pytest.raises(CollectorError) as error:
        await page(session, f"{url}/metrics").read_json("/info")
    assert error.value.reason == "http_status" and "404" in str(error.value)


async def test_a_body_that_is_not_json_is_a_parse_failure(server, session) -> None:
    _, url = server
    with pytest.raises(CollectorError) as error:
        await page(session, f"{url}/metrics").read_json("/html")
    assert error.value.reason == "parse" and "JSON" in str(error.value)


async def test_a_document_over_the_size_limit_is_refused(server, session) -> None:
    _, url = server
    with pytest.raises(CollectorError) as error:
        await page(session, f"{url}/metrics").read_json("/big")
    assert error.value.reason == "too_large" and str(MAX_BYTES) in str(error.value)


async def test_the_page_credentials_are_sent_with_the_document_request(server, session) -> None:
    owner, url = server
    credentials = BasicAuth("scraper", "s3cret")
    await page(session, f"{url}/metrics", credentials=credentials).read_json("/v1/models")
    assert owner.authorizations[-1] == credentials.authorization()
    await page(session, f"{url}/metrics").read_json("/v1/models")
    assert owner.authorizations[-1] is None


async def test_a_document_that_does_not_come_in_time_is_a_timeout(server, session) -> None:
    _, url = server
    with pytest.raises(CollectorError) as error:
        await page(session, f"{url}/metrics", timeout=0.3).read_json("/slow")
    assert error.value.reason == "timeout"


async def test_a_closed_port_is_a_connection_failure(session) -> None:
    with LoopbackHttp(Handler, Server()) as http:
        url = http.url
    with pytest.raises(CollectorError) as error:
        await page(session, f"{url}/metrics").read_json("/v1/models")
    assert error.value.reason == "connection"
