"""Reading time: per-boot anchors (edge_agent/timebase.py) and the collector's rule (timing.py).

The property that matters: once a reading may leave the gateway, the timestamp the
collector gives it never changes, whatever happens to its boot's record later.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cityedge.uplink.timing import NEVER, Anchor, BootTime, reading_time
from edge_agent.timebase import MAX_TIME_STEP_NS, TIME_FLOOR_NS, Timebase

S = 1_000_000_000
BOOT = "b0"


def tb(**boots: BootTime) -> Timebase:
    return Timebase(BOOT, dict(boots), hold_max_ns=300 * S, now_mono=0)


def saved(t: Timebase, record: BootTime | None) -> BootTime | None:
    """What the agent does with a proposal once the outbox stored it: commit it."""
    if record is not None:
        t.commit(BOOT, record)
    return record


def test_synced_readings_keep_their_own_time() -> None:
    assert reading_time(123, BOOT, 5, True, {}) == (123, "own")


def test_gateway_made_readings_without_a_boot_keep_their_time() -> None:
    assert reading_time(123, "", 0, False, {}) == (123, "own")


def test_anchor_corrects_an_unsynced_reading() -> None:
    boots = {BOOT: BootTime(Anchor(mono_ns=10 * S, wall_ns=1_700_000_000 * S, source="ntp"))}
    # Taken 4 s before the anchor, stamped by a clock that was a day behind.
    t, how = reading_time(1_699_913_600 * S, BOOT, 6 * S, False, boots)
    assert (t, how) == (1_700_000_000 * S - 4 * S, "corrected")


def test_boundary_at_unverified_before() -> None:
    boots = {BOOT: BootTime(Anchor(0, 1000, "collector"), unverified_before=50)}
    assert reading_time(7, BOOT, 49, False, boots) == (7, "unverified")
    assert reading_time(7, BOOT, 50, False, boots) == (1050, "corrected")


def test_no_record_or_no_anchor_is_unverified() -> None:
    assert reading_time(7, BOOT, 1, False, {}) == (7, "unverified")
    assert reading_time(7, BOOT, 1, False, {BOOT: BootTime(None, NEVER)}) == (7, "unverified")


def test_first_anchor_wins() -> None:
    t = tb()
    first = saved(t, t.on_collector_time(5 * S, 100 * S))
    assert first is not None and first.anchor == Anchor(5 * S, 100 * S, "collector")
    assert t.on_synced(6 * S, 999 * S) is None
    assert t.current.anchor == first.anchor


def test_hold_times_out_into_unverified_and_repeats() -> None:
    t = tb()
    assert t.held_from() == 0  # every unsynced reading of this boot (1 s included) waits
    assert t.on_tick(299 * S) is None
    record = saved(t, t.on_tick(300 * S))
    assert record == BootTime(None, 300 * S)
    # 299 s is decided (unverified); 300 s still waits for an anchor.
    assert t.held_from() == 300 * S
    assert t.on_tick(599 * S) is None
    assert t.on_tick(600 * S) == BootTime(None, 600 * S)


def test_anchor_after_a_timeout_keeps_earlier_readings_unverified() -> None:
    t = tb()
    saved(t, t.on_tick(300 * S))
    saved(t, t.on_synced(400 * S, 10_000 * S))
    boots = t.boots
    assert reading_time(1, BOOT, 299 * S, False, boots) == (1, "unverified")
    assert reading_time(1, BOOT, 350 * S, False, boots)[1] == "corrected"
    assert t.held_from() is None  # anchored: nothing of this boot waits any more


# Synchronised readings and other boots' are never held: the store's query, fed by
# held_from(), pins it (tests/unit/test_outbox_store.py).


def test_old_boots_without_anchor_are_settled_unverified_for_good() -> None:
    anchored = BootTime(Anchor(1, 2, "ntp"))
    t = tb(kept=anchored)
    changed = t.settle_old_boots({"kept", "lost", BOOT})
    assert changed == {"lost": BootTime(None, NEVER)}
    assert t.boots["kept"] == anchored
    assert t.settle_old_boots({"lost"}) == changed  # not saved yet: proposed again
    t.commit("lost", changed["lost"])
    assert t.settle_old_boots({"lost"}) == {}


def test_a_proposal_not_saved_changes_nothing() -> None:
    """A record the outbox could not store (a full disk) is never used: the hold stays,
    and the next proposal is made from what was stored, as after a restart."""
    t = tb()
    for proposal in (t.on_synced(5 * S, 100 * S), t.on_collector_time(5 * S, 100 * S),
                     t.on_tick(400 * S)):
        assert proposal is not None
        assert t.current == BootTime() and t.boots == {}
        assert t.held_from() == 0  # the hold stays: a reading at 1 s still waits
    assert t.on_tick(400 * S) == BootTime(None, 400 * S)  # the hold limit still counts
    later = t.on_synced(6 * S, 200 * S)
    assert later is not None and later.anchor == Anchor(6 * S, 200 * S, "ntp")


def test_boot_time_json_round_trip() -> None:
    for bt in (BootTime(), BootTime(None, NEVER), BootTime(Anchor(1, 2, "ntp"), 3)):
        assert BootTime.from_json(bt.to_json()) == bt


events = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(0, 100), st.booleans()),
        st.tuples(st.just("ntp"), st.integers(0, 100), st.booleans()),
        st.tuples(st.just("collector"), st.integers(0, 100), st.booleans()),
        st.tuples(st.just("read"), st.integers(0, 100), st.booleans()),
    ),
    max_size=40,
)


@given(events)
def test_a_reading_that_may_leave_keeps_its_timestamp(
        script: list[tuple[str, int, bool]]) -> None:
    """Replay random events in time order, some proposals not saved (a full disk); every
    reading's timestamp, once it is not held, stays the same through every later event:
    resends are identical points."""
    t = Timebase(BOOT, {}, hold_max_ns=10, now_mono=0)
    now = 0
    readings: list[int] = []  # mono of each unsynced reading
    decided: dict[int, tuple[int, str]] = {}
    for kind, step, stored in script:
        now += step
        record = (t.on_tick(now) if kind == "tick" else t.on_synced(now, now + 10**12)
                  if kind == "ntp" else t.on_collector_time(now, now + 5 * 10**11)
                  if kind == "collector" else None)
        if kind == "read":
            readings.append(now)
        elif stored:
            saved(t, record)
        held_from = t.held_from()
        for i, mono in enumerate(readings):
            if held_from is not None and mono >= held_from:  # Outbox.first_held's condition
                assert i not in decided, "a reading went back to held"
                continue
            got = reading_time(-1, BOOT, mono, False, t.boots)
            assert decided.setdefault(i, got) == got


# -- which time answers may anchor a boot ------------------------------------------------


def test_a_time_answer_must_lie_between_the_floor_and_ten_years_past_it() -> None:
    t = tb()
    assert t.floor_ns == TIME_FLOOR_NS
    assert not t.plausible(TIME_FLOOR_NS - 1)
    assert t.plausible(TIME_FLOOR_NS)
    assert t.plausible(TIME_FLOOR_NS + MAX_TIME_STEP_NS)
    assert not t.plausible(TIME_FLOOR_NS + MAX_TIME_STEP_NS + 1)
    assert not t.plausible(4_102_444_800 * S)  # 2100-01-01, the forged answer
    assert not t.plausible(2**63 - 1)


def test_an_earlier_anchor_raises_the_floor() -> None:
    later = TIME_FLOOR_NS + 400 * 24 * 3600 * S
    t = tb(earlier=BootTime(Anchor(5, later, "ntp")), lost=BootTime(None, NEVER))
    assert t.floor_ns == later
    assert not t.plausible(later - 1)  # time does not go back across boots
    assert t.plausible(later + MAX_TIME_STEP_NS)
