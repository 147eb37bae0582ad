"""The web configuration file (TLS, basic auth, headers) and the server's guards.

The first part reads files and builds contexts in-process; the second runs the
real daemon over HTTPS and scrapes it with a real Prometheus (`realparts`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
import yaml
from conftest import minimal_config_dict
from daemon_http import serving
from realparts import PrometheusServer, free_port
from realparts.certificates import Issued, Pki
from realparts.exporter_process import ExporterProcess
from realparts.timeouts import scaled

from llm_cost_exporter.cli import main
from llm_cost_exporter.config import ConfigError
from llm_cost_exporter.daemon import basic_auth, fair_queue, http_connection
from llm_cost_exporter.daemon.basic_auth import BasicAuth, Verdict
from llm_cost_exporter.daemon.client_errors import RateLimitedLog
from llm_cost_exporter.daemon.connections import MAX_CONNECTIONS, connection_limit
from llm_cost_exporter.daemon.fair_queue import CONGESTION, EAGER_STREAK, FairQueue
from llm_cost_exporter.daemon.tls_context import build_server_context, peer_has_allowed_san
from llm_cost_exporter.daemon.web_config import WebConfig, load_web_config
from llm_cost_exporter.daemon.web_reload import LiveWebConfig
from llm_cost_exporter.outputs.prometheus import PrometheusPage

PASSWORD = "s3cret"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued]:
    """A server CA and certificate, a client CA with a client, and an untrusted client."""
    made = Pki(tmp_path_factory.mktemp("pki"))
    server_ca, client_ca, stranger_ca = made.ca("server-ca"), made.ca("client-ca"), made.ca("x")
    return {
        "server_ca": server_ca,
        "server": made.issue(server_ca, "server", "IP:127.0.0.1,DNS:localhost"),
        "server2": made.issue(server_ca, "server2", "IP:127.0.0.1,DNS:localhost"),
        "client_ca": client_ca,
        "client": made.issue(client_ca, "client", "DNS:prometheus", client=True),
        "stranger": made.issue(stranger_ca, "stranger", "DNS:prometheus", client=True),
    }


def write(path: Path, data: object) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def rewrite(path: Path, data: bytes) -> None:
    """Replace a file's content a second later than its last change, as any real edit or
    rotation is (a file's time stamp ticks coarser than a test runs)."""
    before = path.stat().st_mtime_ns if path.exists() else time.time_ns()
    path.write_bytes(data)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def tls_section(pki: dict[str, Issued], **extra: object) -> dict[str, object]:
    return {
        "cert_file": str(pki["server"].cert),
        "key_file": str(pki["server"].key),
        **extra,
    }


# -- reading the file -----------------------------------------------------------------


def test_a_full_file_is_read_as_prometheus_exporters_read_it(tmp_path, pki) -> None:
    (tmp_path / "certs").mkdir()
    for name in ("server", "client_ca"):
        (tmp_path / "certs" / f"{name}.crt").write_bytes(pki[name].cert.read_bytes())
    (tmp_path / "certs" / "server.key").write_bytes(pki["server"].key.read_bytes())
    path = write(
        tmp_path / "web.yml",
        {
            "tls_server_config": {
                "cert_file": "certs/server.crt",  # relative to the file, as there
                "key_file": "certs/server.key",
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": "certs/client_ca.crt",
                "client_allowed_sans": ["prometheus"],
                "min_version": "TLS13",
                "cipher_suites": [
                    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                    "TLS_AES_128_GCM_SHA256",
                ],
                "curve_preferences": ["X25519"],
            },
            "http_server_config": {
                "http2": False,
                "headers": {"X-Frame-Options": "deny", "Strict-Transport-Security": "max-age=1"},
            },
            "basic_auth_users": {"prometheus": HASH},
            "rate_limit": {"interval": "100ms", "burst": 5},
        },
    )
    config = load_web_config(path)
    tls = config.tls
    assert tls is not None
    assert tls.cert_file == tmp_path / "certs" / "server.crt"
    assert tls.client_ca_file == tmp_path / "certs" / "client_ca.crt"
    assert tls.client_auth_type == "RequireAndVerifyClientCert"
    assert (tls.min_version, tls.max_version) == ("TLS13", "TLS13")
    assert tls.openssl_ciphers == ("ECDHE-RSA-AES128-GCM-SHA256",)  # TLS 1.3 names: fixed
    assert tls.curve == "X25519"
    assert config.users == {"prometheus": HASH.encode()}
    assert config.headers == {"X-Frame-Options": "deny", "Strict-Transport-Security": "max-age=1"}
    assert (config.rate_limit.interval, config.rate_limit.burst) == (0.1, 5)
    context = build_server_context(tls, path)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_an_empty_file_and_an_empty_tls_section_mean_plain_http(tmp_path) -> None:
    assert load_web_config(write(tmp_path / "a.yml", "")) == WebConfig()
    assert load_web_config(write(tmp_path / "b.yml", {"tls_server_config": {}})).tls is None


SERVER = {"cert_file": "@server.crt", "key_file": "@server.key"}
BAD_FILES = [
    ({"tls": {}}, "tls: unknown field"),
    ({"tls_server_config": {"cert_file": "x", "keyfile": "y"}}, "tls_server_config.keyfile"),
    ({"tls_server_config": {"cert_file": "missing.crt"}}, "tls_server_config.cert_file"),
    ({"tls_server_config": {"cert_file": "@server.crt"}}, "missing one of key or key_file"),
    ({"tls_server_config": {**SERVER, "cert": "PEM"}}, "set cert or cert_file, not both"),
    ({"tls_server_config": {**SERVER, "client_auth_type": "Always"}}, "client_auth_type"),
    (
        {"tls_server_config": {**SERVER, "client_auth_type": "RequireAnyClientCert"}},
        "client_auth_type: RequireAnyClientCert cannot be honoured",
    ),
    (
        {"tls_server_config": {**SERVER, "client_auth_type": "RequestClientCert"}},
        "RequestClientCert cannot be honoured",
    ),
    (
        {"tls_server_config": {**SERVER, "client_ca_file": "@client_ca.crt"}},
        "client CAs are configured but client_auth_type is NoClientCert",
    ),
    (
        {"tls_server_config": {**SERVER, "client_allowed_sans": ["a"]}},
        "client_allowed_sans: needs a verified client certificate",
    ),
    ({"tls_server_config": {**SERVER, "min_version": "TLS14"}}, "min_version: 'TLS14'"),
    (
        {"tls_server_config": {**SERVER, "min_version": "TLS13", "max_version": "TLS12"}},
        "min_version: TLS13 is above max_version TLS12",
    ),
    ({"tls_server_config": {**SERVER, "cipher_suites": ["RC4"]}}, "unknown cipher suite"),
    ({"tls_server_config": {**SERVER, "curve_preferences": ["P1"]}}, "unknown curve"),
    (
        {"tls_server_config": {**SERVER, "curve_preferences": ["X25519", "CurveP256"]}},
        "curve_preferences: Python's ssl can offer one curve only",
    ),
    ({"basic_auth_users": {"alice": "plaintext"}}, "basic_auth_users.alice: expected a bcrypt"),
    ({"basic_auth_users": ["alice"]}, "basic_auth_users: expected a mapping"),
    ({"http_server_config": {"http2": True}}, "http_server_config.http2: HTTP/2 is not served"),
    ({"http_server_config": {"headers": {"Server": "x"}}}, "headers.Server: cannot be configured"),
    (
        {"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
        "headers.X-Frame-Options: 'allow' is not one of deny, sameorigin",
    ),
    ({"rate_limit": {"interval": "1s"}}, "rate_limit.burst"),
    ({"rate_limit": {"interval": "soon", "burst": 1}}, "rate_limit.interval"),
    ("tls_server_config: [unclosed", "invalid YAML"),
    ("- a list", "the top level must be a mapping"),
]


def _materialize(spec: object, pki: dict[str, Issued]) -> object:
    """`"@server.crt"` and the like stand for the files of the test PKI."""
    if isinstance(spec, dict):
        return {k: _materialize(v, pki) for k, v in spec.items()}
    if isinstance(spec, str) and spec.startswith("@"):
        name, suffix = spec[1:].rsplit(".", 1)
        return str(pki[name].cert if suffix == "crt" else pki[name].key)
    return spec


@pytest.mark.parametrize(("spec", "expected"), BAD_FILES, ids=[e for _, e in BAD_FILES])
def test_every_bad_file_is_one_line_naming_the_field(tmp_path, pki, spec, expected) -> None:
    path = write(tmp_path / "web.yml", _materialize(spec, pki))
    with pytest.raises(ConfigError) as error:
        load_web_config(path)
    message = str(error.value)
    assert expected in message
    assert message.startswith(str(path))
    assert "\n" not in message


def test_a_key_that_does_not_match_its_certificate_names_the_field(tmp_path, pki) -> None:
    path = write(
        tmp_path / "web.yml",
        {"tls_server_config": {"cert_file": str(pki["server"].cert),
                               "key_file": str(pki["client"].key)}},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"tls_server_config.cert_file: cannot load"):
        build_server_context(load_web_config(path).tls, path)


def test_inline_certificate_and_key_serve_as_the_files_do(tmp_path, pki) -> None:
    path = write(
        tmp_path / "web.yml",
        {
            "tls_server_config": {
                "cert": pki["server"].cert.read_text(),
                "key": pki["server"].key.read_text(),
                "client_ca": pki["client_ca"].cert.read_text(),
                "client_auth_type": "VerifyClientCertIfGiven",
            }
        },
    )
    context = build_server_context(load_web_config(path).tls, path)
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "client-ca"),),)]


def test_allowed_sans_match_exactly_and_ips_in_canonical_form() -> None:
    cert = {"subjectAltName": (("DNS", "prometheus"), ("IP Address", "2001:DB8:0:0:0:0:0:1\n"))}
    assert peer_has_allowed_san(cert, ("prometheus",))
    assert peer_has_allowed_san(cert, ("2001:db8::1",))
    assert not peer_has_allowed_san(cert, ("prometheus.example",))
    assert not peer_has_allowed_san({}, ("prometheus",))


def test_a_bad_web_config_file_exits_2_with_one_line(tmp_path, capsys, monkeypatch) -> None:
    config = write(tmp_path / "c.yml", minimal_config_dict())
    web = write(tmp_path / "web.yml", {"http_server_config": {"http2": True}})
    assert main(["--config", str(config), "--web.config.file", str(web)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "http_server_config.http2" in err
    monkeypatch.setenv("LLMCOST_WEB_CONFIG_FILE", str(tmp_path / "missing.yml"))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.yml: cannot read" in err


def test_check_config_validates_the_web_configuration_as_the_daemon_would(
    tmp_path, pki, capsys
) -> None:
    config = write(tmp_path / "c.yml", minimal_config_dict())
    web = write(
        tmp_path / "web.yml",
        {"tls_server_config": tls_section(pki), "basic_auth_users": {"prometheus": HASH}},
    )
    assert main(["check-config", str(config), "--web.config.file", str(web)]) == 0
    out = capsys.readouterr().out
    assert f"# Web: {web}: valid; TLS, basic auth for 1 user(s)." in out
    assert main(["check-config", str(config)]) == 0
    assert "# Web: plain HTTP, no authentication" in capsys.readouterr().out
    unmatched = tls_section(pki, key_file=str(pki["client"].key))
    write(web, {"tls_server_config": unmatched})
    assert main(["check-config", str(config), "--web.config.file", str(web)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "tls_server_config" in captured.err
    assert "Traceback" not in captured.err


# -- reloading ------------------------------------------------------------------------


def test_a_changed_file_is_used_and_a_broken_one_keeps_the_last_good(tmp_path, caplog) -> None:
    path = write(tmp_path / "web.yml", {"basic_auth_users": {"alice": HASH}})
    live = LiveWebConfig(path)
    assert set(live.current().users) == {"alice"}
    rewrite(path, yaml.safe_dump({"basic_auth_users": {"bob": HASH}}).encode())
    assert set(live.current().users) == {"bob"}
    caplog.clear()
    rewrite(path, yaml.safe_dump({"basic_auth_users": {"carol": "not a hash"}}).encode())
    for _ in range(5):
        assert set(live.current().users) == {"bob"}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "basic_auth_users.carol" in errors[0].getMessage()
    rewrite(
        path, yaml.safe_dump({"tls_server_config": {}, "basic_auth_users": {"dave": HASH}}).encode()
    )
    assert set(live.current().users) == {"dave"}


def test_tls_cannot_be_turned_on_by_a_reload(tmp_path, pki, caplog) -> None:
    path = write(tmp_path / "web.yml", {})
    live = LiveWebConfig(path)
    rewrite(path, yaml.safe_dump({"tls_server_config": tls_section(pki)}).encode())
    assert live.current().tls is None and not live.tls_enabled
    assert "turning TLS on or off takes a restart" in caplog.text


def test_a_rotated_certificate_gives_a_new_context_and_a_bad_one_keeps_the_old(
    tmp_path, pki, caplog
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pki["server"].cert.read_bytes())
    key.write_bytes(pki["server"].key.read_bytes())
    live = LiveWebConfig(write(tmp_path / "web.yml", {"tls_server_config": {
        "cert_file": "tls.crt", "key_file": "tls.key"}}))  # fmt: skip
    first = live.ssl_context()
    assert live.ssl_context() is first  # nothing changed: nothing rebuilt
    rewrite(cert, pki["server2"].cert.read_bytes())  # the key does not match yet
    assert live.ssl_context() is first
    assert "cannot load the certificate and key" in caplog.text
    rewrite(key, pki["server2"].key.read_bytes())
    rotated = live.ssl_context()
    assert rotated is not first
    assert _served_certificate_cn(rotated, pki) == "server2"


def _served_certificate_cn(server: ssl.SSLContext, pki: dict[str, Issued]) -> str:
    """Handshake in memory with `server`; the common name of the certificate it shows."""
    client = ssl.create_default_context(cafile=str(pki["server_ca"].cert))
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client_side, server_side):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    return dict(field[0] for field in client_side.getpeercert()["subject"])["commonName"]


# -- basic auth -----------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_basic_auth_verifies_once_per_credential(monkeypatch) -> None:
    calls = []
    real = basic_auth._checkpw
    monkeypatch.setattr(
        basic_auth, "_checkpw", lambda *a: calls.append(a[1]) or real(*a)
    )  # counts, and still runs bcrypt
    auth, users = BasicAuth(), {"alice": HASH.encode()}
    assert await auth.check(_basic("alice", PASSWORD), users) is Verdict.GRANTED
    assert await auth.check(_basic("alice", PASSWORD), users) is Verdict.GRANTED
    assert len(calls) == 1
    assert await auth.check(_basic("alice", "wrong"), users) is Verdict.REFUSED
    assert await auth.check(_basic("alice", "wrong"), users) is Verdict.REFUSED
    assert len(calls) == 2
    # An unknown user costs a bcrypt too (no timing difference), and is refused.
    assert await auth.check(_basic("mallory", PASSWORD), users) is Verdict.REFUSED
    assert len(calls) == 3 and calls[-1] != HASH.encode()
    # A changed hash is a new credential: verified again, not taken from memory.
    other = bcrypt.hashpw(b"new", bcrypt.gensalt(4))
    assert await auth.check(_basic("alice", PASSWORD), {"alice": other}) is Verdict.REFUSED
    for header in (None, "", "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"no").decode()):
        assert await auth.check(header, users) is Verdict.MISSING


async def test_wrong_passwords_queue_up_to_a_bound_then_are_answered_busy() -> None:
    auth, users = BasicAuth(), {"alice": HASH.encode()}
    async with auth._lock:  # a verification under way
        waiting = [
            asyncio.ensure_future(auth.check(_basic("alice", f"guess{i}"), users))
            for i in range(basic_auth.MAX_WAITING)
        ]
        await asyncio.sleep(0)
        assert await auth.check(_basic("alice", "one more"), users) is Verdict.BUSY
    assert set(await asyncio.gather(*waiting)) == {Verdict.REFUSED}


# -- logging, queueing, limits --------------------------------------------------------


async def test_client_errors_are_one_line_then_one_summary_per_interval(caplog) -> None:
    now = [0.0]
    errors = RateLimitedLog(logging.getLogger("test.client-errors"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.client-errors"):
        for i in range(1000):
            errors.note("bad request" if i % 2 else "tls handshake", f"error {i}")
        now[0] = 10.0
        errors.flush()
        errors.note("bad request", "error after the interval")  # held: a line was just written
        errors.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "client error: error 0"
    assert lines[1] == (
        "client errors: 999 more in the last 10s (bad request: 500, tls handshake: 499); "
        "last: error 999"
    )
    assert lines[2].startswith("client errors: 1 more") and len(lines) == 3


async def test_the_queue_serves_the_connection_answered_longest_ago_first() -> None:
    queue, order = FairQueue(), []

    async def request(name: str, served_at: float, back_to_back: int = 0) -> None:
        await queue.acquire(served_at, back_to_back)
        order.append(name)
        await asyncio.sleep(0)
        queue.release()

    await asyncio.gather(
        request("hammer-1", 99.0), request("hammer-2", 99.5), request("scraper", 85.0)
    )
    assert order == ["scraper", "hammer-1", "hammer-2"]


async def test_back_to_back_clients_are_slowed_only_under_congestion(monkeypatch) -> None:
    monkeypatch.setattr(fair_queue, "EAGER_PENALTY", 3600.0)  # slowed means: not served now
    queue, loop = FairQueue(), asyncio.get_running_loop()
    await asyncio.wait_for(queue.acquire(loop.time(), EAGER_STREAK), scaled(30))  # alone
    queue.release()
    for _ in range(CONGESTION + 1):  # one served, CONGESTION waiting: congestion
        asyncio.ensure_future(queue.acquire(loop.time() - 1, 0))
    await asyncio.sleep(0)
    eager = asyncio.ensure_future(queue.acquire(loop.time(), EAGER_STREAK))
    first_time = asyncio.ensure_future(queue.acquire(loop.time(), 0))
    for _ in range(10 * CONGESTION):  # each holder of the slot done in turn
        if first_time.done():
            break
        await asyncio.sleep(0)
        queue.release()
    assert first_time.done()
    assert not eager.done()  # still held back, though it came before
    eager.cancel()


def test_the_connection_limit_stays_below_the_descriptor_limit() -> None:
    assert connection_limit(256, 12) == 256 - 12 - 64 - 32
    assert connection_limit(1024, 12) == MAX_CONNECTIONS
    assert connection_limit(100, 12) == 8  # a floor, with a warning at start


# -- the real daemon over HTTPS, scraped by a real Prometheus ---------------------------


def _daemon_config() -> dict[str, object]:
    """A node whose one engine is down: the page still has every llmcost_ family."""
    return minimal_config_dict(engines=[{"url": f"http://127.0.0.1:{free_port()}/metrics"}])


def _client(pki: dict[str, Issued], cert: str | None = None, **versions) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["server_ca"].cert))
    if cert is not None:
        context.load_cert_chain(str(pki[cert].cert), str(pki[cert].key))
    for name, version in versions.items():
        setattr(context, name, version)
    return context


def _get(url: str, context: ssl.SSLContext, auth: str | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=scaled(10), context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _tls_job(name: str, pki: dict[str, Issued], cert: str | None = None, **extra) -> dict:
    tls = {"ca_file": str(pki["server_ca"].cert)}
    if cert is not None:
        tls |= {"cert_file": str(pki[cert].cert), "key_file": str(pki[cert].key)}
    return {"job_name": name, "scheme": "https", "tls_config": tls, **extra}


def _health(prometheus: PrometheusServer) -> dict[str, tuple[str, str]]:
    """Each job's target health and last error, once every target was scraped."""
    targets = prometheus.wait_until_scraped()
    return {t["labels"]["job"]: (t["health"], t.get("lastError", "")) for t in targets}


def _port_jobs(port: int, jobs: list[dict]) -> list[dict]:
    return [{**job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]} for job in jobs]


@pytest.mark.realparts
def test_prometheus_scrapes_over_https_with_basic_auth(tmp_path, pki) -> None:
    web = write(
        tmp_path / "web.yml",
        {
            "tls_server_config": tls_section(pki),
            "basic_auth_users": {"prometheus": HASH},
            "http_server_config": {"headers": {"X-Content-Type-Options": "nosniff"}},
        },
    )
    client = _client(pki)
    with ExporterProcess(
        _daemon_config(), tmp_path, "--web.config.file", str(web), tls_client=client
    ) as exporter:
        jobs = [
            _tls_job("no-credentials", pki),
            _tls_job("wrong-password", pki,
                     basic_auth={"username": "prometheus", "password": "wrong"}),
            _tls_job("unknown-user", pki, basic_auth={"username": "root", "password": PASSWORD}),
        ]  # fmt: skip
        with PrometheusServer(
            [f"127.0.0.1:{exporter.port}"],
            scheme="https",
            tls_config={"ca_file": str(pki["server_ca"].cert)},
            basic_auth={"username": "prometheus", "password": PASSWORD},
            extra_scrape_configs=_port_jobs(exporter.port, jobs),
        ) as prometheus:
            health = _health(prometheus)
            assert health["realparts"] == ("up", "")
            for job in ("no-credentials", "wrong-password", "unknown-user"):
                assert health[job][0] == "down" and "401" in health[job][1], health
            count = prometheus.wait_for_scalar(
                'count({__name__=~"llmcost_.+", job="realparts"})', lambda v: v > 10
            )
            assert count > 10
        status, headers, body = _get(exporter.url + "/healthz", client)  # open, for probes
        assert (status, body) == (200, b"ok\n")
        status, headers, _ = _get(exporter.url + "/", client)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        status, headers, body = _get(
            exporter.url + "/metrics", client, _basic("prometheus", PASSWORD)
        )
        assert status == 200 and b"llmcost_" in body
        assert headers["Server"] == "llm-cost-exporter"
        assert headers["X-Content-Type-Options"] == "nosniff"
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP: no answer
            urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/healthz", timeout=scaled(10))
        assert "Traceback" not in exporter.log()


@pytest.mark.realparts
def test_client_certificates_are_required_and_verified(tmp_path, pki) -> None:
    made = Pki(tmp_path / "more")
    other_san = made.issue(pki["client_ca"], "other", "DNS:someone-else", client=True)
    pki = {**pki, "other": other_san}
    web = write(
        tmp_path / "web.yml",
        {
            "tls_server_config": tls_section(
                pki,
                client_auth_type="RequireAndVerifyClientCert",
                client_ca_file=str(pki["client_ca"].cert),
                client_allowed_sans=["prometheus"],
            )
        },
    )
    with ExporterProcess(
        _daemon_config(), tmp_path, "--web.config.file", str(web), tls_client=_client(pki, "client")
    ) as exporter:
        jobs = [
            _tls_job("no-certificate", pki),
            _tls_job("untrusted-certificate", pki, "stranger"),
            _tls_job("san-not-allowed", pki, "other"),
        ]
        with PrometheusServer(
            [f"127.0.0.1:{exporter.port}"],
            scheme="https",
            tls_config={
                "ca_file": str(pki["server_ca"].cert),
                "cert_file": str(pki["client"].cert),
                "key_file": str(pki["client"].key),
            },
            extra_scrape_configs=_port_jobs(exporter.port, jobs),
        ) as prometheus:
            health = _health(prometheus)
            assert health["realparts"] == ("up", ""), health
            for job in ("no-certificate", "untrusted-certificate", "san-not-allowed"):
                assert health[job][0] == "down", health
        for cert in (None, "stranger", "other"):
            with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
                _get(exporter.url + "/healthz", _client(pki, cert))
        assert _get(exporter.url + "/healthz", _client(pki, "client"))[0] == 200
        assert "Traceback" not in exporter.log()


@pytest.mark.realparts
def test_min_version_rotation_and_reload_without_restart(tmp_path, pki, caplog) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pki["server"].cert.read_bytes())
    key.write_bytes(pki["server"].key.read_bytes())
    settings = {
        "tls_server_config": {
            "cert_file": "tls.crt",
            "key_file": "tls.key",
            "min_version": "TLS13",
        },
        "basic_auth_users": {"prometheus": HASH},
    }
    web = write(tmp_path / "web.yml", settings)
    client = _client(pki)
    with ExporterProcess(
        _daemon_config(), tmp_path, "--web.config.file", str(web), tls_client=client
    ) as exporter:
        tls12 = _client(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises((ssl.SSLError, urllib.error.URLError)):
            _get(exporter.url + "/healthz", tls12)
        assert _peer_cn(exporter.port, client) == "server"
        rewrite(cert, pki["server2"].cert.read_bytes())
        rewrite(key, pki["server2"].key.read_bytes())
        assert _peer_cn(exporter.port, client) == "server2"  # the next connection, no restart

        new_hash = bcrypt.hashpw(b"rotated", bcrypt.gensalt(4)).decode()
        settings["basic_auth_users"] = {"prometheus": new_hash}
        rewrite(web, yaml.safe_dump(settings).encode())
        url = exporter.url + "/metrics"
        assert _get(url, client, _basic("prometheus", PASSWORD))[0] == 401
        assert _get(url, client, _basic("prometheus", "rotated"))[0] == 200

        rewrite(web, b"basic_auth_users: [broken")
        for _ in range(3):  # the last good configuration keeps serving
            assert _get(url, client, _basic("prometheus", "rotated"))[0] == 200
        log = exporter.log()
        assert log.count("web configuration changed but is invalid") == 1
        assert "TLS certificate and settings reloaded" in log
        assert "Traceback" not in log


def _peer_cn(port: int, context: ssl.SSLContext) -> str:
    """The common name of the certificate a new connection is shown."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=scaled(10)) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        return dict(field[0] for field in tls.getpeercert()["subject"])["commonName"]


def test_the_readme_example_is_a_valid_web_configuration(tmp_path, pki) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
                   if "tls_server_config:" in b)  # fmt: skip
    data = yaml.safe_load(example)
    tls = data["tls_server_config"]
    tls |= {"cert_file": str(pki["server"].cert), "key_file": str(pki["server"].key),
            "client_ca_file": str(pki["client_ca"].cert)}  # fmt: skip
    config = load_web_config(write(tmp_path / "web.yml", data))
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert bcrypt.checkpw(b"change me", config.users["prometheus"])
    assert set(config.headers) == {"Strict-Transport-Security", "X-Frame-Options"}


async def test_a_client_that_reads_no_response_is_closed(monkeypatch, caplog) -> None:
    monkeypatch.setattr(http_connection, "SEND_TIMEOUT", 0.5)
    page = PrometheusPage()
    page.body = b"# " + b"x" * 4_000_000 + b"\n"  # more than the socket buffers hold
    async with serving(None, page) as server:
        assert server.listener is not None
        connections = server.listener.connections
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 20)  # and never read
        await writer.drain()
        deadline = asyncio.get_running_loop().time() + scaled(30)
        while len(connections) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert len(connections) == 0
        assert "read no response for 0.5s: closed" in caplog.text
        writer.close()
