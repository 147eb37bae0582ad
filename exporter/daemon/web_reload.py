"""The web configuration in force, re-read when its files change.

As with Prometheus's exporters, the file is read again when it changes: each
request looks at the file's stat (users, headers, rate limit), and each new TLS
connection also at the certificate, key and client CA files, so a rotated
certificate serves the next connection without a restart. A stat costs a
microsecond; parsing and loading happen only when a stat differs. A file that
turns invalid is reported in one line and the last good configuration keeps
serving. Whether TLS is on is fixed at start: the listener cannot change kind.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from llm_cost_exporter.config import ConfigError
from llm_cost_exporter.daemon.tls_context import build_server_context
from llm_cost_exporter.daemon.web_config import WebConfig, load_web_config

log = logging.getLogger("llm-cost-exporter")

_Signature = tuple[int, int, int, int] | None


def _signature(path: Path) -> _Signature:
    """What changes when a file is rewritten or swapped (as Kubernetes swaps secrets)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class LiveWebConfig:
    """`config` and `ssl_context()` as the files say now, or as they last said validly."""

    def __init__(self, path: Path | None) -> None:
        """Load `path` (None: plain HTTP, no auth); problems raise ConfigError."""
        self.path = path
        self.config = WebConfig()
        self._file_seen: _Signature = None
        self._context: ssl.SSLContext | None = None
        self._tls_seen: tuple[object, ...] = ()
        if path is None:
            return
        self._file_seen = _signature(path)
        self.config = load_web_config(path)
        if self.config.tls is not None:
            self._tls_seen = self._tls_state(self.config)
            self._context = build_server_context(self.config.tls, path)

    @property
    def tls_enabled(self) -> bool:
        return self._context is not None

    def current(self) -> WebConfig:
        """The configuration for this request: one stat of the file."""
        if self.path is not None and _signature(self.path) != self._file_seen:
            self._reload()
        return self.config

    def ssl_context(self) -> ssl.SSLContext:
        """The context for a new connection, rebuilt when a TLS file changed."""
        config = self.current()
        assert config.tls is not None and self._context is not None and self.path is not None
        state = self._tls_state(config)
        if state != self._tls_seen:
            self._tls_seen = state
            try:
                self._context = build_server_context(config.tls, self.path)
            except ConfigError as error:
                log.error("TLS files changed but cannot be used; still serving the last good "
                          "certificate: %s", error)  # fmt: skip
            else:
                log.info("TLS certificate and settings reloaded from %s", self.path)
        return self._context

    def _reload(self) -> None:
        assert self.path is not None
        self._file_seen = _signature(self.path)
        try:
            config = load_web_config(self.path)
            if (config.tls is None) != (self.config.tls is None):
                raise ConfigError(
                    f"{self.path}: tls_server_config: turning TLS on or off takes a restart"
                )
        except ConfigError as error:
            log.error("web configuration changed but is invalid; still serving the last "
                      "good one: %s", error)  # fmt: skip
            return
        self.config = config
        log.info("web configuration reloaded from %s", self.path)

    @staticmethod
    def _tls_state(config: WebConfig) -> tuple[object, ...]:
        tls = config.tls
        return (tls, *(_signature(p) for p in tls.files())) if tls else ()
