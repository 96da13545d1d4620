"""The transport interface shared by the MQTT and HTTP uplinks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from cityedge.uplink import Ack


class Transport(Protocol):
    # Handler for downlink messages (alert displays), returning the ack to send
    # back, or None to send none (a message no collector can be shown to have
    # sent); transports without a downlink (HTTP) never call it.
    downlink: Callable[[bytes], Awaitable[bytes | None]] | None

    async def start(self) -> None: ...

    def ready(self) -> bool:
        """True when a send now has a chance of reaching the collector."""
        ...

    def send(self, payload: bytes) -> bool:
        """Hand a batch over; False if it could not even be queued (it will be resent)."""
        ...

    async def next_ack(self) -> Ack: ...

    async def close(self) -> None: ...
