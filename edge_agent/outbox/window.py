"""Ack bookkeeping for the uplink, sans-IO: what to send next, what is in flight, what is due again.

The shell asks ``plan()`` what to read from the outbox next, reports what it
sent with ``sent()``, feeds acks to ``acked()`` and calls ``expire(now)`` on a
timer. Time is passed in; nothing here reads a clock.

Live first (DESIGN invariant 7): readings are sent in two lanes. The live
lane follows the newest durable readings; whenever more than
``LIVE_GAP_BATCHES`` batches have piled up behind it (an outage, a restart
with a full outbox), the older part becomes backlog and the live lane jumps
ahead. The backlog drains oldest first in whatever window the live lane
leaves free, so its rate is set by the collector's acks, not by a timer.

An ack can only confirm what was sent (DESIGN, Trust): ``acked`` applies an
ack to the seqs of the batch it names, and only while that batch is known
here: in flight, or expired and due again. It returns what may be deleted,
the intersection; whatever else the ack names is ignored and counted
(``ack_seqs_ignored``), and an ack for a batch id not known here (one left at
the broker by a previous run, or made up) confirms nothing
(``acks_unknown_batch``). Nothing here turns a range into a set: an ack for
``[[1, 2**62]]`` costs the same as one for ``[[1, 5]]``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from cityedge.uplink import SeqRanges
from cityedge.uplink.timing import MAX_INT64
from edge_agent.outbox.pacing import Pacing

# How many batches of unsent readings the live lane may trail by before the
# rest is handed to the backlog lane: two keeps ordinary bursts in order.
LIVE_GAP_BATCHES = 2
# Batch ids a resent batch still answers to (its own and the sends before it):
# a slow ack of an earlier send still confirms it. Older ids are forgotten; an
# ack for one costs a resend, nothing else.
MAX_BATCH_IDS = 8
# Counters are InfluxDB integer fields (int64); one ack may claim 2**63 seqs.
COUNTER_MAX = MAX_INT64

Lane = Literal["live", "backlog"]


@dataclass(frozen=True, slots=True)
class SendNew:
    """Read up to ``limit`` readings with ``after`` < seq <= ``upto``."""

    after: int
    upto: int
    limit: int
    lane: Lane = "live"


@dataclass(frozen=True, slots=True)
class Resend:
    """Read these seqs again (those still in the outbox) and send them.

    ``ids``: the batch ids they were sent under before, carried to the resend.
    """

    seqs: SeqRanges
    limit: int
    ids: tuple[int, ...] = field(default=(), compare=False)


Plan = SendNew | Resend


@dataclass(frozen=True, slots=True)
class AckResult:
    """What an ack may do: delete ``confirmed``, nothing else.

    known: the ack names a batch handed out here (in flight or due again);
    in_flight: that batch was in flight, not expired, when the ack came;
    ignored: how many seqs the ack named outside that batch.
    """

    confirmed: SeqRanges
    known: bool
    in_flight: bool
    ignored: int = 0


@dataclass(slots=True, eq=False)  # one batch is only ever itself
class _Sent:
    """Seqs handed out in one batch and not confirmed yet, under ``ids`` (newest first)."""

    seqs: SeqRanges
    deadline: float
    ids: tuple[int, ...]
    # When it was sent; NaN for a resend, whose ack gives no round trip (pacing.py, Karn).
    sent_at: float = float("nan")


class DeliveryWindow:
    """At most ``max_in_flight`` unacked batches; a batch unacked after its timeout is resent.

    With ``adaptive`` (the default) the window and the timeout follow the round trip
    (pacing.py): ``max_in_flight`` is the largest window and ``ack_timeout`` the
    timeout until the first ack. Without, both stay as configured.

    After a restart the window is empty: everything still in the outbox is
    backlog and is sent again. Resends are idempotent downstream.
    """

    def __init__(self, *, max_in_flight: int, ack_timeout: float, batch_size: int,
                 durable_seq: int = 0, adaptive: bool = True) -> None:
        if max_in_flight < 1 or batch_size < 1 or ack_timeout <= 0:
            raise ValueError("max_in_flight, batch_size and ack_timeout must be positive")
        self.max_in_flight = max_in_flight
        self.ack_timeout = ack_timeout
        self.pacing = Pacing(max_window=max_in_flight, initial_rto=ack_timeout) if adaptive \
            else None
        self.batch_size = batch_size
        self.live_cursor = durable_seq  # highest seq the live lane has handed out
        self._backlog: deque[list[int]] = deque([[0, durable_seq]] if durable_seq else [])
        self._flying: dict[int, _Sent] = {}  # newest batch id -> batch
        self._due: deque[_Sent] = deque()
        self._by_id: dict[int, _Sent] = {}  # every id of every batch above
        self.resent_batches = 0
        self.acks_unknown_batch = 0
        self.ack_seqs_ignored = 0

    @property
    def in_flight(self) -> int:
        return len(self._flying)

    @property
    def backlog_seqs(self) -> int:
        """Upper bound of readings waiting in the backlog lane (gaps from acks/drops included)."""
        return sum(upto - after for after, upto in self._backlog)

    def plan(self, durable_seq: int) -> Plan | None:
        """What to send next, or None when the window is full or nothing is waiting."""
        if len(self._flying) >= self.limit:
            return None
        if self._due:
            due = self._due.popleft()
            self._forget_ids(due)  # until sent() gives them to the resend
            return Resend(due.seqs, self.batch_size, due.ids)
        trailing = durable_seq - self.live_cursor
        if trailing > LIVE_GAP_BATCHES * self.batch_size:
            jump_to = durable_seq - self.batch_size
            self._backlog.append([self.live_cursor, jump_to])
            self.live_cursor = jump_to
        if durable_seq > self.live_cursor:
            return SendNew(self.live_cursor, durable_seq, self.batch_size, "live")
        if self._backlog:
            after, upto = self._backlog[0]
            return SendNew(after, upto, self.batch_size, "backlog")
        return None

    def sent(self, batch_id: int, seqs: SeqRanges, now: float, plan: Plan) -> None:
        if seqs:
            before = plan.ids if isinstance(plan, Resend) else ()
            batch = _Sent(seqs, now + self.timeout, (batch_id, *before)[:MAX_BATCH_IDS],
                          float("nan") if before or isinstance(plan, Resend) else now)
            self._flying[batch_id] = batch
            for bid in batch.ids:
                self._by_id[bid] = batch
        if isinstance(plan, SendNew):
            self.advance(plan, seqs.ranges[-1][1] if seqs else plan.upto)

    def advance(self, plan: SendNew, seq: int) -> None:
        """Move the plan's lane past ``seq`` (also when a SendNew found nothing to read)."""
        if plan.lane == "live":
            self.live_cursor = max(self.live_cursor, seq)
        elif self._backlog:
            head = self._backlog[0]
            head[0] = max(head[0], seq)
            if head[0] >= head[1]:
                self._backlog.popleft()

    @property
    def limit(self) -> int:
        """Batches that may be in flight now."""
        return self.max_in_flight if self.pacing is None else self.pacing.limit

    @property
    def timeout(self) -> float:
        """Seconds a batch sent now waits for its ack before it is due again."""
        return self.ack_timeout if self.pacing is None else self.pacing.rto

    def acked(self, batch_id: int, seqs: SeqRanges, now: float | None = None) -> AckResult:
        """Apply an ack to the batch it names; returns what may be deleted (and nothing else).

        Only seqs handed out in that batch are confirmed: the intersection, in
        O(ranges). The seqs are checked, not just the id: an ack queued at the
        broker for a previous run of the agent may carry a batch id this run
        reuses. An ack for a batch id unknown here (a previous run's, or made
        up) confirms nothing: the readings it meant are sent again and acked
        again, idempotently downstream, so such an ack costs resends, never a
        reading.
        """
        batch = self._by_id.get(batch_id)
        if batch is None:
            self.acks_unknown_batch += 1
            return AckResult(SeqRanges(), known=False, in_flight=False)
        in_flight = self._flying.get(batch.ids[0]) is batch
        if in_flight and self.pacing is not None and now is not None:
            rtt = now - batch.sent_at  # NaN for a resend
            self.pacing.on_ack(rtt if rtt >= 0 else None)
        confirmed = seqs.intersection(batch.seqs)
        ignored = len(seqs) - len(confirmed)
        self.ack_seqs_ignored = min(COUNTER_MAX, self.ack_seqs_ignored + ignored)
        batch.seqs = batch.seqs.difference(confirmed)
        if not batch.seqs:
            self._forget_ids(batch)
            if in_flight:
                del self._flying[batch.ids[0]]
            else:
                self._due.remove(batch)
        return AckResult(confirmed, known=True, in_flight=in_flight, ignored=ignored)

    def retry(self, seqs: SeqRanges) -> None:
        """Confirmed seqs the outbox could not delete (a full disk): send them again, so a
        later ack deletes them; until then they stay in the outbox, never lost."""
        if seqs:
            self._due.append(_Sent(seqs, 0.0, ()))

    def _forget_ids(self, batch: _Sent) -> None:
        for bid in batch.ids:
            if self._by_id.get(bid) is batch:
                del self._by_id[bid]

    def expire(self, now: float) -> int:
        """Move batches past their deadline to the resend queue; returns how many."""
        late = [bid for bid, f in self._flying.items() if f.deadline <= now]
        for bid in late:
            self._due.append(self._flying.pop(bid))
            if self.pacing is not None:
                self.pacing.on_timeout(now)
        self.resent_batches += len(late)
        return len(late)

    def next_deadline(self) -> float | None:
        return min((f.deadline for f in self._flying.values()), default=None)
