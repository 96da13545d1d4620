"""The outbox's books: a transition reaches a notifier only once written ahead, a settled one
is left out of the next write, a refused write sends nothing, a takeover redelivers exactly
what was still pending; its value decodes to the same entries or raises its own error."""

from __future__ import annotations

import contextlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.alerts.events import AlertEvent
from collector.alerts.handover import MAX_STATE_BYTES
from collector.alerts.outbox import (
    MAX_OUTBOX_BYTES,
    MAX_OUTBOX_JSON_BYTES,
    MAX_PENDING,
    POINTS,
    Entry,
    Outbox,
    OutboxError,
    decode,
    encode,
    restamped,
)


def event(seq: int, *, token: int = 7, message: str = "pm10 high") -> AlertEvent:
    return AlertEvent("a1", seq, "pm10_high", "firing", "ok", "warning", 1_000 + seq, 1_000,
                      120.5, message, {"district": "강남구"}, True, fencing_token=token)


def test_nothing_is_released_before_its_write_succeeded() -> None:
    box = Outbox()
    assert box.stage("hook", event(1)) and box.stage("bus", event(1))
    write = box.take()
    assert write is not None and write.with_state
    assert [e.key for e in write.entries] == [("a1:1", "hook"), ("a1:1", "bus")]
    assert box.take() is None  # one write in flight
    box.stage("hook", event(2))  # staged meanwhile: the next write's
    assert [e.key for e in box.written(write)] == [("a1:1", "hook"), ("a1:1", "bus")]
    second = box.take()
    assert second is not None and [e.key for e in second.released] == [("a1:2", "hook")]
    assert len(second.entries) == 3  # the first two are still pending


def test_a_settled_entry_is_left_out_of_the_next_write_without_the_state() -> None:
    box = Outbox()
    box.stage("hook", event(1))
    box.stage("hook", event(2))
    first = box.take()
    assert first is not None
    box.written(first)
    box.settle("hook", "a1:1")
    box.settle("hook", "a1:1")  # twice counts once
    box.settle("hook", "zz:9")  # unknown: nothing
    assert box.due()
    marks = box.take()
    assert marks is not None and not marks.with_state and marks.released == ()
    assert [e.key for e in marks.entries] == [("a1:2", "hook")]
    box.settle("hook", "a1:2")  # while the marks are in flight: the write after
    box.written(marks)
    last = box.take()
    assert last is not None and last.entries == ()
    box.written(last)
    assert box.pending == 0 and not box.due() and box.stats.settled == 2


def test_a_write_without_answer_is_taken_again_with_the_state() -> None:
    box = Outbox()
    box.stage("hook", event(1))
    write = box.take()
    assert write is not None
    box.failed(write)
    again = box.take()
    assert again is not None and again.with_state and again.released == write.released
    assert box.stats.write_errors == 1


def test_a_refused_write_sends_nothing_and_forgets_everything() -> None:
    box = Outbox()
    box.stage("hook", event(1))
    write = box.take()
    assert write is not None
    assert box.fenced(write) == 1
    assert box.pending == 0 and box.take() is None and box.stats.fenced == 1


def test_a_full_outbox_refuses_the_next_transition_and_counts_it() -> None:
    box = Outbox(limit=2)
    assert box.stage("hook", event(1)) and box.stage("hook", event(2))
    assert not box.stage("hook", event(3))
    assert box.stats.refused_full == 1 and box.pending == 2
    big = Outbox(limit_bytes=600)
    assert big.stage("hook", event(1))
    assert not big.stage("hook", event(2, message="x" * 300))  # bytes, not count


def test_the_bounds_fit_one_etcd_request_with_the_state() -> None:
    assert (MAX_STATE_BYTES + MAX_OUTBOX_BYTES) * 4 / 3 + 10_000 < 1.5 * 2**20
    full = Outbox(limit=MAX_PENDING)
    n = 0
    while full.stage("hook", event(n, message="m" * 200)):
        n += 1
    write = full.take()
    assert write is not None and len(encode(write.entries)) <= MAX_OUTBOX_BYTES
    assert len(zlib.decompress(encode(write.entries))) <= MAX_OUTBOX_JSON_BYTES + 100


def test_a_takeover_redelivers_exactly_what_was_pending_with_the_same_event_ids() -> None:
    old = Outbox()
    for seq in (1, 2, 3):
        old.stage("hook", event(seq))
    write = old.take()
    assert write is not None
    old.written(write)
    old.settle("hook", "a1:1")
    marks = old.take()
    assert marks is not None
    old.written(marks)
    value = encode(marks.entries)  # what etcd holds when the old leader dies
    new = Outbox()
    again = new.restore(decode(value))
    assert [e.key for e in again] == [("a1:2", "hook"), ("a1:3", "hook")]
    sent = [restamped(e, 9) for e in again]
    assert [(s.event_id, s.fencing_token) for s in sent] == [("a1:2", 9), ("a1:3", 9)]
    assert new.stats.restored == 2


def test_the_value_round_trips() -> None:
    entries = (Entry("hook", event(1)), Entry("bus", event(2, token=0)))
    assert decode(encode(entries)) == entries


@pytest.mark.parametrize("payload", [b"", b"junk", zlib.compress(b"[]"),
                                     zlib.compress(b'{"format":1,"entries":[{"notifier":"h"}]}'),
                                     zlib.compress(b'{"format":2,"entries":[]}'),
                                     encode([Entry("hook", event(1))])[:-3]])
def test_a_bad_value_raises_the_outboxs_error(payload: bytes) -> None:
    with pytest.raises(OutboxError):
        decode(payload)


@given(st.binary(max_size=300) | st.builds(lambda t: zlib.compress(t.encode()),
                                           st.text(max_size=300)))
def test_any_value_decodes_or_raises_the_outboxs_own_error(payload: bytes) -> None:
    with contextlib.suppress(OutboxError):
        decode(payload)


def test_an_entry_settled_before_its_write_is_released_but_not_kept() -> None:
    """A transition's point can reach InfluxDB before etcd answered the write ahead."""
    box = Outbox()
    box.stage(POINTS, event(1))
    box.stage("hook", event(1))
    box.settle(POINTS, "a1:1")  # before the write is even taken
    write = box.take()
    assert write is not None and [e.key for e in write.entries] == [("a1:1", "hook")]
    box.written(write)
    box.stage("hook", event(2))
    box.settle("hook", "a1:2")  # staged, settled while the next write is in flight
    second = box.take()
    assert second is not None
    box.settle("hook", "a1:1")
    box.written(second)
    third = box.take()
    assert third is not None and third.entries == ()
