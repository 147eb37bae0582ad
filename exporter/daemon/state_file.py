"""The state file: the node's counters, written atomically every cycle and read once at start.

Written to a temporary file beside it, flushed to disk, renamed over the old
one and the directory flushed too, so a crash at any moment leaves either the
old file or the new one, whole. The write runs in the state file's own
thread (`WorkerThread`), off the event loop; writes are ordered, an older
snapshot never replaces a newer one.

At start the file is loaded, checked and resumed; whatever is wrong with it
(missing, unreadable, foreign, written by a newer version) is one log line and
the exporter starts from zero: a bad state file never stops the daemon. A
file that cannot be written is one warning, not one per cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from llm_cost_exporter.accounting import snapshot
from llm_cost_exporter.accounting.capacity import LEGACY_KEY
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.accounting.persisted import StateError
from llm_cost_exporter.collectors.worker_thread import WorkerThread

log = logging.getLogger(__name__)

FORMAT = "llm-cost-exporter state"
VERSION = 1
SHUTDOWN_WRITE_TIMEOUT = 5.0
"""Seconds the last write at shutdown waits for an earlier one still running."""


class StateFile:
    """One state file: atomic writes from any thread, in order, warning once when they fail."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._sequence = 0
        self._written = 0
        self._failing = False
        self._slow = False
        self._writer = WorkerThread("state-file")

    # --- writing ---------------------------------------------------------------

    def document(self, state: NodeState, saved_at: float) -> tuple[int, dict[str, Any]]:
        """The next snapshot of `state` to write, with its place in the write order."""
        self._sequence += 1
        return self._sequence, {
            "format": FORMAT,
            "version": VERSION,
            "saved_at": saved_at,
            "identity": snapshot.identity(state),
            "node": snapshot.snapshot(state),
        }

    async def save(self, state: NodeState, timeout: float) -> None:
        """Snapshot `state` now and write it in a thread, waiting at most `timeout` seconds.

        A write that takes longer (a hung disk) does not hold up collection: the
        cycle goes on, and no new write starts until it ends (warned once).
        """
        if self._writer.busy:
            return
        sequence, document = self.document(state, state.wall_now())
        try:
            await self._writer.call(functools.partial(self._write_job, document, sequence), timeout)
        except asyncio.TimeoutError:
            if not self._slow:
                log.warning(
                    "writing state file %s takes longer than %gs: collection goes on, and "
                    "the file is written again once this write ends (warned once)",
                    self.path,
                    timeout,
                )
            self._slow = True

    def _write_job(self, document: dict[str, Any], sequence: int) -> bool:
        """`write` on the writer thread, where a bug costs that write and is logged, as a
        write that fails is: the cycle is still published."""
        try:
            return self.write(document, sequence)
        except Exception:
            log.exception("writing state file %s failed unexpectedly", self.path)
            return False

    def save_now(self, state: NodeState, timeout: float = SHUTDOWN_WRITE_TIMEOUT) -> None:
        """Snapshot and write at once, on this thread (at shutdown); give up after `timeout`
        seconds if an earlier write still holds the file."""
        sequence, document = self.document(state, state.wall_now())
        self.write(document, sequence, timeout)

    def write(self, document: dict[str, Any], sequence: int, timeout: float = -1) -> bool:
        """Replace the file with `document` atomically, unless a newer one was written."""
        if not self._lock.acquire(timeout=timeout):
            log.warning("state file %s: an earlier write is still running; not written", self.path)
            return False
        try:
            if sequence <= self._written:
                return False
            write_atomically(self.path, json.dumps(document, allow_nan=False))
        except (OSError, ValueError) as error:
            if not self._failing:
                log.warning(
                    "cannot write state file %s: %s; counters will restart from zero "
                    "if the exporter restarts (warned once until it works again)",
                    self.path,
                    error,
                )
            self._failing = True
            return False
        else:
            if self._failing:
                log.info("state file %s is written again", self.path)
            self._failing = False
            self._written = sequence
            return True
        finally:
            self._lock.release()

    # --- reading ---------------------------------------------------------------

    def resume(self, state: NodeState) -> str:
        """Resume `state` from the file, reporting anything wrong in one line; the outcome.

        Outcomes: missing, unreadable, foreign, capacity (an earlier version's
        capacity-only file), resumed. Only `resumed` is silent here: the first
        cycle logs what it billed for the downtime.
        """
        self._remove_leftovers()
        try:
            text = self.path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            log.info(
                "state file %s does not exist yet: counters start from zero; it is written "
                "every cycle from now on",
                self.path,
            )
            return "missing"
        except (OSError, UnicodeDecodeError) as error:
            return self._reject("unreadable", str(error))
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as error:
            return self._reject("unreadable", f"not JSON: {error}")
        if not isinstance(data, dict):
            return self._reject("unreadable", "not a JSON object")
        if "format" not in data and LEGACY_KEY in data:
            return self._resume_capacity(state, data)
        if data.get("format") != FORMAT:
            return self._reject("unreadable", "not a state file of this exporter")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version > VERSION:
            return self._reject("foreign", f"written by a newer version (format {version!r})")
        try:
            reason = snapshot.foreign_reason(data.get("identity"), snapshot.identity(state))
            if reason is not None:
                return self._reject("foreign", reason)
            saved_at = data.get("saved_at")
            if isinstance(saved_at, bool) or not isinstance(saved_at, (int, float)):
                raise StateError(f"saved_at: {saved_at!r} is not a time")
            snapshot.restore(state, data.get("node"), float(saved_at))
        except (StateError, TypeError, KeyError, AttributeError) as error:
            return self._reject("unreadable", f"malformed: {error}")
        return "resumed"

    def _resume_capacity(self, state: NodeState, data: dict[str, Any]) -> str:
        try:
            snapshot.restore_capacity(state, data)
        except StateError as error:
            return self._reject("unreadable", f"malformed: {error}")
        log.info(
            "state file %s holds only the learned capacity (an earlier version's format): "
            "capacity resumed, counters start from zero",
            self.path,
        )
        return "capacity"

    def _reject(self, outcome: str, reason: str) -> str:
        """One line: why the file is not used, and where it was set aside for inspection."""
        aside = self.path.with_name(f"{self.path.name}.{outcome}")
        try:
            os.replace(self.path, aside)
            kept = f"moved to {aside}"
        except OSError as error:
            kept = f"left in place ({error.strerror or error})"
        log.warning(
            "state file %s is %s (%s): %s; counters start from zero",
            self.path,
            "unreadable" if outcome == "unreadable" else "not this node's",
            reason,
            kept,
        )
        return outcome

    def _remove_leftovers(self) -> None:
        """Temporary files of writes a crash interrupted."""
        try:
            for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                leftover.unlink(missing_ok=True)
        except OSError:
            pass


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
"""The temporary file is made afresh, never opened through a link planted in its place."""


def write_atomically(path: Path, text: str) -> None:
    """Write, flush to disk, rename over `path`, flush the directory: old or new, never half.

    The temporary file is named by the process and thread writing it (`.NAME.PID.TID.tmp`),
    so no two writes share one, and no random name is drawn on every cycle."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)  # left by a crash of a process that had this PID
    try:
        fd = os.open(temporary, _CREATE, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, _CREATE, 0o600)
    try:
        try:
            data = memoryview(text.encode())
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a state file may hold")


def open_state_file(path: str | None, state: NodeState) -> StateFile | None:
    """The configured state file with `state` resumed from it, or None (one warning)."""
    if path is None:
        log.warning(
            "state_file is unset: every counter starts from zero again when the exporter "
            "restarts, and the downtime is not billed (set state_file to keep them)"
        )
        return None
    state_file = StateFile(path)
    state_file.resume(state)
    return state_file
