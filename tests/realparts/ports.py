"""Port and HTTP readiness helpers for tests that start real servers."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from .timeouts import scaled


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    The OS picks it, so parallel test runs do not collide on fixed ports. There
    is a small window before the caller binds it; callers that start external
    binaries should be ready to retry on "address already in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http_ok(
    url: str,
    timeout: float = 30.0,
    interval: float = 0.1,
    check: Callable[[], None] | None = None,
    context: ssl.SSLContext | None = None,
) -> None:
    """Poll ``url`` until it answers HTTP 200, or raise ``TimeoutError``; ``context``
    is the TLS client context for an ``https`` URL.

    ``timeout`` is scaled by ``LLMCOST_TEST_TIMEOUT_SCALE`` (see ``timeouts``).

    ``check`` is called before every attempt and may raise to abort early (for
    example when the server process already died), so a crash is reported at
    once instead of after the full timeout.
    """
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    while True:
        if check is not None:
            check()
        try:
            with urllib.request.urlopen(
                url, timeout=scaled(max(interval, 5.0)), context=context
            ) as resp:
                if resp.status == 200:
                    return
                last_error = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{url} did not answer HTTP 200 within {timeout:g}s (last error: {last_error})"
            )
        time.sleep(interval)
