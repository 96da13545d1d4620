"""Write, then acknowledge: the collector's half of the delivery promise.

Sources (MQTT, HTTP) submit accepted batches; the pipeline groups them into
writes of up to ``max_points``, writes until InfluxDB accepts, and only then
resolves each batch's future, on which the source sends its ack. Nothing is
kept anywhere else: a killed collector loses only unacked work, which the
gateways resend.

What the database refuses is settled per distinct refusal, not per point
(collector/refusals.py reads which points an answer names), within a budget of
requests per group; a batch that cannot be settled now is answered "not
written" on its own, and the other batches of its group are acked.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cityedge.backoff import Backoff, Uniform
from cityedge.logthrottle import LogThrottle
from cityedge.redact import redact_text
from collector.deadletter import DEADLETTER_MEASUREMENT, dead_letter
from collector.ingest import Accepted
from collector.lineprotocol import LineProtocolError, Point, check, format_point, identity_of
from collector.refusals import Item, halves, halves_by_part, named
from collector.writers import DeliveryRejected, Retryable, Throttled, TooLarge, Writer
from collector.writers.errors import UNNAMED, PartialWrite, RefusalKind

log = logging.getLogger(__name__)

# Backoff while the database is down: short enough to notice recovery within
# a second or two, capped so a long outage does not hammer it.
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
# Distinct dead-letter reasons counted one by one; the rest are counted as "other".
# Ingest's reason codes are a fixed set of a few dozen.
MAX_REASONS = 64
# Requests one group may cost once the database refuses some of it. A refusal that
# names its points costs one request each (a 5,000-point group with one field type
# conflict takes 2); bisecting one unnamed bad point out of 5,000 takes about 28.
# Past it the unsettled batches are answered "not written", so one gateway's batch
# cannot hold every other gateway's behind it for thousands of requests.
MAX_REQUESTS_PER_GROUP = 64
# Writes in flight at once. Two writers put 136k points/s into InfluxDB 1.6 on the
# 2-core reference machine against 77.5k for one (bench/collector_bench.py's baseline):
# the second hides one write's round trip behind the other's.
WRITE_CONCURRENCY = 2


class WriteFailed(Exception):
    """A group of batches could not be written for a reason no retry mends (a bug, or an
    input nothing foresaw). Its batches are not acked: the gateways resend them."""


@dataclass
class DeliveryStats:
    batches: int = 0
    readings: int = 0
    writes: int = 0
    write_retries: int = 0
    dead_letters: int = 0
    # Points InfluxDB refused; each was dead-lettered with InfluxDB's reason ...
    rejected_points: int = 0
    # ... unless the dead letter itself was refused as older than the retention
    # policy: then nothing of that point is stored, and it is counted here alone.
    dropped_points: int = 0
    # Batches answered "not written" (not acked: the gateways resend them), by reason:
    # series_limit (the database's series limits), dead_letter_refused (a dead letter
    # refused for any reason but retention), write_budget (past max_requests).
    not_written: Counter[str] = field(default_factory=Counter)
    # Groups that reached max_requests.
    over_budget: int = 0
    # Points no line of line protocol could carry, dead-lettered instead (the backstop
    # behind ingest's validation: it should stay 0).
    unencodable_points: int = 0
    # Groups whose write failed unexpectedly: their batches were answered "not written".
    failed_writes: int = 0
    # The alert engine raised on points already written (they are not written again).
    alert_feed_errors: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    last_write_s: float = 0.0
    last_error: str = ""

    def count_dead_letter(self, reason: str) -> None:
        if reason not in self.dead_letter_reasons and len(self.dead_letter_reasons) >= MAX_REASONS:
            reason = "other"
        self.dead_letter_reasons[reason] += 1


class WritePipeline:
    def __init__(self, writer: Writer, *, max_points: int = 5000, linger: float = 0.05,
                 retry: tuple[float, float] = (RETRY_MIN_S, RETRY_MAX_S),
                 uniform: Uniform = random.uniform,
                 max_requests: int = MAX_REQUESTS_PER_GROUP,
                 concurrency: int = WRITE_CONCURRENCY) -> None:
        # While InfluxDB is down: (minimum, maximum) seconds between tries, half jitter.
        self.retry = retry
        self.uniform = uniform
        self.writer = writer
        self.max_points = max_points
        self.max_requests = max_requests
        self.concurrency = max(1, concurrency)
        self.linger = linger
        self.stats = DeliveryStats()
        self._pending: deque[tuple[Accepted, asyncio.Future[None]]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self.on_written: Callable[[list[Point]], None] | None = None
        self._log = LogThrottle(log)
        self._errors = LogThrottle(log, level=logging.ERROR)  # per point or batch: a flood

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

    def health_fields(self) -> dict[str, int | float]:
        """The pipeline's counters, as the collector's health point and the HTTP source's
        health page both show them."""
        s = self.stats
        return {
            "batches": s.batches,
            "readings": s.readings,
            "writes": s.writes,
            "write_retries": s.write_retries,
            "dead_letters": s.dead_letters,
            "rejected_points": s.rejected_points,
            "dropped_points": s.dropped_points,
            "pending_points": self.pending_points,
            "last_write_ms": round(s.last_write_s * 1000, 3),
        }

    async def run(self) -> None:
        """Write groups, up to ``concurrency`` at once (InfluxDB takes two writers' points
        faster than one's), and settle them in the order they were taken: acks and the
        alert feed see groups in order whatever order InfluxDB answers in."""
        writing: deque[tuple[list[tuple[Accepted, asyncio.Future[None]]],
                             asyncio.Task[dict[int, str]]]] = deque()
        while not (self._closing and not self._pending and not writing):
            if self._pending and len(writing) < self.concurrency:
                if self.linger and self.pending_points < self.max_points and not self._closing:
                    await asyncio.sleep(self.linger)
                group = self._next_group()
                writing.append((group, asyncio.create_task(self.write_group(
                    [(*a.points, *a.dead_letters) for a, _ in group]))))
                continue
            if not writing:
                self._wake.clear()
                await self._wake.wait()
                continue
            oldest = writing[0][1]
            if not oldest.done():
                waits: set[asyncio.Future[object]] = {oldest}  # type: ignore[arg-type]
                wake = None
                if len(writing) < self.concurrency:  # room for a write: also wait for work
                    self._wake.clear()
                    wake = asyncio.ensure_future(self._wake.wait())
                    waits.add(wake)  # type: ignore[arg-type]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if wake is not None and not wake.done():
                    wake.cancel()
                if not oldest.done():
                    continue
            group, task = writing.popleft()
            try:
                lost = task.result()
            except Exception as exc:  # one group must never stop the pipeline
                self._failed(group, exc)
                continue
            await self._settle_group(group, lost)

    async def _settle_group(self, group: list[tuple[Accepted, asyncio.Future[None]]],
                            lost: dict[int, str]) -> None:
        written = []
        for i, (accepted, fut) in enumerate(group):
            if i in lost:
                if not fut.done():
                    fut.set_exception(WriteFailed(f"not written: {lost[i]}"))
                continue
            written.append(accepted)
            self.stats.batches += 1
            self.stats.readings += accepted.readings
            self.stats.dead_letters += len(accepted.dead_letters)
            for dl in accepted.dead_letters:
                self.stats.count_dead_letter(dl.tags.get("reason", ""))
            if not fut.done():
                fut.set_result(None)
        if self.on_written is not None:
            # Acks first (their senders run during this yield), then the alert engine,
            # which can take longer than the write itself with many rules.
            await asyncio.sleep(0)
            self._feed([p for accepted in written for p in accepted.points])

    def _next_group(self) -> list[tuple[Accepted, asyncio.Future[None]]]:
        group: list[tuple[Accepted, asyncio.Future[None]]] = []
        n = 0
        while self._pending and (
            not group
            or n + len(self._pending[0][0].points)
            + len(self._pending[0][0].dead_letters) <= self.max_points
        ):
            accepted, fut = self._pending.popleft()
            group.append((accepted, fut))
            n += len(accepted.points) + len(accepted.dead_letters)
        return group

    def _failed(self, group: list[tuple[Accepted, asyncio.Future[None]]],
                exc: Exception) -> None:
        """Answer every batch of the group "not written" (the sources then tell the broker
        and the gateway resends), count it, and keep going."""
        self.stats.failed_writes += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
        self._log.note("write_failed", f"write failed, {len(group)} batches not acked",
                       time.monotonic(), exc_info=exc)
        for _, fut in group:
            if not fut.done():
                fut.set_exception(WriteFailed(self.stats.last_error))

    def _feed(self, points: list[Point]) -> None:
        """Alerts see what InfluxDB accepted (dead letters are not readings)."""
        assert self.on_written is not None
        try:
            self.on_written(points)
        except Exception as exc:  # the readings are written; alerts must not undo that
            self.stats.alert_feed_errors += 1
            self._log.note("alert_feed", "alert engine failed on written points",
                           time.monotonic(), exc_info=exc)

    async def close(self) -> None:
        """Finish what was submitted (the caller bounds this with a timeout)."""
        self._closing = True
        self._wake.set()

    async def write_durably(self, points: Sequence[Point]) -> None:
        """Return only when every point is in the database, or dead-lettered there;
        WriteFailed when the database would not take them now (the caller keeps them)."""
        lost = await self.write_group([points])
        if lost:
            raise WriteFailed(f"not written: {lost[0]}")

    async def write_group(self, parts: Sequence[Sequence[Point]]) -> dict[int, str]:
        """Write each part (one batch's points) in as few requests as the answers allow.

        Returns the parts not written, by position, with the reason; every other part
        is in the database, or dead-lettered there. A refusal that names its points
        settles them at once (dead letters; the rest written again), one naming
        nothing is bisected, and past ``max_requests`` what is still unsettled is not
        written: its gateways resend it later.
        """
        lost: dict[int, str] = {}
        budget = self.max_requests
        stack = [[(i, p) for i, part in enumerate(parts) for p in part]]
        while stack:
            items = [it for it in stack.pop() if it[0] not in lost]
            if not items:
                continue
            if budget <= 0:
                self.stats.over_budget += 1
                for rest in (items, *stack):
                    for part, _ in rest:
                        self._lose(lost, part, "write_budget",
                                   f"over {self.max_requests} requests for one group")
                break
            budget -= 1
            try:
                await self._send([p for _, p in items])
            except (LineProtocolError, UnicodeError):
                # Ingest makes only points that encode; this is the backstop behind it.
                budget += 1  # nothing was sent
                points = self._quarantine([p for _, p in items])
                stack.append([(part, p) for (part, _), p in zip(items, points, strict=True)])
            except (DeliveryRejected, TooLarge) as exc:
                self.stats.last_error = redact_text(str(exc))
                stack.extend(reversed(self._settle(items, exc, lost)))
        return lost

    async def _send(self, points: list[Point]) -> None:
        """One write, tried again while the database is down or asks us to wait."""
        backoff = Backoff(*self.retry, jitter="half")
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
                await asyncio.sleep(backoff.next(self.uniform))

    def _settle(self, items: list[Item], exc: DeliveryRejected | TooLarge,
                lost: dict[int, str]) -> list[list[Item]]:
        """What to write next after a refusal of ``items``: dead letters in place of the
        points it names, a split when it names none, nothing for a part given up."""
        refusal = exc.refusal if isinstance(exc, PartialWrite) else UNNAMED
        detail = str(exc)
        if refusal.kind is RefusalKind.SERIES_LIMIT:
            # Not the points' fault, and not for ever: no dead letters. Only the parts
            # holding a refused point are given up, found by halving whole parts.
            split = halves_by_part(items)
            if split is None:
                self._lose(lost, items[0][0], "series_limit", detail)
                return []
            return split
        which = named(items, refusal)
        if which is None:
            # Halve (rewriting good points is harmless): whole batches first, so the
            # others' are settled in a few requests whatever one batch holds.
            if len(items) > 1:
                return halves_by_part(items) or halves(items)
            which = [0]
        refused = set(which)
        out = [it for i, it in enumerate(items) if i not in refused]
        now = time.monotonic()
        for i in which:
            part, point = items[i]
            if point.measurement != DEADLETTER_MEASUREMENT:
                self.stats.rejected_points += 1
                self._errors.note("point_refused", "point refused by the database, "
                                  f"dead-lettered: {redact_text(detail)}", now)
                out.append((part, refused_point(point, detail)))
            elif refusal.kind is RefusalKind.RETENTION:
                # The one loss admitted (docs/delivery.md): older than the database keeps.
                self.stats.dropped_points += 1
                self._errors.note("dead_letter_dropped", "dead letter beyond the retention "
                                  f"policy, dropped and counted: {redact_text(detail)}", now)
            else:
                self._lose(lost, part, "dead_letter_refused", detail)
        return [out]

    def _lose(self, lost: dict[int, str], part: int, reason: str, detail: str) -> None:
        """Give a part up for now: its batch is answered "not written" and resent."""
        if part in lost:
            return
        lost[part] = reason
        self.stats.not_written[reason] += 1
        self._errors.note(f"not_written_{reason}", f"batch not written ({reason}), the "
                          f"gateway resends it: {redact_text(detail)[:500]}", time.monotonic())

    def _quarantine(self, points: Sequence[Point]) -> list[Point]:
        """Each point that cannot be encoded, replaced by a dead letter that can."""
        out: list[Point] = []
        for p in points:
            problem = check(p)
            if problem is None:
                out.append(p)
                continue
            self.stats.unencodable_points += 1
            self._log.note("unencodable", f"point cannot be encoded, dead-lettered: {problem}",
                           time.monotonic())
            out.append(quarantined_point(p, "unencodable", problem))
        if len(out) == len(points) and all(a is b for a, b in zip(out, points, strict=True)):
            # Every point encodes: the writer failed for a reason of its own.
            raise WriteFailed("the writer could not encode points that encode")
        return out


def quarantined_point(point: Point, reason: str, detail: str) -> Point:
    """A point that cannot be written as it is, kept as a dead letter that always can be
    (collector/deadletter.py), with its time if InfluxDB can store it."""
    try:
        raw = format_point(point)
    except LineProtocolError:
        raw = repr(point)  # repr escapes what a line cannot carry
    identity = identity_of(point)
    seq, epoch = (identity.seq, identity.epoch) if identity is not None else (0, "")
    return dead_letter(gateway=str(point.tags.get("gateway", "")), reason=reason,
                       sensor=str(point.tags.get("sensor", "")), measurement=point.measurement,
                       seq=seq, epoch=str(epoch), detail=detail, raw=raw, time_ns=point.time_ns)


def refused_point(point: Point, reason: str) -> Point:
    """A point the database refused, kept as a dead letter with the database's reason."""
    return quarantined_point(point, "database_refused", reason)
