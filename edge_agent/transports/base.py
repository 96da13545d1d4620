"""The transport interface shared by the MQTT and HTTP uplinks."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol

from cityedge.uplink import Ack

log = logging.getLogger(__name__)


class Transport(Protocol):
    # Handler for downlink messages (alert displays), returning the ack to send
    # back, or None to send none (a message no collector can be shown to have
    # sent); transports without a downlink (HTTP) never call it.
    downlink: Callable[[bytes], Awaitable[bytes | None]] | None

    async def start(self) -> None: ...

    def ready(self) -> bool:
        """True when a send now has a chance of reaching the collector."""
        ...

    def problem(self) -> str:
        """Why the uplink is not ready, in words for the log ("" if unknown)."""
        ...

    def send(self, payload: bytes) -> bool:
        """Hand a batch over; False if it could not even be queued (it will be resent)."""
        ...

    async def next_ack(self) -> Ack: ...

    @property
    def bad_ack_reasons(self) -> Counter[str]:
        """Acks refused here (unsealed, a bad seal, unusable), by reason."""
        ...

    def health_fields(self) -> dict[str, int]:
        """This uplink's own counters for gateway_health (health.py adds the rest)."""
        ...

    async def close(self) -> None: ...


def note_bad_ack(reasons: Counter[str], reason: str, detail: str) -> None:
    """Count an ack refused at the transport; the first of each reason is logged, the rest
    only counted (a flood must not fill the log)."""
    reasons[reason] += 1
    if reasons[reason] == 1:
        log.warning("unusable ack (this kind is counted, not logged again): %s", detail)
