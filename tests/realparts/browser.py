"""Debian's Chromium, headless, driven over the DevTools protocol (CDP) directly.

Pages are checked the way a person sees them: a real browser lays them out,
runs their script and reports every console error and uncaught exception.
Chromium starts on a fresh profile with `--remote-debugging-port=0` and says
which port it took in the profile's DevToolsActivePort file; one websocket
(aiohttp) to the browser then carries every page's session (flat sessions).
The protocol runs on an event loop in a thread of its own, so events are
recorded while a test does something else. Every wait is on an event or a
condition, under a deadline scaled by LLMCOST_TEST_TIMEOUT_SCALE.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from .timeouts import scaled

CHROMIUM = "/usr/bin/chromium"
"""Debian's package `chromium`: tests never download a browser."""

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)
PROBLEM_CONSOLE_TYPES = frozenset({"error", "assert"})


class BrowserError(RuntimeError):
    """The browser failed, or a protocol command came back with an error."""


def available() -> bool:
    return Path(CHROMIUM).is_file()


class _Connection:
    """The websocket to the browser: commands by id, events to whoever listens."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._listeners: list[Callable[[str | None, str, dict], None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None

    async def open(self, url: str) -> None:
        self._session = aiohttp.ClientSession()
        # Screenshots come back as one message of several megabytes.
        self._socket = await self._session.ws_connect(url, max_msg_size=0)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def listen(self, listener: Callable[[str | None, str, dict], None]) -> None:
        """`listener(session_id, method, params)` for every event."""
        self._listeners.append(listener)

    async def _read(self) -> None:
        assert self._socket is not None
        async for message in self._socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            for listener in list(self._listeners):
                listener(data.get("sessionId"), data.get("method", ""), data.get("params", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BrowserError("the browser closed the connection"))
        self._pending.clear()

    async def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout=30.0
    ) -> dict:
        assert self._socket is not None
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._socket.send_str(json.dumps(message))
        try:
            answer = await asyncio.wait_for(future, scaled(timeout))
        except asyncio.TimeoutError:
            self._pending.pop(ident, None)
            raise BrowserError(f"{method}: no answer within {scaled(timeout):g}s") from None
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message', answer['error'])}")
        return answer.get("result", {})

    @property
    def open_(self) -> bool:
        return self._socket is not None and not self._socket.closed

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


class Page:
    """One tab: navigate, evaluate, wait for conditions, screenshot; its problems are
    every console error, failed load and uncaught exception since it opened."""

    def __init__(self, browser: Browser, target: str, session: str) -> None:
        self._browser = browser
        self.target = target
        self.session = session
        self.problems: list[str] = []
        self.navigations: list[str] = []
        """URLs the main frame navigated to, in order (a full reload adds one)."""
        self._waiters: list[tuple[str, asyncio.Future]] = []

    def _on_event(self, session: str | None, method: str, params: dict) -> None:
        if session != self.session:
            return
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            thrown = details.get("exception", {}).get("description") or details.get("text")
            self.problems.append(f"uncaught exception: {thrown}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in PROBLEM_CONSOLE_TYPES:
            args = params.get("args", [])
            words = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
            self.problems.append(f"console.{params['type']}: {words}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.problems.append(
                f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}"
            )
        elif method == "Page.frameNavigated" and "parentId" not in params.get("frame", {}):
            self.navigations.append(params["frame"].get("url", ""))
        for wanted, future in list(self._waiters):
            if wanted == method and not future.done():
                future.set_result(params)
                self._waiters.remove((wanted, future))

    def _send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        connection = self._browser.connection
        return self._browser.run(connection.send(method, params, self.session, timeout))

    def goto(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait for the load event."""

        async def navigate() -> None:
            loaded = asyncio.get_running_loop().create_future()
            self._waiters.append(("Page.loadEventFired", loaded))
            answer = await self._browser.connection.send(
                "Page.navigate", {"url": url}, self.session, timeout
            )
            if answer.get("errorText"):
                raise BrowserError(f"cannot open {url}: {answer['errorText']}")
            try:
                await asyncio.wait_for(loaded, scaled(timeout))
            except asyncio.TimeoutError:
                raise BrowserError(f"{url} did not finish loading") from None

        self._browser.run(navigate())

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON gives it."""
        result = self._send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            thrown = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression[:80]!r} threw: {thrown}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, what: str = "") -> Any:
        """The expression's value once it is truthy; BrowserError after the deadline."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still not {what or expression!r} after {scaled(timeout):g}s")
            time.sleep(0.05)

    def settle(self) -> list[str]:
        """Problems so far: a round trip first, so every event sent before it is in."""
        self.evaluate("0")
        return list(self.problems)

    def screenshot(self, path: Path) -> Path:
        """The whole page, not just the viewport, as a PNG."""
        size = self._send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self._send(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
            timeout=60.0,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        self._browser.run(
            self._browser.connection.send("Target.closeTarget", {"targetId": self.target})
        )


class Browser:
    """Chromium headless on a fresh profile; `with Browser() as browser:` closes it."""

    startup_timeout = 30.0

    def __init__(self, executable: str = CHROMIUM) -> None:
        self.executable = executable
        self.connection = _Connection()
        self._profile = Path(tempfile.mkdtemp(prefix="llmcost-chromium-"))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._proc: subprocess.Popen | None = None
        self._log = self._profile.parent / f"{self._profile.name}.log"

    def run(self, coroutine: Coroutine) -> Any:
        """Run a coroutine on the protocol's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def start(self) -> Browser:
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                [self.executable, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its helper processes go with it if it is killed
            )
        try:
            port, path = self._active_port()
            self._thread.start()
            self.run(self.connection.open(f"ws://127.0.0.1:{port}{path}"))
        except BaseException:
            self.close()
            raise
        return self

    def _active_port(self) -> tuple[int, str]:
        """The port and browser path Chromium wrote once it listens."""
        assert self._proc is not None
        announced = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + scaled(self.startup_timeout)
        while True:
            if self._proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self._proc.returncode}:\n{self.log()}")
            lines = announced.read_text().split("\n") if announced.exists() else []
            if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
                return int(lines[0]), lines[1].strip()
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium announced no DevTools port:\n{self.log()}")
            time.sleep(0.05)

    def new_page(
        self, width: int = 1280, height: int = 900, mobile: bool = False, script: bool = True
    ) -> Page:
        """A new tab of `width` x `height` CSS pixels (`mobile`: a phone's viewport rules,
        so the page's viewport meta counts), recording its problems from the start."""
        target = self.run(self.connection.send("Target.createTarget", {"url": "about:blank"}))
        attached = self.run(
            self.connection.send(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )
        )
        page = Page(self, target["targetId"], attached["sessionId"])
        self.connection.listen(page._on_event)
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            page._send(method)
        page._send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        # Screenshots as wide as the viewport, whatever the page's length.
        page._send("Emulation.setScrollbarsHidden", {"hidden": True})
        if not script:
            page._send("Emulation.setScriptExecutionDisabled", {"value": True})
        return page

    def close(self) -> None:
        """Ask the browser to quit, wait for it (kill it if it will not), drop the profile."""
        if self._thread.is_alive():
            if self.connection.open_:
                # It may close the connection before it answers.
                with contextlib.suppress(BrowserError):
                    self.run(self.connection.send("Browser.close", timeout=10.0))
            self.run(self.connection.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(scaled(10))
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.wait(timeout=scaled(10))
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        if not self._loop.is_running():
            self._loop.close()
        shutil.rmtree(self._profile, ignore_errors=True)
        self._log.unlink(missing_ok=True)

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
