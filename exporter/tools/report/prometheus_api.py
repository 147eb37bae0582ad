"""A small client for Prometheus's HTTP query API, with errors a person can act on.

The review runs from a laptop or a cron job against a Prometheus (or a
compatible store such as Thanos or Mimir) that may sit behind an auth proxy,
so it speaks plain HTTP with optional bearer token, basic auth and extra
headers, and turns every failure into one line naming the server and cause.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

Labels = dict[str, str]
Samples = list[tuple[float, float]]


class PrometheusError(Exception):
    """The query could not be answered; the message is one line for the user."""


@dataclass(frozen=True)
class Credentials:
    """How to authenticate: at most one of a bearer token and basic auth, plus headers."""

    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def http_headers(self) -> dict[str, str]:
        out = dict(self.headers)
        if self.bearer_token:
            out["Authorization"] = f"Bearer {self.bearer_token}"
        elif self.basic_auth:
            pair = f"{self.basic_auth[0]}:{self.basic_auth[1]}".encode()
            out["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return out


def split_url_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``https://user:pass@host`` is accepted; the credentials never appear in the report."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PrometheusError(f"--prometheus.url {url!r}: expected http(s)://host[:port][/path]")
    basic = None
    if parts.username is not None:
        basic = (
            urllib.parse.unquote(parts.username),
            urllib.parse.unquote(parts.password or ""),
        )
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return clean, basic


class PrometheusClient:
    """Instant queries against ``/api/v1/query``, returning each series' samples."""

    def __init__(self, url: str, credentials: Credentials, timeout: float = 120.0) -> None:
        self.url, url_basic = split_url_credentials(url)
        if url_basic and not (credentials.bearer_token or credentials.basic_auth):
            credentials = Credentials(None, url_basic, credentials.headers)
        self._headers = credentials.http_headers()
        self.timeout = timeout

    def query(self, expr: str, at: float) -> list[tuple[Labels, Samples]]:
        """Evaluate ``expr`` at ``at`` (seconds); vectors come back as one sample per series."""
        data = self._post("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        kind, result = data.get("resultType"), data.get("result")
        if not isinstance(result, list):
            raise PrometheusError(f"Prometheus at {self.url} sent an answer without a result")
        if kind == "vector":
            return [(r["metric"], [_sample(r["value"])]) for r in result]
        if kind == "matrix":
            return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in result]
        if kind == "scalar":
            return [({}, [_sample(result)])]
        raise PrometheusError(f"Prometheus at {self.url} sent an unexpected {kind!r} result")

    def _post(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        body = urllib.parse.urlencode(form).encode()
        headers = {
            **self._headers,
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        request = urllib.request.Request(self.url + path, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise PrometheusError(self._http_error(err)) from None
        except TimeoutError:
            raise PrometheusError(
                f"Prometheus at {self.url} did not answer within {self.timeout:g} s"
            ) from None
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise PrometheusError(
                    f"Prometheus at {self.url} did not answer within {self.timeout:g} s"
                ) from None
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {reason}") from None
        except OSError as err:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {err}") from None
        payload = _json(raw)
        if payload is None or payload.get("status") != "success" or "data" not in payload:
            raise PrometheusError(
                f"{self.url} did not answer as the Prometheus HTTP API does; is the URL right?"
            )
        return payload["data"]

    def _http_error(self, err: urllib.error.HTTPError) -> str:
        if err.code in (401, 403):
            return (
                f"Prometheus at {self.url} refused the request (HTTP {err.code}); "
                "check --prometheus.bearer-token-file or the basic auth options"
            )
        payload = _json(err.read() or b"")
        if payload and payload.get("error"):
            detail = " ".join(str(payload["error"]).split())
            return (
                f"Prometheus at {self.url} returned an error ({payload.get('errorType')}): {detail}"
            )
        return f"Prometheus at {self.url} answered HTTP {err.code} {err.reason}"


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _sample(pair: list[Any]) -> tuple[float, float]:
    return float(pair[0]), float(pair[1])
