"""DeliveryWindow: what to send next, what is in flight, what is due again, sans-IO.

DESIGN invariant 3 (resend what is unacked after a timeout, bounded in flight) and
invariant 7 (after an outage live readings go first, the backlog drains behind).
"""

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
from edge_agent.outbox.bookkeeping import HandOuts, Room
from edge_agent.outbox.window import LIVE_GAP_BATCHES, MAX_BATCH_IDS


def window(
    max_in_flight: int = 2, ack_timeout: float = 10.0, batch_size: int = 5, durable_seq: int = 0
) -> DeliveryWindow:
    return DeliveryWindow(
        max_in_flight=max_in_flight,
        ack_timeout=ack_timeout,
        batch_size=batch_size,
        durable_seq=durable_seq,
        adaptive=False,  # these pin the bookkeeping at a fixed window and timeout
    )


def r(lo: int, hi: int) -> SeqRanges:
    return SeqRanges(((lo, hi),))


def send(w: DeliveryWindow, batch_id: int, durable: int, now: float = 0.0) -> SeqRanges:
    """Plan, 'read' every seq the plan allows (nothing deleted), and report it sent."""
    plan = w.plan(durable)
    assert plan is not None
    if isinstance(plan, SendNew):
        seqs = SeqRanges.of(range(plan.after + 1, min(plan.upto, plan.after + plan.limit) + 1))
    else:
        seqs = plan.seqs
    w.sent(batch_id, seqs, now, plan)
    return seqs


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
    assert w.backlog_seqs == 0
    assert w.next_deadline() is None


def test_live_lane_follows_the_durable_mark_in_order() -> None:
    w = window(batch_size=5)
    assert w.plan(10) == SendNew(after=0, upto=10, limit=5, lane="live")
    assert send(w, 1, 10) == r(1, 5)
    assert w.live_cursor == 5
    assert w.plan(10) == SendNew(5, 10, 5, "live")
    assert send(w, 2, 10) == r(6, 10)
    assert w.plan(10) is None  # window full (2)
    w.acked(1, r(1, 5))
    assert w.plan(10) is None  # nothing new
    assert w.plan(11) == SendNew(10, 11, 5, "live")


@pytest.mark.parametrize(
    ("batch_size", "durable", "plan", "backlog"),
    [
        (5, 10, SendNew(0, 10, 5, "live"), 0),  # exactly LIVE_GAP_BATCHES behind: in order
        (5, 11, SendNew(6, 11, 5, "live"), 6),  # one more: the oldest six become backlog
        (5, 100, SendNew(95, 100, 5, "live"), 95),
        (1, 3, SendNew(2, 3, 1, "live"), 2),
    ],
)
def test_live_lane_jumps_ahead_of_a_pile_up(
    batch_size: int, durable: int, plan: SendNew, backlog: int
) -> None:
    assert LIVE_GAP_BATCHES == 2
    w = window(batch_size=batch_size)
    assert w.plan(durable) == plan
    assert w.backlog_seqs == backlog


def test_backlog_drains_oldest_first_in_the_window_live_leaves_free() -> None:
    w = window(max_in_flight=3, batch_size=5)
    assert send(w, 1, 100) == r(96, 100)  # live first
    assert w.plan(100) == SendNew(0, 95, 5, "backlog")
    assert send(w, 2, 100) == r(1, 5)
    assert w.backlog_seqs == 90
    assert send(w, 3, 101) == r(101, 101)  # a fresh reading overtakes the backlog
    assert w.plan(101) is None  # full
    w.acked(2, r(1, 5))
    assert w.plan(101) == SendNew(5, 95, 5, "backlog")


def test_backlog_segments_drain_in_order() -> None:
    w = window(max_in_flight=10, batch_size=2)
    send(w, 1, 10)  # live 9-10, backlog (0, 8]
    send(w, 2, 20)  # live jumps again: 19-20, backlog (10, 18] behind (0, 8]
    assert w.backlog_seqs == 16
    sent = [send(w, 3 + i, 20) for i in range(8)]
    assert list(SeqRanges.of(s for seqs in sent for s in seqs)) == [*range(1, 9), *range(11, 19)]
    assert w.backlog_seqs == 0
    assert w.plan(20) is None


def test_restart_makes_everything_stored_backlog() -> None:
    w = window(batch_size=5, durable_seq=20)
    assert w.live_cursor == 20
    assert w.backlog_seqs == 20
    assert w.plan(20) == SendNew(0, 20, 5, "backlog")
    assert w.plan(22) == SendNew(20, 22, 5, "live")  # a new reading goes first


def test_in_flight_is_bounded() -> None:
    w = window(max_in_flight=3)
    for bid in range(1, 4):
        send(w, bid, 5 * bid)
    assert w.in_flight == 3
    assert w.plan(100) is None
    w.expire(10.0)
    assert w.in_flight == 0
    assert isinstance(w.plan(100), Resend)


def test_every_sent_and_unacked_seq_is_spared_by_the_drop_policy() -> None:
    """What the window sends is what the outbox hands out (fetch_after/fetch_seqs), and
    the outbox spares it (bookkeeping.HandOuts) until its ack deletes it, also once
    expired and due again: it may still land from the first send."""
    w = window(max_in_flight=3, batch_size=3)
    spared = HandOuts()
    spared.hand_out(send(w, 1, 6))
    spared.hand_out(send(w, 2, 6))
    assert {s for s in range(1, 10) if s in spared} == set(range(1, 7))
    spared.deleted(w.acked(1, r(1, 3)).confirmed)
    assert {s for s in range(1, 10) if s in spared} == set(range(4, 7))
    w.expire(10**9)
    assert w.in_flight == 0
    assert {s for s in range(1, 10) if s in spared} == set(range(4, 7))
    assert w.plan(6) == Resend(r(4, 6), 3)


def test_resend_after_timeout() -> None:
    w = window(ack_timeout=10.0)
    send(w, 1, 5, now=100.0)
    assert w.next_deadline() == 110.0
    assert w.expire(109.999) == 0
    assert w.in_flight == 1
    assert w.expire(110.0) == 1  # the deadline itself is late
    assert w.in_flight == 0
    assert w.resent_batches == 1
    assert w.next_deadline() is None
    assert w.plan(5) == Resend(r(1, 5), limit=5)
    assert w.plan(5) is None  # taken off the queue once planned


def test_resends_go_first_in_expiry_order() -> None:
    w = window(max_in_flight=4)
    send(w, 1, 5, now=0.0)
    send(w, 2, 10, now=1.0)
    send(w, 3, 15, now=5.0)
    assert w.expire(11.0) == 2
    assert w.plan(100) == Resend(r(1, 5), 5)
    assert w.plan(100) == Resend(r(6, 10), 5)
    assert isinstance(w.plan(100), SendNew)


def test_a_resend_holds_a_slot_and_moves_no_lane() -> None:
    w = window(max_in_flight=1)
    send(w, 1, 5)
    w.expire(10.0)
    plan = w.plan(5)
    assert isinstance(plan, Resend)
    w.sent(2, plan.seqs, 10.0, plan)
    assert w.in_flight == 1
    assert w.plan(50) is None
    assert w.live_cursor == 5


def test_acked_forgets_the_batch() -> None:
    w = window()
    send(w, 1, 5)
    w.acked(1, r(1, 5))
    assert w.in_flight == 0
    assert w.expire(1000.0) == 0
    assert w.plan(5) is None


def test_ack_for_an_unknown_batch_is_harmless() -> None:
    w = window()
    send(w, 1, 5)
    w.acked(99, r(1, 5))
    assert w.in_flight == 1


def test_late_ack_after_expiry_removes_seqs_from_the_resend_queue() -> None:
    w = window()
    send(w, 1, 5)
    send(w, 2, 10)
    w.expire(10.0)
    w.acked(1, r(1, 5))  # the ack was only slow
    assert w.plan(10) == Resend(r(6, 10), 5)
    assert w.plan(10) is None


def test_partial_late_ack_leaves_only_the_rest_due() -> None:
    w = window()
    send(w, 1, 5)
    w.expire(10.0)
    w.acked(1, SeqRanges.of([2, 3]))
    assert w.plan(5) == Resend(SeqRanges.of([1, 4, 5]), 5)


def test_another_batchs_ack_confirms_nothing_of_this_one() -> None:
    w = window()
    send(w, 1, 5)
    w.expire(10.0)
    result = w.acked(7, SeqRanges.of([2, 3]))  # names these seqs, but not this batch
    assert result.confirmed == SeqRanges() and not result.known
    assert w.acks_unknown_batch == 1
    assert w.plan(5) == Resend(r(1, 5), 5)


def test_sent_with_no_seqs_only_moves_the_lane() -> None:
    w = window()
    plan = w.plan(5)
    assert isinstance(plan, SendNew)
    w.sent(1, SeqRanges(), 0.0, plan)
    assert w.in_flight == 0
    assert w.live_cursor == 5


@pytest.mark.parametrize("lane", ["live", "backlog"])
def test_advance_skips_seqs_that_are_gone(lane: str) -> None:
    w = window(durable_seq=10 if lane == "backlog" else 0)
    plan = w.plan(10)
    assert isinstance(plan, SendNew)
    assert plan.lane == lane
    w.advance(plan, plan.upto)  # the outbox had nothing there (deleted or dropped)
    assert w.plan(10) is None
    assert w.backlog_seqs == 0
    w.advance(SendNew(0, 3, 5, "live"), 3)
    assert w.live_cursor == 10  # never backwards


def test_next_deadline_is_the_earliest() -> None:
    w = window(max_in_flight=3, ack_timeout=5.0, batch_size=1)
    send(w, 1, 1, now=7.0)
    send(w, 2, 2, now=3.0)
    send(w, 3, 3, now=9.0)
    assert w.next_deadline() == 8.0
    w.acked(2, r(2, 2))
    assert w.next_deadline() == 12.0


def test_a_stale_ack_with_a_reused_batch_id_does_not_release_another_batch() -> None:
    w = window(batch_size=5, durable_seq=0)
    send(w, 1, 5, now=0.0)  # batch 1 = seqs 1-5 in the new process
    result = w.acked(1, r(101, 105))  # batch 1 of the previous process, acked late
    assert result.confirmed == SeqRanges() and result.ignored == 5
    assert w.in_flight == 1
    assert w.expire(10.0) == 1  # so that it comes back if lost
    assert w.plan(5) == Resend(r(1, 5), 5)  # still unacked, all of it


# -- an ack can only confirm what was sent ---------------------------------------------------


def test_an_ack_for_2_62_seqs_confirms_only_its_batch_and_costs_its_ranges() -> None:
    """The attack: [[1, 2**62]] with the right epoch and a batch in flight."""
    w = window(max_in_flight=2, batch_size=5)
    send(w, 1, 10)  # seqs 1-5 in flight; 6-10 stored, not sent
    claim = SeqRanges(((1, 2**62),))
    result = w.acked(1, claim)  # a set of these seqs would never fit in memory
    assert result.confirmed == r(1, 5)
    assert result.known and result.in_flight
    assert result.ignored == 2**62 - 5
    assert w.ack_seqs_ignored == 2**62 - 5
    assert w.in_flight == 0
    assert w.plan(10) == SendNew(5, 10, 5, "live")  # the rest is still to be sent
    w.acked(1, claim)  # the same again: the batch is gone, nothing confirmed
    assert w.acks_unknown_batch == 1


def test_an_ack_claiming_every_seq_answers_at_once() -> None:
    w = window(max_in_flight=4, batch_size=5000)
    for bid in range(1, 5):
        send(w, bid, 5000 * bid)
    w.expire(100.0)  # all four due again
    send(w, 5, 20_000, now=100.0)
    claim = SeqRanges(((1, 2**63 - 1),))
    confirmed = [w.acked(bid, claim).confirmed for bid in range(1, 6)]
    assert [len(c) for c in confirmed] == [5000] * 4 + [0]  # batch 5 was batch 1 again
    assert w.ack_seqs_ignored == 2**63 - 1  # saturated, still an int64
    assert w.in_flight == 0 and w.plan(20_000) is None  # nothing unacked, nothing due


def test_a_due_batch_is_still_acked_and_leaves_the_resend_queue() -> None:
    w = window()
    send(w, 1, 5)
    w.expire(10.0)
    result = w.acked(1, r(1, 5))
    assert result.confirmed == r(1, 5) and result.known and not result.in_flight
    assert w.plan(5) is None
    assert w.in_flight == 0 and w.expire(10**9) == 0


def test_a_resent_batch_answers_to_its_earlier_id_too() -> None:
    w = window(max_in_flight=1)
    send(w, 1, 5)
    w.expire(10.0)
    plan = w.plan(5)
    assert isinstance(plan, Resend) and plan.ids == (1,)
    w.sent(2, plan.seqs, 10.0, plan)
    result = w.acked(1, r(1, 5))  # the first send's ack, only slow
    assert result.confirmed == r(1, 5) and result.in_flight
    assert w.in_flight == 0
    assert w.acked(2, r(1, 5)).confirmed == SeqRanges()  # the resend's ack: nothing left


def test_an_ack_between_plan_and_send_of_a_resend_confirms_nothing_but_costs_nothing() -> None:
    w = window(max_in_flight=1)
    send(w, 1, 5)
    w.expire(10.0)
    plan = w.plan(5)
    assert isinstance(plan, Resend)
    assert not w.acked(1, r(1, 5)).known  # read from the outbox right now
    w.sent(2, plan.seqs, 10.0, plan)
    assert w.acked(2, r(1, 5)).confirmed == r(1, 5)


def test_ids_a_batch_answers_to_are_bounded() -> None:
    w = window(max_in_flight=1)
    send(w, 1, 5)
    for bid in range(2, 20):
        w.expire(10.0 * bid)
        plan = w.plan(5)
        assert isinstance(plan, Resend)
        w.sent(bid, plan.seqs, 10.0 * bid, plan)
    assert not w.acked(1, r(1, 5)).known  # long forgotten: resent, never lost
    assert w.acked(19 - MAX_BATCH_IDS + 1, r(1, 5)).confirmed == r(1, 5)


def test_acked_never_builds_a_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Walking the claimed range is what made [[1, 2**62]] run out of memory."""
    w = window(batch_size=5)
    send(w, 1, 5)

    def walk(_self: SeqRanges) -> None:
        raise AssertionError("acked walked the seqs of a range")

    monkeypatch.setattr(SeqRanges, "__iter__", walk)
    assert w.acked(1, SeqRanges(((1, 2**62),))).confirmed == r(1, 5)


# -- a simulated gateway and collector driving the window ----------------------------------------


class WindowMachine(RuleBasedStateMachine):
    """The agent's send loop around a real DeliveryWindow, an outbox as a set with the
    store's real hand-out bookkeeping and drop choice (bookkeeping.HandOuts, Room), and a
    lossy link.

    The collector acks exactly what reaches it; the gateway deletes only what was acked. The
    agent may restart (a new window over the same outbox; acks of the old one still arrive).
    At the end the link heals, and every durable reading must be acked and deleted.
    Batch ids stay unique across restarts here; reuse is pinned by the test above. An ack
    of a previous run's batch confirms nothing: its readings are sent again.
    """

    @initialize(
        max_in_flight=st.integers(1, 4),
        batch_size=st.integers(1, 6),
        ack_timeout=st.sampled_from([1.0, 2.5, 10.0]),
    )
    def setup(self, max_in_flight: int, batch_size: int, ack_timeout: float) -> None:
        self.settings = {
            "max_in_flight": max_in_flight,
            "ack_timeout": ack_timeout,
            "batch_size": batch_size,
        }
        self.w = DeliveryWindow(**self.settings)  # type: ignore[arg-type]
        self.now = 0.0
        self.stored: set[int] = set()
        self.last = 0
        self.durable = 0
        self.batch_id = 0
        self.uplink: list[tuple[int, SeqRanges]] = []
        self.downlink: list[tuple[int, SeqRanges]] = []
        self.collector_acked: set[int] = set()
        self.deleted: set[int] = set()
        self.dropped: set[int] = set()
        self.ever_sent: set[int] = set()
        # What the outbox file keeps of the hand-outs, and this run's and the last one's sends.
        self.stored_handouts = SeqRanges()
        self.spared = HandOuts()
        self.sent_runs: list[set[int]] = [set()]

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
        """A full outbox drops its oldest readings, sparing those sent and unacked (inv. 6)."""
        room = Room(n, self.spared)
        room.offer((seq, "pm-1", "pm", seq, 1) for seq in sorted(self.stored))
        for seq, *_ in room.victims:
            assert not any(seq in sent for sent in self.sent_runs[-2:]), "dropped while sent"
            self.stored.discard(seq)
            self.dropped.add(seq)

    @rule()
    def restart(self) -> None:
        """The agent restarts: unsynced readings survive a kill, so all are durable again."""
        self.durable = self.last
        self.w = DeliveryWindow(**self.settings, durable_seq=self.durable)  # type: ignore[arg-type]
        self.spared = HandOuts(self.stored_handouts)
        self.sent_runs.append(set())

    @rule()
    def pump(self) -> None:
        """One pass of edge_agent.agent.Agent._send_loop, until the window says wait."""
        self.w.expire(self.now)
        while (plan := self.w.plan(self.durable)) is not None:
            assert self.w.in_flight < self.w.max_in_flight
            if isinstance(plan, SendNew):
                assert plan.upto <= self.durable
                if plan.lane == "backlog":
                    assert self.w.live_cursor >= self.durable, "backlog went before live"
                else:
                    assert self.durable - plan.after <= (LIVE_GAP_BATCHES + 1) * plan.limit
                rows = sorted(s for s in self.stored if plan.after < s <= plan.upto)[: plan.limit]
                if not rows:
                    self.w.advance(plan, plan.upto)
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
            self.sent_runs[-1] |= set(rows)
            if (to_store := self.spared.hand_out(rows)) is not None:
                self.stored_handouts = to_store
                self.spared.stored()
            self.w.sent(self.batch_id, seqs, self.now, plan)

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
        assert set(seqs) <= self.collector_acked
        confirmed = self.w.acked(batch_id, seqs).confirmed
        assert set(confirmed) <= set(seqs)
        if (to_store := self.spared.to_store_on_delete(confirmed)) is not None:
            self.stored_handouts = to_store
        self.spared.deleted(confirmed)
        for seq in confirmed:
            if seq in self.stored:
                self.stored.discard(seq)
                self.deleted.add(seq)
            for sent in self.sent_runs:
                sent.discard(seq)

    @invariant()
    def in_flight_is_bounded(self) -> None:
        if hasattr(self, "w"):
            assert self.w.in_flight <= self.w.max_in_flight

    @invariant()
    def deleted_only_when_acked(self) -> None:
        if hasattr(self, "w"):
            assert self.deleted <= self.collector_acked
            assert not (self.deleted & self.stored)

    def teardown(self) -> None:
        if not hasattr(self, "w"):
            return
        # The link heals: everything durable must drain.
        self.sync()
        for _ in range(1000):
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
        everything = set(range(1, self.last + 1))
        assert everything - self.dropped <= self.ever_sent
        # Every reading reached the collector unless the outbox dropped it (and said so).
        assert everything <= self.collector_acked | self.dropped
        # The gateway deleted exactly what the collector acked, bar what it had dropped.
        assert self.deleted == self.collector_acked - self.dropped


WindowMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=60, deadline=None)
test_window_against_a_lossy_link = WindowMachine.TestCase


def test_seqs_the_outbox_could_not_delete_are_sent_again() -> None:
    """A confirmed batch whose delete failed (a full disk) goes out again, so a later
    ack deletes it: confirmed but undeleted readings are never left behind."""
    w = DeliveryWindow(max_in_flight=2, ack_timeout=5.0, batch_size=10)
    plan = w.plan(10)
    assert isinstance(plan, SendNew)
    w.sent(1, SeqRanges.of(range(1, 11)), 0.0, plan)
    result = w.acked(1, SeqRanges.of(range(1, 11)))
    assert result.confirmed == SeqRanges.of(range(1, 11))
    w.retry(result.confirmed)
    again = w.plan(10)
    assert isinstance(again, Resend) and again.seqs == SeqRanges.of(range(1, 11))
    w.sent(2, again.seqs, 1.0, again)
    assert w.acked(2, again.seqs).confirmed == again.seqs
    assert w.plan(10) is None
