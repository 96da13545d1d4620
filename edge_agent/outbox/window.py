"""Ack bookkeeping for the uplink, sans-IO: which seqs are in flight and which are due again.

The shell asks ``plan()`` what to read from the outbox next, reports what it
sent with ``sent()``, feeds acks to ``acked()`` and calls ``expire(now)`` on a
timer. Time is passed in; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cityedge.uplink import SeqRanges


@dataclass(frozen=True, slots=True)
class SendNew:
    """Read up to ``limit`` readings with seq > ``after`` and <= ``upto`` (the durable mark)."""

    after: int
    upto: int
    limit: int


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

    After a restart the window is empty and the cursor at zero, so everything
    still in the outbox is sent again: resends are idempotent downstream.
    """

    def __init__(self, *, max_in_flight: int, ack_timeout: float, batch_size: int) -> None:
        if max_in_flight < 1 or batch_size < 1 or ack_timeout <= 0:
            raise ValueError("max_in_flight, batch_size and ack_timeout must be positive")
        self.max_in_flight = max_in_flight
        self.ack_timeout = ack_timeout
        self.batch_size = batch_size
        self.cursor = 0  # highest seq handed out by SendNew
        self._flying: dict[int, _InFlight] = {}
        self._due: deque[SeqRanges] = deque()
        self.resent_batches = 0

    @property
    def in_flight(self) -> int:
        return len(self._flying)

    def plan(self, durable_seq: int) -> Plan | None:
        """What to send next, or None when the window is full or nothing is waiting."""
        if len(self._flying) >= self.max_in_flight:
            return None
        if self._due:
            return Resend(self._due.popleft(), self.batch_size)
        if durable_seq > self.cursor:
            return SendNew(self.cursor, durable_seq, self.batch_size)
        return None

    def sent(self, batch_id: int, seqs: SeqRanges, now: float) -> None:
        if not seqs:
            return
        self._flying[batch_id] = _InFlight(seqs, now + self.ack_timeout)
        last = seqs.ranges[-1][1]
        self.cursor = max(self.cursor, last)

    def advance(self, seq: int) -> None:
        """Move the cursor past seqs a SendNew found nothing for (deleted or dropped)."""
        self.cursor = max(self.cursor, seq)

    def acked(self, batch_id: int, seqs: SeqRanges) -> None:
        """Forget the batch; acked seqs also leave any resend still queued."""
        self._flying.pop(batch_id, None)
        if self._due:
            acked = set(seqs)
            self._due = deque(
                left for left in (SeqRanges.of(s for s in due if s not in acked) for due in self._due)
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
