"""HTTP basic auth against the web configuration's bcrypt hashes.

bcrypt is slow on purpose (about 70 ms at cost 10), so, as Prometheus's
exporters do, a verified credential is remembered and a scrape pays for it once,
not every time. Verification runs in a worker thread (bcrypt releases the GIL)
one at a time, so a flood of wrong passwords costs at most one core and never
stalls the event loop or a scraper whose credential is already remembered.
Credentials are remembered as digests only, never as plain text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
from collections import OrderedDict
from collections.abc import Mapping

REMEMBERED = 100
"""Credentials remembered, each way (granted, refused)."""
MAX_WAITING = 16
"""Verifications allowed to queue; beyond, a request is answered busy at once."""
# A cost-10 hash of no configured password: unknown users take as long as known ones.
_UNKNOWN_USER_HASH = b"$2b$10$7XxyWObIeVro.wX27tigX.7N/G6RbuHQitld.ZznTjgR8ae7NsDKu"


class Verdict(enum.Enum):
    GRANTED = "granted"
    MISSING = "no credentials"
    REFUSED = "wrong credentials"
    BUSY = "too many verifications waiting"


class _Remembered:
    """A bounded set of digests; the oldest leave first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, key: bytes) -> bool:
        return key in self._items

    def add(self, key: bytes) -> None:
        self._items[key] = None
        if len(self._items) > self._size:
            self._items.popitem(last=False)


class BasicAuth:
    """Checks an `Authorization` header against the users of the moment."""

    def __init__(self) -> None:
        self._granted = _Remembered(REMEMBERED)
        self._refused = _Remembered(REMEMBERED)
        self._lock = asyncio.Lock()
        self._waiting = 0

    async def check(self, header: str | None, users: Mapping[str, bytes]) -> Verdict:
        credentials = _parse(header)
        if credentials is None:
            return Verdict.MISSING
        user, password = credentials
        hashed = users.get(user)
        key = hashlib.sha256(repr((user, hashed, password)).encode()).digest()
        if key in self._granted:
            return Verdict.GRANTED
        if key in self._refused:
            return Verdict.REFUSED
        if self._waiting >= MAX_WAITING:
            return Verdict.BUSY
        self._waiting += 1
        try:
            async with self._lock:
                matches = await asyncio.get_running_loop().run_in_executor(
                    None, _checkpw, password, hashed or _UNKNOWN_USER_HASH
                )
        finally:
            self._waiting -= 1
        if matches and hashed is not None:
            self._granted.add(key)
            return Verdict.GRANTED
        self._refused.add(key)
        return Verdict.REFUSED


def _checkpw(password: bytes, hashed: bytes) -> bool:
    import bcrypt  # only a node whose web config has users pays for loading it

    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


def _parse(header: str | None) -> tuple[str, bytes] | None:
    """User and password of a `Basic` header, or None when absent or malformed."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
        user, sep, password = decoded.partition(b":")
        return (user.decode(), password) if sep else None
    except (binascii.Error, UnicodeDecodeError):
        return None
