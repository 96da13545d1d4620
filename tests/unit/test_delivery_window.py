"""DeliveryWindow: which seqs are in flight, which are due again (DESIGN invariant 3), sans-IO."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cityedge.uplink import SeqRanges
from edge_agent.outbox import DeliveryWindow, Resend, SendNew


def window(
    max_in_flight: int = 2, ack_timeout: float = 10.0, batch_size: int = 5
) -> DeliveryWindow:
    return DeliveryWindow(
        max_in_flight=max_in_flight, ack_timeout=ack_timeout, batch_size=batch_size
    )


def r(lo: int, hi: int) -> SeqRanges:
    return SeqRanges(((lo, hi),))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_in_flight": 0, "ack_timeout": 1.0, "batch_size": 1},
        {"max_in_flight": 1, "ack_timeout": 0.0, "batch_size": 1},
        {"max_in_flight": 1, "ack_timeout": -1.0, "batch_size": 1},
        {"max_in_flight": 1, "ack_timeout": 1.0, "batch_size": 0},
    ],
)
def test_rejects_non_positive_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        DeliveryWindow(**kwargs)  # type: ignore[arg-type]


def test_nothing_to_send_when_nothing_is_durable() -> None:
    w = window()
    assert w.plan(0) is None
    assert w.in_flight == 0
    assert w.next_deadline() is None


def test_plan_asks_for_new_readings_up_to_the_durable_mark() -> None:
    w = window(batch_size=5)
    assert w.plan(12) == SendNew(after=0, upto=12, limit=5)
    w.sent(1, r(1, 5), now=0.0)
    assert w.cursor == 5
    assert w.plan(12) == SendNew(after=5, upto=12, limit=5)
    w.sent(2, r(6, 10), now=0.0)
    assert w.plan(12) is None  # window full (2)
    w.acked(1, r(1, 5))
    assert w.plan(12) == SendNew(after=10, upto=12, limit=5)
    w.sent(3, r(11, 12), now=0.0)
    w.acked(2, r(6, 10))
    assert w.plan(12) is None  # everything durable is out
    assert w.plan(13) == SendNew(after=12, upto=13, limit=5)


def test_in_flight_is_bounded() -> None:
    w = window(max_in_flight=3)
    for bid in range(1, 4):
        plan = w.plan(100)
        assert isinstance(plan, SendNew)
        w.sent(bid, r(plan.after + 1, plan.after + 5), now=0.0)
    assert w.in_flight == 3
    assert w.plan(100) is None
    w.expire(10.0)  # everything is due again, but nothing is in flight now
    assert w.in_flight == 0
    assert isinstance(w.plan(100), Resend)


def test_resend_after_timeout() -> None:
    w = window(ack_timeout=10.0)
    w.sent(1, r(1, 5), now=100.0)
    assert w.next_deadline() == 110.0
    assert w.expire(109.999) == 0
    assert w.in_flight == 1
    assert w.expire(110.0) == 1  # the deadline itself is late
    assert w.in_flight == 0
    assert w.resent_batches == 1
    assert w.next_deadline() is None
    assert w.plan(5) == Resend(r(1, 5), limit=5)
    assert w.plan(5) is None  # taken off the queue once planned


def test_resends_go_before_new_readings_in_expiry_order() -> None:
    w = window(max_in_flight=4)
    w.sent(1, r(1, 5), now=0.0)
    w.sent(2, r(6, 10), now=1.0)
    w.sent(3, r(11, 15), now=5.0)
    assert w.expire(11.0) == 2
    assert w.plan(100) == Resend(r(1, 5), 5)
    assert w.plan(100) == Resend(r(6, 10), 5)
    assert w.plan(100) == SendNew(15, 100, 5)


def test_resend_counts_towards_in_flight() -> None:
    w = window(max_in_flight=1)
    w.sent(1, r(1, 5), now=0.0)
    w.expire(10.0)
    plan = w.plan(5)
    assert isinstance(plan, Resend)
    w.sent(2, plan.seqs, now=10.0)
    assert w.in_flight == 1
    assert w.plan(50) is None
    assert w.cursor == 5  # a resend never moves the cursor back


def test_acked_forgets_the_batch() -> None:
    w = window()
    w.sent(1, r(1, 5), now=0.0)
    w.acked(1, r(1, 5))
    assert w.in_flight == 0
    assert w.expire(1000.0) == 0
    assert w.plan(5) is None


def test_ack_for_an_unknown_batch_is_harmless() -> None:
    w = window()
    w.sent(1, r(1, 5), now=0.0)
    w.acked(99, r(1, 5))
    assert w.in_flight == 1


def test_late_ack_after_expiry_removes_seqs_from_the_resend_queue() -> None:
    w = window()
    w.sent(1, r(1, 5), now=0.0)
    w.sent(2, r(6, 10), now=0.0)
    w.expire(10.0)
    w.acked(1, r(1, 5))  # the ack was only slow
    assert w.plan(10) == Resend(r(6, 10), 5)
    assert w.plan(10) is None


def test_partial_late_ack_leaves_only_the_rest_due() -> None:
    w = window()
    w.sent(1, r(1, 5), now=0.0)
    w.expire(10.0)
    w.acked(7, SeqRanges.of([2, 3]))  # another batch's ack names some of these seqs
    assert w.plan(5) == Resend(SeqRanges.of([1, 4, 5]), 5)


def test_sent_with_no_seqs_is_ignored() -> None:
    w = window()
    w.sent(1, SeqRanges(), now=0.0)
    assert w.in_flight == 0
    assert w.cursor == 0


def test_advance_skips_seqs_that_are_gone() -> None:
    w = window()
    assert w.plan(20) == SendNew(0, 20, 5)
    w.advance(20)  # the outbox had nothing there (deleted or dropped)
    assert w.cursor == 20
    assert w.plan(20) is None
    w.advance(3)
    assert w.cursor == 20  # never backwards


def test_next_deadline_is_the_earliest() -> None:
    w = window(max_in_flight=3, ack_timeout=5.0)
    w.sent(1, r(1, 1), now=7.0)
    w.sent(2, r(2, 2), now=3.0)
    w.sent(3, r(3, 3), now=9.0)
    assert w.next_deadline() == 8.0
    w.acked(2, r(2, 2))
    assert w.next_deadline() == 12.0


def test_restarted_window_sends_everything_again() -> None:
    # After a restart the cursor is 0: what is still in the outbox goes out again.
    assert window().plan(1000) == SendNew(0, 1000, 5)


# -- a simulated gateway and collector driving the window ----------------------------------------


class WindowMachine(RuleBasedStateMachine):
    """The agent's send loop around a real DeliveryWindow, an outbox as a set, and a lossy link.

    The collector acks exactly what reaches it; the gateway deletes only what was acked. At
    the end the link heals, and every durable reading must be acked and deleted.
    """

    @initialize(
        max_in_flight=st.integers(1, 4),
        batch_size=st.integers(1, 6),
        ack_timeout=st.sampled_from([1.0, 2.5, 10.0]),
    )
    def setup(self, max_in_flight: int, batch_size: int, ack_timeout: float) -> None:
        self.w = DeliveryWindow(
            max_in_flight=max_in_flight, ack_timeout=ack_timeout, batch_size=batch_size
        )
        self.now = 0.0
        self.stored: set[int] = set()
        self.last = 0
        self.durable = 0
        self.batch_id = 0
        self.uplink: list[tuple[int, SeqRanges]] = []
        self.downlink: list[tuple[int, SeqRanges]] = []
        self.collector_acked: set[int] = set()
        self.deleted: set[int] = set()
        self.ever_sent: set[int] = set()
        self.dropped: set[int] = set()

    # gateway side
    @rule(n=st.integers(1, 8))
    def append(self, n: int) -> None:
        for _ in range(n):
            self.last += 1
            self.stored.add(self.last)

    @rule()
    def sync(self) -> None:
        self.durable = self.last

    @precondition(lambda self: len(self.stored) > 12)
    @rule(n=st.integers(1, 3))
    def drop_oldest(self, n: int) -> None:
        """A full outbox drops its oldest readings (invariant 6); the window must cope."""
        for seq in sorted(self.stored)[:n]:
            self.stored.discard(seq)
            self.dropped.add(seq)

    @rule()
    def pump(self) -> None:
        """One pass of edge_agent.agent.Agent._send_loop, until the window says wait."""
        self.w.expire(self.now)
        while (plan := self.w.plan(self.durable)) is not None:
            assert self.w.in_flight < self.w.max_in_flight
            if isinstance(plan, SendNew):
                assert plan.upto == self.durable
                rows = sorted(s for s in self.stored if plan.after < s <= plan.upto)[: plan.limit]
                if not rows:
                    self.w.advance(plan.upto)
                    continue
            else:
                rows = [s for s in plan.seqs if s in self.stored][: plan.limit]
                if not rows:
                    continue
            assert max(rows) <= self.durable, "a reading left before it was durable"
            self.batch_id += 1
            seqs = SeqRanges.of(rows)
            self.uplink.append((self.batch_id, seqs))
            self.ever_sent |= set(rows)
            self.w.sent(self.batch_id, seqs, self.now)

    @rule(dt=st.sampled_from([0.1, 1.0, 3.0, 11.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    # the link and the collector
    @precondition(lambda self: self.uplink)
    @rule(i=st.integers(0, 100), lose=st.integers(0, 3).map(lambda n: n == 0))
    def batch_arrives(self, i: int, lose: bool) -> None:
        batch_id, seqs = self.uplink.pop(i % len(self.uplink))
        if lose:
            return
        # Written to InfluxDB, then acked.
        self.collector_acked |= set(seqs)
        self.downlink.append((batch_id, seqs))

    @precondition(lambda self: self.downlink)
    @rule(i=st.integers(0, 100), lose=st.integers(0, 3).map(lambda n: n == 0))
    def ack_arrives(self, i: int, lose: bool) -> None:
        batch_id, seqs = self.downlink.pop(i % len(self.downlink))
        if lose:
            return
        self.receive_ack(batch_id, seqs)

    def receive_ack(self, batch_id: int, seqs: SeqRanges) -> None:
        assert set(seqs) <= self.collector_acked
        self.w.acked(batch_id, seqs)
        for seq in seqs:
            if seq in self.stored:
                self.stored.discard(seq)
                self.deleted.add(seq)

    @invariant()
    def in_flight_is_bounded(self) -> None:
        assert self.w.in_flight <= self.w.max_in_flight

    @invariant()
    def deleted_only_when_acked(self) -> None:
        assert self.deleted <= self.collector_acked
        assert not (self.deleted & self.stored)

    def teardown(self) -> None:
        if not hasattr(self, "w"):
            return
        # The link heals: everything durable must drain, acked exactly once per delivery.
        self.sync()
        for _ in range(500):
            self.pump()
            while self.uplink:
                self.batch_arrives(0, lose=False)
            while self.downlink:
                self.ack_arrives(0, lose=False)
            if not self.stored and self.w.in_flight == 0:
                break
            self.now += self.w.ack_timeout
        assert not self.stored, f"never delivered: {sorted(self.stored)[:10]}"
        assert self.w.in_flight == 0
        assert set(range(1, self.last + 1)) - self.dropped <= self.ever_sent
        # Every reading reached the collector unless the outbox dropped it (and said so).
        assert set(range(1, self.last + 1)) <= self.collector_acked | self.dropped
        # The gateway deleted exactly what the collector acked, bar what it had dropped.
        assert self.deleted == self.collector_acked - self.dropped


WindowMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=60, deadline=None)
test_window_against_a_lossy_link = WindowMachine.TestCase
