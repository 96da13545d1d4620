"""Ingest: payload in; points, dead letters and the ack out (DESIGN invariants 3 and 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityedge.uplink import Ack, SeqRanges
from cityedge.uplink.payload import MAX_TIME_NS
from collector.deadletter import DEADLETTER_MEASUREMENT
from collector.ingest import Accepted, Refused, ingest
from collector.lineprotocol import Identity, encode, format_point

EPOCH = "feedc0de12345678"
T0 = 1_700_000_000_000_000_000


def reading(seq: int, /, **over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "seq": seq,
        "sensor": "pm-1",
        "m": "particulate",
        "t": T0 + seq,
        "boot": "b00t",
        "mono": seq,
        "f": {"pm2_5_ugm3": 12, "pm10_ugm3": 20.5},
    }
    r.update(over)
    return r


def payload(**over: Any) -> bytes:
    d: dict[str, Any] = {
        "v": 1,
        "gateway": "gw-1",
        "epoch": EPOCH,
        "batch": 4,
        "sent_ns": T0 + 10**9,
        "clock": {"synced": True, "boot": "b00t", "mono_ns": 5},
        "site": {"district": "마포구", "site": "망원동 정류장", "kind": "bus_stop"},
        "sensors": {
            "pm-1": {"model": "pms5003", "mount": "지붕"},
            "th-1": {"model": "sht31"},
        },
        "readings": [
            reading(1),
            reading(2),
            reading(3, sensor="th-1", m="climate", f={"t_c": 1.5}),
        ],
    }
    d.update(over)
    return json.dumps(d, ensure_ascii=False).encode()


def accepted(data: bytes, topic_gateway: str | None = "gw-1") -> Accepted:
    out = ingest(data, topic_gateway)
    assert isinstance(out, Accepted), out
    return out


def test_points_carry_where_they_come_from() -> None:
    out = accepted(payload())
    assert out.gateway == "gw-1"
    p = out.points[0]
    assert p.measurement == "particulate"
    assert dict(p.tags) == {
        "district": "마포구",
        "site": "망원동 정류장",
        "site_kind": "bus_stop",
        "gateway": "gw-1",
        "sensor": "pm-1",
        "model": "pms5003",
        "mount": "지붕",  # a sensor's own tags come along
    }
    assert p.time_ns == T0 + 1
    th = out.points[2]
    assert th.measurement == "climate"
    assert th.tags["sensor"] == "th-1"
    assert th.tags["model"] == "sht31"
    assert "mount" not in th.tags


def test_seq_and_epoch_are_fields_never_tags() -> None:
    for i, p in enumerate(accepted(payload()).points, start=1):
        assert "seq" not in p.tags
        assert "epoch" not in p.tags
        assert "seq" not in p.fields  # beside the fields, written as fields
        assert p.identity == Identity(i, EPOCH)
        assert f',seq={i}i,epoch="{EPOCH}" ' in p.line()


def test_reading_fields_are_kept() -> None:
    p = accepted(payload()).points[0]
    assert p.fields["pm2_5_ugm3"] == 12
    assert p.fields["pm10_ugm3"] == 20.5


def test_missing_site_keys_give_empty_tags_which_are_not_written() -> None:
    out = accepted(payload(site={"district": "중구"}))
    p = out.points[0]
    assert p.tags["site"] == "" == p.tags["site_kind"]
    assert ",site=" not in format_point(p)
    assert ",site_kind=" not in format_point(p)
    assert format_point(p).startswith("particulate,district=중구,gateway=gw-1,")


def test_line_for_a_reading() -> None:
    p = accepted(payload()).points[0]
    assert format_point(p) == (
        "particulate,district=마포구,gateway=gw-1,model=pms5003,mount=지붕,sensor=pm-1,"
        r"site=망원동\ 정류장,site_kind=bus_stop "
        f'pm2_5_ugm3=12i,pm10_ugm3=20.5,seq=1i,epoch="{EPOCH}" {T0 + 1}'
    )


def test_ack_names_the_batch_and_every_seq() -> None:
    out = accepted(payload())
    assert out.ack == Ack("gw-1", EPOCH, 4, SeqRanges.of([1, 2, 3]))
    assert out.readings == 3
    assert out.dead_letters == ()


def test_identical_payload_gives_identical_lines() -> None:
    # Invariant 4: a resend overwrites itself in InfluxDB.
    a, b = accepted(payload()), accepted(payload())
    assert encode(list(a.points)) == encode(list(b.points))
    assert a.ack == b.ack


def test_resend_in_another_batch_gives_identical_points() -> None:
    first = accepted(payload(batch=4, sent_ns=T0, readings=[reading(1), reading(2)]))
    again = accepted(payload(batch=9, sent_ns=T0 + 60 * 10**9, readings=[reading(2)]))
    assert format_point(again.points[0]) == format_point(first.points[1])
    assert again.ack.batch_id == 9


def test_reading_order_inside_a_batch_does_not_change_points() -> None:
    fwd = accepted(payload(readings=[reading(1), reading(2)]))
    rev = accepted(payload(readings=[reading(2), reading(1)]))
    assert sorted(map(format_point, fwd.points)) == sorted(map(format_point, rev.points))


@given(
    st.lists(st.integers(1, 10**9), min_size=1, max_size=10, unique=True),
    st.integers(0, 2**40),
    st.booleans(),
)
def test_points_depend_only_on_readings(seqs: list[int], batch_id: int, synced: bool) -> None:
    items = [reading(s) for s in seqs]
    base = accepted(payload(readings=items))
    other = accepted(
        payload(
            readings=items,
            batch=batch_id,
            clock={"synced": synced, "boot": "other", "mono_ns": 99},
            sent_ns=batch_id,
        )
    )
    assert list(map(format_point, base.points)) == list(map(format_point, other.points))
    assert other.ack.seqs == SeqRanges.of(seqs)


@pytest.mark.parametrize(
    ("data", "topic", "reason"),
    [
        (b"garbage", "gw-1", "bad_json"),
        (payload(v=2), "gw-1", "unsupported_version"),
        (payload(), "gw-2", "gateway_mismatch"),
        (payload(epoch="XYZ"), "gw-1", "bad_field"),
        (payload(readings=[reading(1), reading(1)]), "gw-1", "duplicate_seq"),
        (payload(readings=[reading(1), reading(0)]), "gw-1", "bad_seq"),
        (payload(), None, None),
    ],
)
def test_refused_for_broken_envelopes(data: bytes, topic: str | None, reason: str | None) -> None:
    out = ingest(data, topic)
    if reason is None:
        assert isinstance(out, Accepted)
        return
    assert isinstance(out, Refused)
    assert out.reason == reason
    assert out.detail
    assert out.gateway == topic  # the topic's gateway, since the payload cannot be trusted


def test_bad_reading_becomes_a_dead_letter_and_is_acked() -> None:
    bad = reading(2, m="1bad")
    out = accepted(payload(readings=[reading(1), bad, reading(3)]))
    assert [p.identity.seq for p in out.points if p.identity] == [1, 3]
    (dl,) = out.dead_letters
    assert dl.measurement == DEADLETTER_MEASUREMENT
    assert dict(dl.tags) == {"gateway": "gw-1", "reason": "bad_measurement", "sensor": "pm-1",
                             "measurement": "1bad"}
    assert dl.fields["seq"] == 2
    assert dl.fields["epoch"] == EPOCH
    assert "1bad" in str(dl.fields["detail"])
    assert json.loads(str(dl.fields["raw"])) == bad
    assert dl.time_ns == T0 + 2  # the reading's own time, so a resend overwrites it
    assert out.ack.seqs == SeqRanges.of([1, 2, 3])
    assert out.readings == 3


@pytest.mark.parametrize("t", [None, -5, "soon", 1.5, True])
def test_dead_letter_without_a_usable_time_uses_its_seq(t: object) -> None:
    out = accepted(payload(readings=[reading(7, t=t)]))
    (dl,) = out.dead_letters
    assert dl.tags["reason"] == "bad_time"
    assert dl.time_ns == 7


def test_a_seq_past_influxdbs_last_timestamp_still_gives_a_storable_dead_letter() -> None:
    """Found by tests/fuzz: the largest int64 seq is one past InfluxDB's last time."""
    out = accepted(payload(readings=[reading(2**63 - 1, t=-1)]))
    (dl,) = out.dead_letters
    assert dl.time_ns == MAX_TIME_NS
    assert dl.fields["seq"] == 2**63 - 1


def test_dead_letters_are_idempotent_too() -> None:
    data = payload(readings=[reading(1, sensor="ghost"), reading(2, f={})])
    a, b = accepted(data), accepted(data)
    assert encode(list(a.dead_letters)) == encode(list(b.dead_letters))
    assert [d.tags["reason"] for d in a.dead_letters] == ["unknown_sensor", "no_fields"]


def test_all_readings_bad_still_acks_them_all() -> None:
    out = accepted(payload(readings=[reading(5, f={}), reading(6, f={})]))
    assert out.points == ()
    assert len(out.dead_letters) == 2
    assert out.ack.seqs == SeqRanges.of([5, 6])


def test_distinct_dead_letters_never_overwrite_each_other() -> None:
    same_t = T0 + 500
    out = accepted(
        payload(
            readings=[
                reading(1, t=same_t, f={"x": None}),
                reading(2, t=same_t, m="climate", sensor="th-1", f={"y": [1]}),
            ]
        )
    )
    keys = {(p.measurement, tuple(sorted(p.tags.items())), p.time_ns) for p in out.dead_letters}
    assert len(keys) == 2
