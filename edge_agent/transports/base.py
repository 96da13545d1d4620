"""The transport interface shared by the MQTT and HTTP uplinks."""

from __future__ import annotations

from typing import Protocol

from cityedge.uplink import Ack


class Transport(Protocol):
    async def start(self) -> None: ...

    def ready(self) -> bool:
        """True when a send now has a chance of reaching the collector."""
        ...

    def send(self, payload: bytes) -> bool:
        """Hand a batch over; False if it could not even be queued (it will be resent)."""
        ...

    async def next_ack(self) -> Ack: ...

    async def close(self) -> None: ...
