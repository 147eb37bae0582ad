"""Run a real ``prometheus`` binary for end-to-end tests.

Mocks of Prometheus cannot tell us whether our metric names, label sets, rules
and alerts actually work, so these tests scrape through the real server and
read results back over its HTTP API.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .binary_server import BinaryServer, locate_binary
from .timeouts import scaled

DEBIAN_PACKAGE = "prometheus"


class PrometheusError(RuntimeError):
    """Prometheus failed to start or an API call did not succeed."""


def find_prometheus_binary() -> str:
    """Locate the binary via ``PROMETHEUS_BIN`` or ``PATH``, or explain how to get it."""
    return locate_binary("PROMETHEUS_BIN", ("prometheus",), DEBIAN_PACKAGE)


def _alertmanager_config(url: str) -> dict[str, Any]:
    """One ``alerting.alertmanagers`` entry for an Alertmanager base URL."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"alertmanager_url must look like http://host:port, got {url!r}")
    entry: dict[str, Any] = {
        "scheme": parsed.scheme,
        "timeout": "5s",
        "api_version": "v2",
        "static_configs": [{"targets": [parsed.netloc]}],
    }
    if parsed.path.strip("/"):
        entry["path_prefix"] = parsed.path
    return entry


class PrometheusHttpApi:
    """The Prometheus HTTP API's queries, rules and alerts, for any server that speaks it.

    Mixed into a :class:`BinaryServer` (Prometheus itself, VictoriaMetrics, vmalert):
    it needs ``url``, ``error``, ``log_section`` and ``_check_alive`` from there.
    """

    url: str
    error: type[Exception]

    def _api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """Call ``/api/v1/<path>`` and return ``data``, raising unless status is success."""
        url = f"{self.url}/api/v1/{path}"
        body = urllib.parse.urlencode(params).encode() if params else None
        req = urllib.request.Request(url, data=body)  # POST when there are params
        try:
            with urllib.request.urlopen(req, timeout=scaled(60)) as resp:
                payload = json.load(resp)
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode(errors="replace")
            try:
                payload = json.loads(raw)
            except ValueError:
                raise self.error(
                    f"{path} {dict(params or {})}: HTTP {exc.code}: {raw[:500]}\n"
                    f"{self.log_section()}"
                ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise self.error(
                f"{path}: cannot reach the server at {self.url}: {exc}\n{self.log_section()}"
            ) from exc
        if payload.get("status") != "success":
            raise self.error(
                f"{path} {dict(params or {})}: {payload.get('errorType')}: "
                f"{payload.get('error')}\n{self.log_section()}"
            )
        return payload.get("data")

    def query(self, expr: str, time: float | None = None) -> list[dict[str, Any]]:
        """Instant query; returns the result vector (``[{"metric": ..., "value": [t, "v"]}]``).

        Scalar and string results are wrapped as a single sample with empty
        labels so callers always get a list.
        """
        params = {"query": expr}
        if time is not None:
            params["time"] = repr(float(time))
        data = self._api("query", params)
        result = data.get("result")
        if data.get("resultType") in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return list(result or [])

    def query_scalar(self, expr: str, time: float | None = None) -> float | None:
        """Value of the first sample as float (NaN/Inf preserved), ``None`` if empty."""
        result = self.query(expr, time)
        if not result:
            return None
        return float(result[0]["value"][1])

    def query_range(
        self, expr: str, start: float, end: float, step: float | str = 1.0
    ) -> list[dict[str, Any]]:
        """Range query; returns the matrix (``[{"metric": ..., "values": [[t, "v"], ...]}]``)."""
        params = {
            "query": expr,
            "start": repr(float(start)),
            "end": repr(float(end)),
            "step": step if isinstance(step, str) else repr(float(step)),
        }
        return list(self._api("query_range", params).get("result") or [])

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[list[dict[str, Any]]], bool] | None = None,
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``predicate(result)`` holds (default: non-empty result).

        Query errors (e.g. a bad expression) raise immediately since retrying
        cannot fix them. ``timeout`` is scaled by ``LLMCOST_TEST_TIMEOUT_SCALE``.
        """
        check = predicate or bool
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            result = self.query(expr)
            if check(result):
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{expr!r} did not satisfy the predicate within {timeout:g}s; "
                    f"last result: {json.dumps(result)[:1000]}\n{self.log_section(15)}"
                )
            time.sleep(interval)

    def wait_for_scalar(
        self,
        expr: str,
        predicate: Callable[[float], bool],
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> float:
        """Poll until the first sample of ``expr`` exists and ``predicate(value)`` holds."""
        result = self.wait_for(
            expr,
            lambda r: bool(r) and predicate(float(r[0]["value"][1])),
            timeout=timeout,
            interval=interval,
        )
        return float(result[0]["value"][1])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts from ``/api/v1/alerts`` (``labels``, ``annotations``, ``state``...)."""
        return list(self._api("alerts").get("alerts") or [])

    def rules(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Rule groups from ``/api/v1/rules``, evaluation state included.

        ``kind`` (``"alert"`` or ``"record"``) is passed as the API's ``type`` filter.
        """
        path = "rules" if kind is None else f"rules?type={urllib.parse.quote(kind)}"
        return list(self._api(path).get("groups") or [])


class PrometheusServer(PrometheusHttpApi, BinaryServer):
    """A throwaway Prometheus scraping ``targets`` (``host:port``) on 127.0.0.1.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Everything
    (config, TSDB, log) lives in one temporary directory that is removed on a
    clean stop unless ``keep_workdir`` is set or ``workdir`` was supplied.

    ``scheme``, ``tls_config`` (``ca_file``, ``cert_file``, ``key_file``,
    ``server_name``...) and ``basic_auth`` (``username``, ``password``) go into the
    main job as Prometheus reads them, to scrape a target over HTTPS with credentials.

    With ``alertmanager_url`` set, alerts from the rule files go to that
    Alertmanager. ``alert_resend_delay`` (Prometheus default 1m) bounds how often
    a still-firing alert is re-sent, and Alertmanager's ``endsAt`` for it is four
    times the larger of this and the evaluation interval, so keeping it short
    makes a lost or stopped alert resolve within seconds instead of minutes.
    ``--rules.alert.for-grace-period`` is left at its default: it only applies
    when restoring ``for`` state from an earlier run, and the TSDB here starts empty.
    """

    name = "prometheus"
    error = PrometheusError

    def __init__(
        self,
        targets: Sequence[str],
        scrape_interval: str = "1s",
        metrics_path: str = "/metrics",
        extra_rule_files: Sequence[Path] = (),
        *,
        job_name: str = "realparts",
        evaluation_interval: str | None = None,
        scrape_timeout: str | None = None,
        extra_scrape_configs: Sequence[Mapping[str, Any]] = (),
        scheme: str = "http",
        tls_config: Mapping[str, Any] | None = None,
        basic_auth: Mapping[str, Any] | None = None,
        alertmanager_url: str | None = None,
        alert_resend_delay: str = "1s",
        workdir: Path | None = None,
        keep_workdir: bool = False,
        startup_timeout: float = 60.0,
        binary: str | None = None,
    ) -> None:
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.metrics_path = metrics_path
        self.extra_rule_files = [Path(p).resolve() for p in extra_rule_files]
        self.job_name = job_name
        self.evaluation_interval = evaluation_interval or scrape_interval
        self.scrape_timeout = scrape_timeout
        self.extra_scrape_configs = [dict(c) for c in extra_scrape_configs]
        self.scheme = scheme
        self.tls_config = dict(tls_config) if tls_config else None
        self.basic_auth = dict(basic_auth) if basic_auth else None
        self.alertmanager_url = alertmanager_url
        self.alert_resend_delay = alert_resend_delay
        super().__init__(
            workdir=workdir,
            keep_workdir=keep_workdir,
            startup_timeout=startup_timeout,
            binary=binary,
        )

    # -- what BinaryServer runs ------------------------------------------------

    def find_binary(self) -> str:
        return find_prometheus_binary()

    def config(self) -> dict[str, Any]:
        """The configuration that will be written, handy for debugging failures."""
        global_cfg: dict[str, Any] = {
            "scrape_interval": self.scrape_interval,
            "evaluation_interval": self.evaluation_interval,
        }
        if self.scrape_timeout is not None:
            global_cfg["scrape_timeout"] = self.scrape_timeout
        job: dict[str, Any] = {
            "job_name": self.job_name,
            "scheme": self.scheme,
            "metrics_path": self.metrics_path,
            "static_configs": [{"targets": self.targets}],
        }
        if self.tls_config is not None:
            job["tls_config"] = self.tls_config
        if self.basic_auth is not None:
            job["basic_auth"] = self.basic_auth
        scrape_configs: list[dict[str, Any]] = [job]
        scrape_configs.extend(self.extra_scrape_configs)
        config: dict[str, Any] = {
            "global": global_cfg,
            "rule_files": [str(p) for p in self.extra_rule_files],
            "scrape_configs": scrape_configs,
        }
        if self.alertmanager_url is not None:
            config["alerting"] = {"alertmanagers": [_alertmanager_config(self.alertmanager_url)]}
        return config

    def flags(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--rules.alert.resend-delay={self.alert_resend_delay}",
        ]

    def targets_health(self) -> list[dict[str, Any]]:
        """Active targets from ``/api/v1/targets`` (``scrapeUrl``, ``health``, ``lastError``...)."""
        data = self._api("targets?state=active")
        return list(data.get("activeTargets") or [])

    def wait_until_scraped(self, timeout: float = 30.0, interval: float = 0.2) -> list[dict]:
        """Block until every active target has been scraped at least once (``timeout``
        scaled by ``LLMCOST_TEST_TIMEOUT_SCALE``)."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            targets = self.targets_health()
            if targets and all(t.get("health") in ("up", "down") for t in targets):
                return targets
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"targets not scraped within {timeout:g}s: {json.dumps(targets)[:1000]}\n"
                    f"{self.log_section(15)}"
                )
            time.sleep(interval)
