"""Slow and idle clients cannot hold the HTTP source's connections.

A client that opens a connection and sends its headers a byte at a time, or
never, holds a file descriptor for as long as the server lets it; 1,100 such
connections once exhausted the collector's descriptors. Three guards:

- ``max_connections``: past it, a new connection gets a 503 with Retry-After
  and is closed at once; the cap is kept below the process's descriptor limit.
- ``header_timeout``: a connection whose first request has not started
  (headers complete) within it is closed. Between requests on a keep-alive
  connection, aiohttp's own ``keepalive_timeout`` does the same.
- The body is read under a timeout by the handler (``HttpSource._accept``).

aiohttp (before 3.14) has no header timeout of its own, so the guard wraps
the protocol factory: it sees each connection made, and a middleware sees
each request start. Counts go to ``counts`` and on to the health point.
"""

from __future__ import annotations

import asyncio
import resource
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

# Listen backlog: connections the kernel holds before we accept them (Linux's
# somaxconn default is 4096; aiohttp and asyncio default to 100-128).
BACKLOG = 128
# Descriptors kept for everything else: connections accepted in bursts (up to a backlog
# each) before the count catches up, InfluxDB and broker connections, files, the log.
# Measured: 1,100 connections at once under ulimit -n 1024 with one backlog kept made
# one "Too many open files" at accept; asyncio then pauses accepting for a second.
FD_RESERVE = 2 * BACKLOG + 64

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def connection_cap(wanted: int) -> int:
    """``wanted``, or less if the descriptor limit (ulimit -n) could not carry it."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))


class _Busy(asyncio.Protocol):
    """Answers 503 and hangs up: the connection is over the cap."""

    def __init__(self, retry_after: int) -> None:
        self.answer = (f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\n"
                       "Connection: close\r\nContent-Length: 0\r\n\r\n").encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.answer)
        transport.close()


class ConnectionGuard:
    def __init__(self, max_connections: int, header_timeout: float, retry_after: int,
                 on_refused: Callable[[str], None]) -> None:
        self.max_connections = max_connections
        self.retry_after = retry_after
        self.header_timeout = header_timeout
        self.on_refused = on_refused
        self.counts: Counter[str] = Counter()
        self.server: web.Server | None = None
        # Connections whose first request has not started yet (at most max_connections).
        self._waiting: set[asyncio.BaseProtocol] = set()

    def __call__(self) -> asyncio.BaseProtocol:
        """The protocol factory for ``loop.create_server``."""
        assert self.server is not None, "set server (AppRunner.server) first"
        if len(self.server.connections) >= self.max_connections:
            self._refused("too_many_connections")
            return _Busy(self.retry_after)
        handler = self.server()
        self._waiting.add(handler)
        asyncio.get_running_loop().call_later(self.header_timeout, self._expire, handler)
        return handler

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self._waiting.discard(request.protocol)
        return await handler(request)

    def _expire(self, handler: web.RequestHandler) -> None:
        if handler not in self._waiting:
            return  # its first request started in time
        self._waiting.discard(handler)
        transport = handler.transport
        if transport is not None and not transport.is_closing():
            self._refused("header_timeout")
            transport.close()

    def _refused(self, reason: str) -> None:
        self.counts[reason] += 1
        self.on_refused(reason)
