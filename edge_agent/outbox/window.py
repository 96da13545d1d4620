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
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from cityedge.uplink import SeqRanges

# How many batches of unsent readings the live lane may trail by before the
# rest is handed to the backlog lane: two keeps ordinary bursts in order.
LIVE_GAP_BATCHES = 2

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
    """Read these seqs again (those still in the outbox) and send them."""

    seqs: SeqRanges
    limit: int


Plan = SendNew | Resend


@dataclass(slots=True)
class _InFlight:
    seqs: SeqRanges
    deadline: float


class DeliveryWindow:
    """At most ``max_in_flight`` unacked batches; a batch unacked after ``ack_timeout`` is resent.

    After a restart the window is empty: everything still in the outbox is
    backlog and is sent again. Resends are idempotent downstream.
    """

    def __init__(self, *, max_in_flight: int, ack_timeout: float, batch_size: int,
                 durable_seq: int = 0) -> None:
        if max_in_flight < 1 or batch_size < 1 or ack_timeout <= 0:
            raise ValueError("max_in_flight, batch_size and ack_timeout must be positive")
        self.max_in_flight = max_in_flight
        self.ack_timeout = ack_timeout
        self.batch_size = batch_size
        self.live_cursor = durable_seq  # highest seq the live lane has handed out
        self._backlog: deque[list[int]] = deque([[0, durable_seq]] if durable_seq else [])
        self._flying: dict[int, _InFlight] = {}
        self._due: deque[SeqRanges] = deque()
        self.resent_batches = 0

    @property
    def in_flight(self) -> int:
        return len(self._flying)

    @property
    def backlog_seqs(self) -> int:
        """Upper bound of readings waiting in the backlog lane (gaps from acks/drops included)."""
        return sum(upto - after for after, upto in self._backlog)

    def unacked_seqs(self) -> SeqRanges:
        """Sent and not acked yet, in flight or due again: any of them may still land,
        so the drop policy must not count them as lost."""
        return SeqRanges.from_pairs(
            [pair for f in self._flying.values() for pair in f.seqs.ranges]
            + [pair for due in self._due for pair in due.ranges]
        )

    def plan(self, durable_seq: int) -> Plan | None:
        """What to send next, or None when the window is full or nothing is waiting."""
        if len(self._flying) >= self.max_in_flight:
            return None
        if self._due:
            return Resend(self._due.popleft(), self.batch_size)
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
            self._flying[batch_id] = _InFlight(seqs, now + self.ack_timeout)
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

    def acked(self, batch_id: int, seqs: SeqRanges) -> None:
        """Forget the batch if the ack covers it; acked seqs also leave any queued resend.

        The seqs are checked, not just the id: an ack queued at the broker for
        a previous run of the agent may carry a batch id this run reuses.
        """
        flying = self._flying.get(batch_id)
        if flying is not None and all(seq in seqs for seq in flying.seqs):
            del self._flying[batch_id]
        if self._due:
            acked = set(seqs)
            self._due = deque(
                left
                for left in (SeqRanges.of(s for s in due if s not in acked) for due in self._due)
                if left
            )

    def expire(self, now: float) -> int:
        """Move batches past their deadline to the resend queue; returns how many."""
        late = [bid for bid, f in self._flying.items() if f.deadline <= now]
        for bid in late:
            self._due.append(self._flying.pop(bid).seqs)
        self.resent_batches += len(late)
        return len(late)

    def next_deadline(self) -> float | None:
        return min((f.deadline for f in self._flying.values()), default=None)
