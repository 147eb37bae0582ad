"""The fault matrix: each fault against the real daemon, asserting that it keeps
serving (or, for what it must refuse, refuses in one line), that the right thing
is counted, and that no traceback reaches its log."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import minimal_config_dict
from realparts.auth_proxy import AuthProxy
from realparts.exporter_process import ExporterProcess
from realparts.simulator_process import SimulatorProcess
from realparts.timeouts import scaled

from llm_cost_exporter.config.safe_yaml import MAX_VALUES

pytestmark = pytest.mark.realparts

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + scaled(timeout)
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, "condition not reached in time"
            return result
        time.sleep(0.1)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sum of the samples of `name` whose labels include `labels`."""
    found = [
        v
        for (n, sample_labels), v in samples.items()
        if n == name and set(labels.items()) <= set(sample_labels)
    ]
    return sum(found) if found else None


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_cost_exporter", *args],
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )


# --- configuration and secrets ---------------------------------------------------------

_PRICED = yaml.safe_dump(minimal_config_dict(nvml={"enabled": False}))

HOSTILE_CONFIGS: dict[str, tuple[str | bytes, str]] = {
    "invalid UTF-8": (_PRICED.encode() + b"currency: \xc3\x28\n", "not UTF-8"),
    "deep nesting": (_PRICED + "windows: " + "[" * 20_000 + "]" * 20_000 + "\n", "windows[0]"),
    "alias bomb": (
        _PRICED
        + "".join(
            f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9)
        )
        + "windows: *l8\n",
        f"more than {MAX_VALUES} values",
    ),
    "integer beyond float range": (
        _PRICED.replace("3.2\n", "1" + "0" * 400 + "\n"),
        "cost.gpu_prices_per_hour.A100-80GB",
    ),
    "infinite price": (_PRICED.replace("3.2\n", ".inf\n"), "cost.gpu_prices_per_hour.A100-80GB"),
    "huge GPU count": (_PRICED.replace("count: 1", "count: 10000000000"), "cost.gpus[0].count"),
    "engine port out of range": (
        _PRICED + "engines: ['http://127.0.0.1:65536/metrics']\n",
        "engines[0].url",
    ),
    "the same engine twice": (
        _PRICED + "engines: ['http://localhost:8000/metrics', 'http://127.0.0.1:8000/metrics/']\n",
        "engines[1].url",
    ),
    "duplicate key": (_PRICED + "windows: [5m]\nwindows: [1h]\n", "windows: given twice"),
    "a list": ("- cost\n", "top level must be a mapping"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_CONFIGS))
def test_hostile_configuration_stops_the_daemon_in_one_line(tmp_path: Path, name: str) -> None:
    content, field = HOSTILE_CONFIGS[name]
    path = tmp_path / "config.yml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    done = run_cli("--config", str(path), "--web.listen-address", "127.0.0.1:1")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert field in done.stderr


URL_PASSWORD = "url-Pa55-9f2c"
FILE_PASSWORD = "file-Pa55-41aa"
WRONG_PASSWORD = "wrong-Pa55-77d0"
TOKEN = "tok3n-b1f0e6"
SECRETS = (URL_PASSWORD, FILE_PASSWORD, WRONG_PASSWORD, TOKEN)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def shown_forms(secret: str) -> list[str]:
    """The secret as written, and inside the Authorization headers it goes into."""
    return [
        secret,
        basic("scraper", secret).split()[1],
        basic("metrics", secret).split()[1],
    ]


def test_engine_credentials_are_sent_and_never_shown(tmp_path: Path) -> None:
    """Three engines behind authenticating proxies: credentials in the URL, a bearer
    token file and a basic-auth password file. Right credentials are counted;
    wrong, missing and rotated ones are reported as `credentials` and logged once;
    no secret appears in /metrics, the landing page, the log or check-config."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    password_file = tmp_path / "password"
    password_file.write_text(WRONG_PASSWORD + "\n")
    with (
        SimulatorProcess(tmp_path, "--engines", "3", "--profile", "steady") as simulator,
        AuthProxy(simulator.url, basic("scraper", URL_PASSWORD)) as url_proxy,
        AuthProxy(simulator.url, f"Bearer {TOKEN}") as bearer_proxy,
        AuthProxy(simulator.url, basic("metrics", FILE_PASSWORD)) as basic_proxy,
    ):
        in_url = f"{url_proxy.url}/engine/0/metrics"
        bearer = f"{bearer_proxy.url}/engine/1/metrics"
        password = f"{basic_proxy.url}/engine/2/metrics"
        config = minimal_config_dict(
            nvml={"enabled": False},
            collection={"interval": "500ms"},
            log_level="debug",
            engines=[
                in_url.replace("://", f"://scraper:{URL_PASSWORD}@"),
                {"url": bearer, "bearer_token_file": str(token_file)},
                {
                    "url": password,
                    "basic_auth": {"username": "metrics", "password_file": str(password_file)},
                },
            ],
        )
        with ExporterProcess(config, tmp_path) as exporter:

            def up(target: str) -> float | None:
                return value(exporter.samples(), "llmcost_collector_up", target=target)

            def credential_errors(target: str) -> float:
                samples = exporter.samples()
                name = "llmcost_collector_errors_total"
                return value(samples, name, target=target, reason="credentials") or 0.0

            eventually(lambda: up(in_url) == 1 and up(bearer) == 1 and up(password) == 0)
            first = value(exporter.samples(), "llmcost_tokens_total") or 0.0
            eventually(lambda: (value(exporter.samples(), "llmcost_tokens_total") or 0) > first)
            eventually(lambda: credential_errors(password) >= 3)
            assert {h.get("Authorization") for h in url_proxy.seen_headers} == {
                basic("scraper", URL_PASSWORD)
            }

            # Rotation: the right password is used from the next cycle on, no restart.
            password_file.write_text(FILE_PASSWORD + "\n")
            eventually(lambda: up(password) == 1)
            # A token file that disappears marks its engine down, and back once restored.
            token_file.unlink()
            eventually(lambda: credential_errors(bearer) >= 1 and up(bearer) == 0)
            token_file.write_text(TOKEN)
            eventually(lambda: up(bearer) == 1)

            metrics = exporter.get("/metrics")[2].decode()
            landing = exporter.get("/")[2].decode()
            log = exporter.log()
        checked = run_cli("check-config", str(exporter.config_path))
        config_file = exporter.config_path.read_text()

    assert checked.returncode == 0, checked.stderr
    for target in (in_url, bearer, password):
        assert f'target="{target}"' in metrics
        assert target in landing
    assert f"scraper:{URL_PASSWORD}@" in config_file  # the file does hold it
    assert "password: <secret>" in checked.stdout
    for secret in SECRETS:
        for form in shown_forms(secret):
            for place, text in [
                ("/metrics", metrics),
                ("landing page", landing),
                ("log", log),
                ("check-config", checked.stdout + checked.stderr),
            ]:
                assert form not in text, f"{secret} shown on the {place}"
    assert "Traceback" not in log
    down_lines = [
        line for line in log.splitlines() if f"target {password} is down (credentials)" in line
    ]
    assert len(down_lines) == 1, down_lines
    assert "HTTP 401: the page refused the credentials" in down_lines[0]
    assert any(
        f"target {bearer} is down (credentials): secret file {token_file}: cannot open" in line
        for line in log.splitlines()
    )


def test_an_engine_asking_for_credentials_is_down_with_that_reason(tmp_path: Path) -> None:
    with (
        SimulatorProcess(tmp_path, "--engines", "2") as simulator,
        AuthProxy(simulator.url, f"Bearer {TOKEN}") as proxy,
    ):
        locked = f"{proxy.url}/engine/0/metrics"
        open_engine = simulator.engine_url(1)
        config = minimal_config_dict(
            nvml={"enabled": False},
            collection={"interval": "500ms"},
            engines=[locked, open_engine],
        )
        with ExporterProcess(config, tmp_path) as exporter:
            name = "llmcost_collector_errors_total"
            eventually(
                lambda: (
                    (value(exporter.samples(), name, target=locked, reason="credentials") or 0) >= 2
                )
            )
            samples = exporter.samples()
            log = exporter.log()
            with urllib.request.urlopen(exporter.url + "/healthz", timeout=scaled(10)) as reply:
                assert reply.status == 200
    assert value(samples, "llmcost_collector_up", target=locked) == 0
    assert value(samples, "llmcost_collector_up", target=open_engine) == 1
    assert "HTTP 401: the page asks for credentials" in log
    assert "Traceback" not in log
