"""The writer plugin interface and the name -> factory registry.

A writer validates its config without touching the network, connects in
``start()``, writes points or raises a classified ``WriteError``, and closes.
Buffering, batching, retry and dead-lettering belong to the collector, not to
the writer (Telegraf's models/ vs plugins/ split).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from cityedge.yamlconfig import KeyPath, Located
from collector.lineprotocol import Point

# How long problem() waits for the database to answer its health request.
PING_TIMEOUT_S = 3.0


class Writer(Protocol):
    name: str

    async def start(self) -> None: ...

    async def write(self, points: Sequence[Point]) -> None: ...

    async def problem(self) -> str | None:
        """Why the database cannot be reached now, in words for the log; None if it can."""
        ...

    @property
    def target(self) -> str:
        """The database as a technician names it (type and redacted URL)."""
        ...

    async def close(self) -> None: ...


WriterFactory = Callable[[dict[str, Any], Located, KeyPath], Writer]
REGISTRY: dict[str, WriterFactory] = {}


def register(name: str, factory: WriterFactory) -> None:
    REGISTRY[name] = factory
