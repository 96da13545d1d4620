"""The outbox's bookkeeping core (edge_agent/outbox/bookkeeping.py), sans-IO: the rules the
SQLite store runs, fed seqs, rows, sizes and times.

DESIGN invariant 6: a full outbox drops only what it says it dropped, and never a reading
handed out for sending (it may still land, and would be counted lost).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cityedge.uplink import Reading, SeqRanges
from edge_agent.outbox.bookkeeping import (
    DROPS_MEASUREMENT,
    DurableMark,
    Gap,
    HandOuts,
    Room,
    Unstored,
    drop_record,
    drop_target,
    gaps_of,
    merged,
)


def spared(h: HandOuts, upto: int = 100) -> set[int]:
    return {s for s in range(1, upto + 1) if s in h}


def rows(seqs: range, size: int = 10) -> list[tuple[int, str, str, int, int]]:
    return [(s, "pm-1", "particulate", 1_000 + s, size) for s in seqs]


# -- hand-outs: what the drop policy spares ---------------------------------------------


def test_every_handed_out_seq_is_spared_until_deleted() -> None:
    h = HandOuts()
    assert h.hand_out([1, 2, 3]) == SeqRanges.of([1, 2, 3])  # to store for the next run
    assert h.hand_out([2, 3]) is None  # nothing new: nothing to store
    assert spared(h) == {1, 2, 3}
    h.stored()
    assert h.to_store_on_delete(SeqRanges.of([2])) == SeqRanges.of([1, 3])
    h.deleted(SeqRanges.of([2]))
    assert spared(h) == {1, 3}


def test_a_restart_spares_what_the_previous_run_stored() -> None:
    first = HandOuts()
    saved = first.hand_out([4, 5, 6])
    assert saved is not None
    first.stored()
    second = HandOuts(saved)  # the next run, from the outbox file
    assert spared(second) == {4, 5, 6}
    # Nothing stored by this run yet: a delete leaves the previous run's set in the file.
    assert second.to_store_on_delete(SeqRanges.of([4])) is None
    second.deleted(SeqRanges.of([4]))
    assert spared(second) == {5, 6}


def test_protection_spans_two_runs() -> None:
    """Only this run's hand-outs are stored for the next: restarts cannot pile it up."""
    run1 = HandOuts()
    stored1 = run1.hand_out([1, 2])
    run2 = HandOuts(stored1 or SeqRanges())
    stored2 = run2.hand_out([10, 11])
    run3 = HandOuts(stored2 or SeqRanges())
    assert spared(run2) == {1, 2, 10, 11}
    assert spared(run3) == {10, 11}


def test_a_hand_out_not_stored_is_spared_by_this_run_only() -> None:
    """A full disk kept the set from the file: the next run does not spare them (one
    dropped and landing is counted twice; nothing is lost)."""
    h = HandOuts([7])
    h.hand_out([8])  # not stored: h.stored() never called
    assert spared(h) == {7, 8}
    assert h.to_store_on_delete(SeqRanges.of([7])) is None


def test_deleting_a_huge_range_walks_only_the_set() -> None:
    h = HandOuts([3, 2**40])
    h.hand_out([5])
    h.stored()
    gone = SeqRanges(((1, 2**62),))
    assert h.to_store_on_delete(gone) == SeqRanges()
    h.deleted(gone)
    assert not h.this_run and not h.before


# -- the drop policy's victims -------------------------------------------------------------


def test_room_takes_in_order_until_enough_is_freed_and_skips_the_spared() -> None:
    h = HandOuts([1, 2])
    h.hand_out([4])
    room = Room(35, h)
    room.offer(rows(range(1, 5)))  # 1, 2, 4 spared
    assert [v[0] for v in room.victims] == [3]
    room.offer(rows(range(5, 20)))
    assert [v[0] for v in room.victims] == [3, 5, 6, 7]
    assert room.freed == 40 and room.wanted <= 0
    room.offer(rows(range(20, 30)))
    assert len(room.victims) == 4  # enough: nothing more taken


def test_room_with_only_spared_rows_takes_nothing() -> None:
    h = HandOuts(range(1, 11))
    room = Room(50, h)
    room.offer(rows(range(1, 11)))
    assert room.victims == [] and room.gaps() == [] and room.wanted == 50


def test_drop_target_is_below_the_bound() -> None:
    assert drop_target(10_000) == 9_000


@given(
    sent=st.sets(st.integers(1, 60)),
    acked=st.sets(st.integers(1, 60)),
    restart_after=st.booleans(),
    later=st.sets(st.integers(1, 60)),
    excess=st.integers(0, 700),
)
def test_every_sent_and_unacked_seq_is_protected_from_the_drop_policy(
        sent: set[int], acked: set[int], restart_after: bool, later: set[int],
        excess: int) -> None:
    """Whatever is sent, acked (deleted), restarted and sent again, a victim is never a
    seq sent by this run or the previous one and not deleted since."""
    h = HandOuts()
    if (to_store := h.hand_out(sent)) is not None:
        h.stored()
    gone = SeqRanges.of(acked & sent)
    on_delete = h.to_store_on_delete(gone)
    stored = on_delete if on_delete is not None else to_store or SeqRanges()
    h.deleted(gone)
    unacked = sent - acked
    if restart_after:
        h = HandOuts(stored)
    if h.hand_out(later) is not None:
        h.stored()
    room = Room(excess, h)
    room.offer(rows(range(1, 61)))
    victims = {v[0] for v in room.victims}
    assert not victims & (unacked | later)
    assert sum(v[4] for v in room.victims) == room.freed
    free = set(range(1, 61)) - unacked - later
    # Enough taken, or every row not spared taken.
    assert room.freed >= excess or victims == free
    assert sorted(victims) == sorted(free)[:len(victims)]  # in the order offered


# -- gaps and their records -----------------------------------------------------------------


def test_gaps_are_per_sensor_and_measurement() -> None:
    victims = [(5, "pm-1", "a", 50, 1), (3, "pm-1", "a", 70, 1), (4, "pm-2", "a", 10, 1),
               (9, "pm-1", "b", 20, 1)]
    assert gaps_of(victims) == [Gap("pm-1", "a", 2, 50, 70, 3, 5),
                                Gap("pm-1", "b", 1, 20, 20, 9, 9),
                                Gap("pm-2", "a", 1, 10, 10, 4, 4)]


def test_an_open_gap_grows_by_merging() -> None:
    a = Gap("pm:1", "particulate", 2, 100, 200, 10, 11)
    b = Gap("pm:1", "particulate", 3, 50, 150, 12, 20)
    assert merged(None, a) == a
    assert merged(a, b) == Gap("pm:1", "particulate", 5, 50, 200, 10, 20)
    key = a.key("gap")
    assert key == "gap:pm:1:particulate"  # sensor ids may hold ':'
    assert Gap.from_meta(key, a.doc()) == ("gap", a)


def test_a_drop_record_says_what_is_missing_and_why() -> None:
    gap = Gap("pm-1", "particulate", 4, 100, 200, 10, 13)
    full, unstored = drop_record(gap, "gap"), drop_record(gap, "unstored")
    assert full.measurement == unstored.measurement == DROPS_MEASUREMENT
    assert full.fields == {"dropped": 4, "of_measurement": "particulate", "reason": "outbox_full",
                           "first_time_ns": 100, "last_time_ns": 200, "first_seq": 10,
                           "last_seq": 13}
    assert unstored.fields["reason"] == "not_stored"
    # After the last dropped reading, the same on every call, and apart per reason.
    assert 200 < full.time_ns <= 1200 and full == drop_record(gap, "gap")
    assert full.time_ns != unstored.time_ns
    other = drop_record(Gap("pm-1", "sensor_health", 4, 100, 200, 10, 13), "gap")
    assert other.time_ns != full.time_ns


def test_readings_not_stored_join_one_open_gap_each() -> None:
    u = Unstored()
    u.add([Reading("pm-1", "a", {}, 30, "b", 1), Reading("pm-1", "a", {}, 10, "b", 2),
           Reading("pm-2", "a", {}, 5, "b", 3)])
    assert u.count == 3
    assert sorted(u.gaps(), key=lambda g: g.sensor) == [Gap("pm-1", "a", 2, 10, 30, 0, 0),
                                                        Gap("pm-2", "a", 1, 5, 5, 0, 0)]
    u.clear()
    assert u.count == 0 and u.gaps() == []


# -- the durable mark -----------------------------------------------------------------------


def test_durable_mark_moves_only_on_a_completed_checkpoint() -> None:
    m = DurableMark(7, fsync_every_append=False)
    assert m.durable_seq == 0 and m.due() == 7  # at open: a checkpoint before anything counts
    m.checkpointed(7)
    assert m.due() is None and m.durable_seq == 7
    m.appended(9)
    mark = m.due()
    assert mark == 9 and m.durable_seq == 7  # a checkpoint that fails leaves it at 7
    m.appended(12)  # appended while the checkpoint ran: not covered by it
    m.checkpointed(mark)
    assert m.durable_seq == 9 and m.last_seq == 12
    m.changed()  # a delete or a hand-out: the next window checkpoints again
    assert m.due() == 12


def test_fsync_every_append_is_durable_at_once() -> None:
    m = DurableMark(0, fsync_every_append=True)
    m.checkpointed(0)
    m.appended(5)
    assert m.durable_seq == 5 and m.due() is None
    m.changed(8)  # drop records written: fsynced with their commit
    m.fsynced()
    assert m.durable_seq == 8
