"""Engine credentials: taken out of the URL, read from files at every use, and
never part of anything shown."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from conftest import minimal_config_dict

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.credentials import (
    MAX_SECRET_BYTES,
    BasicAuth,
    BearerTokenFile,
    read_secret_file,
)
from llm_cost_exporter.config import ConfigError, config_from_mapping
from llm_cost_exporter.config.urls import first_duplicate, redacted, split_userinfo

SECRET = "s3cr3t-Pa55"


def engine_config(**engine: object):
    return config_from_mapping(minimal_config_dict(engines=[engine])).engines[0]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_userinfo_leaves_the_url_and_becomes_basic_auth() -> None:
    engine = engine_config(url=f"http://scraper:{SECRET}%40x@127.0.0.1:8000/metrics?a=1")
    assert engine.url == "http://127.0.0.1:8000/metrics?a=1"
    assert engine.basic_auth == BasicAuth("scraper", f"{SECRET}@x")
    assert engine.credentials.authorization() == basic("scraper", f"{SECRET}@x")
    assert SECRET not in repr(engine)


def test_a_user_without_password_sends_an_empty_one() -> None:
    engine = engine_config(url="http://scraper@127.0.0.1:8000/metrics")
    assert engine.url == "http://127.0.0.1:8000/metrics"
    assert engine.credentials.authorization() == basic("scraper", "")


def test_split_and_redact_keep_everything_but_the_userinfo() -> None:
    url = f"HTTPS://u:{SECRET}@Host.Example:8443/x/metrics#frag"
    bare, user = split_userinfo(url)
    assert bare == "HTTPS://Host.Example:8443/x/metrics#frag"
    assert (user.username, user.password) == ("u", SECRET)
    assert SECRET not in repr(user)
    assert redacted(url) == "HTTPS://<secret>@Host.Example:8443/x/metrics#frag"
    assert redacted("http://a@b@host/p@q") == "http://<secret>@host/p@q"
    assert redacted("http://host/p@q") == "http://host/p@q"
    assert split_userinfo("http://host/p@q") == ("http://host/p@q", None)


@pytest.mark.parametrize(
    ("urls", "duplicate"),
    [
        (["http://127.0.0.1:8000/metrics", "http://127.0.0.1:8001/metrics"], None),
        (["http://localhost:8000/metrics", "http://127.0.0.1:8000/metrics"], (0, 1)),
        (["http://[::1]:8000/metrics", "http://[0:0::1]:8000/metrics"], (0, 1)),
        (["http://127.0.0.1/metrics", "http://127.0.0.1:80/metrics/"], (0, 1)),
        (["https://x.invalid/metrics", "https://X.invalid.:443/metrics"], (0, 1)),
        (["http://x.invalid:443/metrics", "https://x.invalid/metrics"], None),
        (
            [
                "http://a.invalid/m",
                "http://b.invalid/m",
                "http://c.invalid/m",
                "http://B.invalid/m",
            ],
            (1, 3),
        ),
        (["http://h.invalid/metrics?engine=1", "http://h.invalid/metrics?engine=2"], None),
    ],
)
def test_first_duplicate_compares_the_engine_reached(
    urls: list[str], duplicate: tuple[int, int] | None
) -> None:
    assert first_duplicate(urls) == duplicate


def test_bearer_token_is_read_at_every_use(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(f"{SECRET}\n")
    engine = engine_config(url="http://127.0.0.1:8000/metrics", bearer_token_file=str(token))
    assert engine.bearer_token_file == str(token)
    assert engine.credentials.authorization() == f"Bearer {SECRET}"
    token.write_text("rotated\r\n")
    assert engine.credentials.authorization() == "Bearer rotated"
    token.unlink()
    with pytest.raises(CollectorError) as error:
        engine.credentials.authorization()
    assert error.value.reason == "credentials"
    assert str(error.value) == f"secret file {token}: cannot open (No such file or directory)"


def test_password_file_is_read_at_every_use(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text(f"  {SECRET}\n")
    engine = engine_config(
        url="http://127.0.0.1:8000/metrics",
        basic_auth={"username": "scraper", "password_file": str(password)},
    )
    assert engine.credentials.authorization() == basic("scraper", SECRET)
    password.write_text("new one\n")
    assert engine.credentials.authorization() == basic("scraper", "new one")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"\n \n", "empty"),
        (b"two\nlines", "holds control characters or line breaks"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"x" * (MAX_SECRET_BYTES + 1), f"larger than {MAX_SECRET_BYTES} bytes"),
    ],
)
def test_a_bad_secret_file_is_refused_without_quoting_it(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)
    with pytest.raises(CollectorError) as error:
        read_secret_file(str(path))
    assert str(error.value) == f"secret file {path}: {problem}"
    assert error.value.reason == "credentials"


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CollectorError, match="not a regular file"):
        read_secret_file(str(fifo))


def test_a_bearer_token_with_spaces_cannot_be_sent(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("Bearer abc\n")
    with pytest.raises(CollectorError, match="ASCII without spaces"):
        BearerTokenFile(str(token)).authorization()


def test_secret_files_are_checked_when_the_file_is_loaded(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    token = tmp_path / "token"
    token.write_text(SECRET)
    for engine, field in [
        ({"bearer_token_file": str(empty)}, "engines[0].bearer_token_file"),
        ({"basic_auth": {"username": "u", "password_file": str(tmp_path)}}, "password_file"),
        ({"basic_auth": {"username": "a:b", "password": SECRET}}, "basic_auth.username"),
        ({"basic_auth": {"password": SECRET}}, "engines[0].basic_auth.username: missing"),
        (
            {"bearer_token_file": str(token), "basic_auth": {"username": "u"}},
            "engines[0].bearer_token_file: give a bearer token or basic auth",
        ),
    ]:
        with pytest.raises(ConfigError) as error:
            engine_config(url="http://127.0.0.1:8000/metrics", **engine)
        assert field in str(error.value)
        assert SECRET not in str(error.value)
