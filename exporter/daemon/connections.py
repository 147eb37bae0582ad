"""Accepting connections so that no client can take the server down.

Each accepted socket is counted against a connection limit set below the
process's file-descriptor limit, so the engines' connections and the state
file always find a descriptor. When the limit is reached, the connection idle
longest (one that never sent a full request first) is closed for the new one:
a flood of idle connections cannot lock Prometheus out. New connections are
taken at a bounded pace; what each one may send, and for how long, is
http_connection's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
from collections import OrderedDict
from collections.abc import Callable

from llm_cost_exporter.daemon.client_errors import RateLimitedLog
from llm_cost_exporter.daemon.http_connection import HttpConnection
from llm_cost_exporter.daemon.token_bucket import TokenBucket

MAX_CONNECTIONS = 512
LISTEN_BACKLOG = 128
ACCEPT_RATE = 100.0
"""New connections taken in a second, after a burst of ACCEPT_BURST."""
ACCEPT_BURST = 100
ACCEPT_RETRY = 0.1
OUTGOING_RESERVE = 64
"""Descriptors kept for the engines' connection pool (its limit)."""
SPARE_RESERVE = 32
"""Descriptors kept for the state file, NVML, logging and name resolution."""
MIN_CONNECTIONS = 8

log = logging.getLogger("llm-cost-exporter")


def connection_limit(fd_limit: int, open_fds: int) -> int:
    """Connections to serve at once: what the descriptor limit leaves after the
    descriptors already open and the reserves, at most MAX_CONNECTIONS."""
    room = fd_limit - open_fds - OUTGOING_RESERVE - SPARE_RESERVE
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, room))


def process_connection_limit() -> int:
    """`connection_limit` for this process's soft RLIMIT_NOFILE and open descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    try:
        open_fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = 16
    limit = connection_limit(soft, open_fds)
    log.info("at most %d HTTP connections at once (file descriptor limit %d)", limit, soft)
    if limit < 64:
        log.warning(
            "the file descriptor limit (%d) leaves room for only %d HTTP connections; "
            "raise it (ulimit -n, LimitNOFILE=) to at least 1024",
            soft,
            limit,
        )
    return limit


class Connections:
    """The open connections, counted against `limit`, idle ones ordered for closing."""

    def __init__(self, limit: int, errors: RateLimitedLog) -> None:
        self.limit = limit
        self._errors = errors
        self._fresh: OrderedDict[HttpConnection, None] = OrderedDict()
        """Idle, no request answered yet (accepted, in handshake, or headers pending)."""
        self._served: OrderedDict[HttpConnection, None] = OrderedDict()
        """Idle after answering at least one request."""
        self._busy: set[HttpConnection] = set()

    def __len__(self) -> int:
        return len(self._fresh) + len(self._served) + len(self._busy)

    def make_room(self) -> bool:
        """Room for one more connection, made by closing the one idle longest when the
        limit is reached; False when every connection is busy."""
        if len(self) < self.limit:
            return True
        idle = self._fresh or self._served
        if not idle:
            self._errors.note("connection limit", f"all {self.limit} connections busy: refused one")
            return False
        victim, _ = idle.popitem(last=False)
        self._errors.note(
            "connection limit",
            f"connection limit {self.limit} reached: closed the connection idle longest",
        )
        victim.abort()
        return True

    def add(self, conn: HttpConnection) -> None:
        self._fresh[conn] = None

    def busy(self, conn: HttpConnection) -> None:
        if conn in self._fresh or conn in self._served:
            self._fresh.pop(conn, None)
            self._served.pop(conn, None)
            self._busy.add(conn)

    def idle(self, conn: HttpConnection) -> None:
        if conn in self._busy:
            self._busy.discard(conn)
            self._served[conn] = None

    def release(self, conn: HttpConnection) -> None:
        self._fresh.pop(conn, None)
        self._served.pop(conn, None)
        self._busy.discard(conn)

    def close_all(self) -> None:
        for conn in [*self._fresh, *self._served, *self._busy]:
            conn.abort()


def listening_sockets(host: str | None, port: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for `host` (None: every interface), as
    asyncio's create_server makes them."""
    infos = socket.getaddrinfo(
        host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """Listening sockets, each with its own accepting task, counting what they accept.

    Accepting is this loop rather than asyncio's, so that a flood of new
    connections (each answered 400, or each opened to be closed) is taken in at
    ACCEPT_RATE at most: the rest wait in the kernel's listen queue while the
    connections already open, a scraper's among them, are served.
    """

    def __init__(
        self,
        protocol: Callable[[], HttpConnection],
        connections: Connections,
        errors: RateLimitedLog,
    ) -> None:
        self._protocol = protocol
        self.connections = connections
        self._errors = errors
        self._pace = TokenBucket(ACCEPT_RATE, ACCEPT_BURST)
        self.sockets: list[socket.socket] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, host: str | None, port: int) -> None:
        """Listen on `host` (None: every interface); OSError when that cannot be."""
        self.sockets = listening_sockets(host, port)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._accept(sock)) for sock in self.sockets]

    def close(self) -> None:
        """Stop accepting, and close every connection accepted."""
        for task in self._tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            if sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
            sock.close()
        self.connections.close_all()

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._pace.wait())
            try:
                sock, _ = await loop.sock_accept(listening)
            except OSError as error:  # out of descriptors, or aborted before accepted
                self._errors.note("accept", f"accepting a connection failed: {error}")
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            self._pace.take()
            if not self.connections.make_room():
                sock.close()
                continue
            try:
                await loop.connect_accepted_socket(self._protocol, sock)
            except OSError:
                sock.close()  # gone before it was served
