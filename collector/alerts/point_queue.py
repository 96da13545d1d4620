"""Alert points and notifier dead letters on their way to the collector's writer.

Every alert event becomes one ``alerts`` point (points.py); a notification
that was rejected or gave up becomes a ``cityedge_deadletter`` point. They
wait here, bounded (``MAX_PENDING_POINTS``, the oldest dropped and counted),
and are written a few at a time; a failed write is counted and retried with
the next batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from cityedge.redact import redact_text
from collector.alerts.events import AlertEvent
from collector.alerts.health import RunnerStats
from collector.deadletter import DEADLETTER_MEASUREMENT
from collector.lineprotocol import Point
from collector.notifiers.webhook.payload import body

log = logging.getLogger("collector.alerts.runner")  # its records, as before the split

WritePoints = Callable[[Sequence[Point]], Awaitable[None]]
# Alert points waiting for the writer; past this the oldest are dropped, counted.
MAX_PENDING_POINTS = 100_000


class PointQueue:
    """Points for ``write_points`` (none kept without it), written by ``run`` and ``flush``."""

    def __init__(self, write_points: WritePoints | None, stats: RunnerStats) -> None:
        self.write_points = write_points
        self.stats = stats
        self._points: deque[tuple[Point, Callable[[], None] | None]] = deque()
        self._ready = asyncio.Event()

    def put(self, points: list[Point], written: Callable[[], None] | None = None) -> None:
        """Queue points; ``written`` is called once the writer took the last of them."""
        if self.write_points is None:
            return
        self._points.extend((p, written if i == len(points) - 1 else None)
                            for i, p in enumerate(points))
        while len(self._points) > MAX_PENDING_POINTS:
            self._points.popleft()
            self.stats.points_dropped += 1
        self._ready.set()

    def dead_letter(self, notifier: str, event: AlertEvent, reason: str, detail: str) -> None:
        """A notification given up (Delivery's ``on_give_up``), kept in InfluxDB."""
        self.put([Point(DEADLETTER_MEASUREMENT, {"reason": reason, "notifier": notifier},
                        {"detail": redact_text(detail)[:2000], "raw": body(event).decode(),
                         "alert_id": event.alert_id}, event.time_ns)])

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(0.2)  # gather a few events into one write
            await self.flush()

    async def flush(self) -> None:
        self._ready.clear()
        if not self._points or self.write_points is None:
            return
        queued = list(self._points)
        batch = [p for p, _ in queued]
        try:
            await self.write_points(batch)
        except Exception as exc:  # kept and retried with the next batch
            self.stats.write_errors += 1
            log.warning("alerts: writing %d alert points failed: %s", len(batch), exc)
            self._ready.set()
            await asyncio.sleep(1.0)
            return
        for _ in batch:
            self._points.popleft()
        for _, written in queued:
            if written is not None:
                written()
