"""Write, then acknowledge: the collector's half of the delivery promise.

Sources (MQTT, HTTP) submit accepted batches; the pipeline groups them into
writes of up to ``max_points``, writes until InfluxDB accepts, and only then
resolves each batch's future, on which the source sends its ack. Nothing is
kept anywhere else: a killed collector loses only unacked work, which the
gateways resend.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cityedge.redact import redact_text
from collector.ingest import DEADLETTER_MEASUREMENT, Accepted
from collector.lineprotocol import Point, format_point
from collector.writers import Rejected, Retryable, Throttled, TooLarge, Writer

log = logging.getLogger(__name__)

# Backoff while the database is down: short enough to notice recovery within
# a second or two, capped so a long outage does not hammer it.
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0


@dataclass
class DeliveryStats:
    batches: int = 0
    readings: int = 0
    writes: int = 0
    write_retries: int = 0
    dead_letters: int = 0
    rejected_points: int = 0
    last_write_s: float = 0.0
    last_error: str = ""


class WritePipeline:
    def __init__(self, writer: Writer, *, max_points: int = 5000, linger: float = 0.05) -> None:
        self.writer = writer
        self.max_points = max_points
        self.linger = linger
        self.stats = DeliveryStats()
        self._pending: deque[tuple[Accepted, asyncio.Future[None]]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self.on_written: Callable[[list[Point]], None] | None = None

    def submit(self, accepted: Accepted) -> asyncio.Future[None]:
        """Queue a batch; the future resolves once every point of it is in the database."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not accepted.points and not accepted.dead_letters:
            fut.set_result(None)  # a time probe: nothing to write
            return fut
        self._pending.append((accepted, fut))
        self._wake.set()
        return fut

    @property
    def pending_points(self) -> int:
        return sum(len(a.points) + len(a.dead_letters) for a, _ in self._pending)

    async def run(self) -> None:
        while not (self._closing and not self._pending):
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.linger and self.pending_points < self.max_points and not self._closing:
                await asyncio.sleep(self.linger)
            group: list[tuple[Accepted, asyncio.Future[None]]] = []
            points: list[Point] = []
            while self._pending and (
                not points
                or len(points) + len(self._pending[0][0].points)
                + len(self._pending[0][0].dead_letters) <= self.max_points
            ):
                accepted, fut = self._pending.popleft()
                group.append((accepted, fut))
                points.extend(accepted.points)
                points.extend(accepted.dead_letters)
            await self.write_durably(points)
            for accepted, fut in group:
                self.stats.batches += 1
                self.stats.readings += accepted.readings
                self.stats.dead_letters += len(accepted.dead_letters)
                if not fut.done():
                    fut.set_result(None)
            if self.on_written is not None:
                # Acks first (their senders run during this yield), then the alert engine,
                # which can take longer than the write itself with many rules.
                await asyncio.sleep(0)
                # Alerts see what InfluxDB accepted (dead letters are not readings).
                self.on_written([p for accepted, _ in group for p in accepted.points])

    async def close(self) -> None:
        """Finish what was submitted (the caller bounds this with a timeout)."""
        self._closing = True
        self._wake.set()

    async def write_durably(self, points: Sequence[Point]) -> None:
        """Return only when every point is in the database, or dead-lettered there."""
        delay = RETRY_MIN_S
        while True:
            started = time.perf_counter()
            try:
                await self.writer.write(points)
                self.stats.writes += 1
                self.stats.last_write_s = time.perf_counter() - started
                return
            except Throttled as exc:
                self.stats.write_retries += 1
                self.stats.last_error = redact_text(str(exc))
                await asyncio.sleep(exc.retry_after)
            except Retryable as exc:
                self.stats.write_retries += 1
                if self.stats.last_error != redact_text(str(exc)):
                    log.warning("write failed, retrying: %s", redact_text(str(exc)))
                self.stats.last_error = redact_text(str(exc))
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, RETRY_MAX_S)
            except (Rejected, TooLarge) as exc:
                # Rewriting good points is harmless (they overwrite themselves),
                # so halve until the bad one stands alone.
                self.stats.last_error = redact_text(str(exc))
                if len(points) > 1:
                    mid = len(points) // 2
                    await self.write_durably(points[:mid])
                    await self.write_durably(points[mid:])
                    return
                if points[0].measurement == DEADLETTER_MEASUREMENT:
                    log.error("dead letter itself refused, dropped and counted: %s", exc)
                    self.stats.rejected_points += 1
                    return
                log.error("point refused by the database, dead-lettered: %s", exc)
                self.stats.rejected_points += 1
                await self.write_durably([refused_point(points[0], str(exc))])
                return


def refused_point(point: Point, reason: str) -> Point:
    """A point the database refused, kept as a dead letter with the database's reason."""
    return Point(
        DEADLETTER_MEASUREMENT,
        {"gateway": point.tags.get("gateway", ""), "reason": "database_refused",
         "sensor": point.tags.get("sensor", ""), "measurement": point.measurement},
        {
            "seq": point.fields.get("seq", 0),
            "epoch": str(point.fields.get("epoch", "")),
            "detail": reason[:2000],
            "raw": format_point(point),
        },
        point.time_ns,
    )
