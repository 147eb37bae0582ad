"""A real server binary (Prometheus, Alertmanager) run for one test on loopback.

The server gets a free port, its own temporary directory for config, data and
log, a readiness wait that fails fast with the log when the process dies, a
retry when another process grabbed the port first, and a cleanup that never
leaves a process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .ports import free_port, wait_http_ok
from .timeouts import scaled

_PORT_RETRIES = 3
Server = TypeVar("Server", bound="BinaryServer")


def locate_binary(
    env_var: str, names: Sequence[str], package: str, fallbacks: Sequence[str] = ()
) -> str:
    """The server binary: `env_var` if set, else the first of `names` on PATH, else a
    fallback path, or an error saying how to install it."""
    override = os.environ.get(env_var)
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise RuntimeError(f"{env_var}={override!r} is not an executable file")
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    # /usr/bin may be missing from a minimal PATH; the package still installs there.
    for path in fallbacks:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise RuntimeError(
        f"No {' or '.join(names)} binary was found on PATH. Install the Debian package "
        f"'{package}' (apt-get install {package}), run 'bash tests/install-test-deps.sh', "
        f"or point {env_var} at a binary."
    )


def kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    """Last-resort cleanup so an abandoned server never outlives the test run."""
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=scaled(5))


class BinaryServer:
    """Lifecycle shared by the real servers; subclasses say what to run and how.

    `name` names the files (`<name>.yml`, `<name>.log`) and the messages;
    `error` is the exception raised; `find_binary`, `config` and `flags`
    describe the server.
    """

    name = "server"
    error: type[Exception] = RuntimeError

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        keep_workdir: bool = False,
        startup_timeout: float = 60.0,
        binary: str | None = None,
    ) -> None:
        self.startup_timeout = startup_timeout
        self._binary = binary
        self._own_workdir = workdir is None
        self._keep_workdir = keep_workdir or workdir is not None
        self._workdir: Path | None = Path(workdir) if workdir is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._finalizer: weakref.finalize | None = None
        self.port: int | None = None

    # -- what subclasses provide ---------------------------------------------

    def find_binary(self) -> str:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The configuration that will be written, handy for debugging failures."""
        raise NotImplementedError

    def flags(self) -> list[str]:
        """Command-line flags besides the binary; `self.port` is set when called."""
        raise NotImplementedError

    # -- lifecycle -------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        """Directory holding the config, the log and ``data/``."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"llmcost-{self.name}-"))
        return self._workdir

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        if self.port is None:
            raise self.error(f"{self.name} is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self: Server) -> Server:
        """Write the config, launch the binary and block until ``/-/ready``."""
        if self.running:
            return self
        binary = self._binary or self.find_binary()
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        # JSON is valid YAML, which keeps these helpers free of a YAML dependency.
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n")
        for attempt in range(1, _PORT_RETRIES + 1):
            self._launch(binary)
            try:
                wait_http_ok(
                    f"{self.url}/-/ready", timeout=self.startup_timeout, check=self._check_alive
                )
                return self
            except (self.error, TimeoutError) as exc:
                port_taken = "address already in use" in self.log_tail(200).lower()
                self._terminate()
                if port_taken and attempt < _PORT_RETRIES:
                    continue
                raise self.error(
                    f"{self.name} did not become ready on {self.url}: {exc}\n"
                    f"config: {self.config_path}\n{self.log_section()}"
                ) from exc
        raise AssertionError("unreachable")

    def _launch(self, binary: str) -> None:
        self.port = free_port()
        cmd = [binary, *self.flags()]
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _terminate
        self._log_file.write(f"$ {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        self._finalizer = weakref.finalize(self, kill_quietly, self._proc)

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise self.error(f"{self.name} exited early with code {self._proc.returncode}")

    def _terminate(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=scaled(timeout))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=scaled(5))
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate (SIGTERM, then SIGKILL after ``timeout``) and clean up. Idempotent."""
        self._terminate(timeout)
        if self._own_workdir and not self._keep_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self: Server) -> Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- diagnostics -----------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        """Last ``lines`` lines of the server's combined stdout/stderr."""
        if self._workdir is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def log_errors(self, limit: int = 10) -> list[str]:
        """Error-level log lines; the root cause often scrolls out of the tail."""
        if self._workdir is None or not self.log_path.exists():
            return []
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if "level=error" in line][:limit]

    def log_section(self, lines: int = 30) -> str:
        parts = []
        errors = self.log_errors()
        if errors:
            parts.append(f"--- {self.name} errors ---\n" + "\n".join(errors))
        parts.append(f"--- {self.name} log tail ({self.log_path}) ---\n{self.log_tail(lines)}")
        return "\n".join(parts)
