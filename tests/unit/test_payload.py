"""Uplink batch and ack formats: round trips, every rejection reason, and the fuzz invariant.

Invariant (DESIGN "Uplink messages", STYLE "one exception family"): any bytes given
to ``decode_batch`` either decode to a Batch or raise ``PayloadError``, never
anything else.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityedge.uplink import (
    SUPPORTED_VERSIONS,
    Ack,
    Batch,
    PayloadError,
    Reading,
    SeqRanges,
    decode_ack,
    decode_batch,
    encode_ack,
    encode_batch,
)
from cityedge.uplink.payload import (
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_BATCH,
    MAX_TIME_NS,
    RESERVED_FIELDS,
    reserved_measurement,
    tag_value_ok,
)

EPOCH = "0123456789abcdef"


def reading(seq: int, /, **over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "seq": seq,
        "sensor": "pm-1",
        "m": "particulate",
        "t": 1_700_000_000_000_000_000 + seq,
        "boot": "b00t",
        "mono": 1000 + seq,
        "f": {"pm2_5_ugm3": 12, "pm10_ugm3": 20.5},
    }
    r.update(over)
    return r


def doc(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "v": 1,
        "gateway": "gw-1",
        "epoch": EPOCH,
        "batch": 7,
        "sent_ns": 1_700_000_000_500_000_000,
        "clock": {"synced": True, "boot": "b00t", "mono_ns": 123_456_789},
        "site": {"district": "마포구", "site": "망원동 1번 정류장", "kind": "bus_stop"},
        "sensors": {"pm-1": {"model": "pms5003", "mount": "지붕"}, "th-1": {"model": "sht31"}},
        "readings": [
            reading(1),
            reading(2),
            reading(3, sensor="th-1", m="climate", f={"t_c": 3.5}),
        ],
    }
    d.update(over)
    return d


def raw(d: dict[str, Any]) -> bytes:
    return json.dumps(d, ensure_ascii=False).encode()


def make_batch(**over: Any) -> Batch:
    b: dict[str, Any] = {
        "gateway": "gw-1",
        "epoch": EPOCH,
        "batch_id": 3,
        "sent_ns": 5,
        "clock_synced": False,
        "boot": "b00t",
        "mono_ns": 9,
        "site": {"district": "강남구", "site": "역삼동", "kind": "dust_zone"},
        "sensors": {"pm-1": {"model": "pms5003", "floor": "3층"}},
        "readings": (
            Reading("pm-1", "particulate", {"pm2_5_ugm3": 12}, 10, "b00t", 1, seq=1),
            Reading("pm-1", "particulate", {"note": '먼지 "많음" \\'}, 11, "b00t", 2, seq=2),
        ),
    }
    b.update(over)
    return Batch(**b)


def reason_of(data: bytes, topic_gateway: str | None = None) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        decode_batch(data, topic_gateway)
    return info.value


# -- round trips ------------------------------------------------------------------


def test_encode_decode_round_trip_with_korean_tags() -> None:
    batch = make_batch()
    data = encode_batch(batch)
    assert "강남구".encode() in data  # UTF-8 on the wire, not \\u escapes
    assert decode_batch(data, "gw-1") == batch


def test_decode_without_topic_skips_the_gateway_check() -> None:
    assert decode_batch(encode_batch(make_batch())).gateway == "gw-1"


def test_decode_valid_document() -> None:
    b = decode_batch(raw(doc()), "gw-1")
    assert (b.gateway, b.epoch, b.batch_id, b.version) == ("gw-1", EPOCH, 7, 1)
    assert b.clock_synced is True
    assert (b.boot, b.mono_ns, b.sent_ns) == ("b00t", 123_456_789, 1_700_000_000_500_000_000)
    assert b.site["site"] == "망원동 1번 정류장"
    assert b.sensors["pm-1"]["mount"] == "지붕"
    assert [r.seq for r in b.readings] == [1, 2, 3]
    assert b.readings[2] == Reading(
        "th-1", "climate", {"t_c": 3.5}, 1_700_000_000_000_000_003, "b00t", 1003, seq=3
    )
    assert b.rejected == ()
    assert b.all_seqs() == SeqRanges.of([1, 2, 3])


def test_site_is_optional() -> None:
    d = doc()
    del d["site"]
    assert decode_batch(raw(d)).site == {}


@pytest.mark.parametrize(
    "value", [0, -5, 2**62, 1.5, -0.0, True, False, "", "문자열", 'a "quoted" \\ value']
)
def test_field_values_round_trip(value: object) -> None:
    d = doc(readings=[reading(1, f={"x": value})])
    (r,) = decode_batch(raw(d)).readings
    assert r.fields["x"] == value
    assert type(r.fields["x"]) is type(value)


finite = st.floats(allow_nan=False, allow_infinity=False)
names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,10}\Z").filter(
    lambda n: n not in RESERVED_FIELDS and not reserved_measurement(n)
)
ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,10}\Z")
field_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1), finite, st.booleans(), st.text(max_size=20)
)


# What InfluxDB can carry as a tag value (payload.tag_value_ok): Korean included.
# Printable means Unicode letters, marks, numbers, punctuation, symbols and the ASCII space.
printable = st.characters(categories=["L", "M", "N", "P", "S"], include_characters=" ")
tag_values = st.text(printable, min_size=1, max_size=10).filter(tag_value_ok)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    sensor_ids = draw(st.lists(ids, min_size=1, max_size=3, unique=True))
    sensors = {
        s: draw(st.dictionaries(names, tag_values, max_size=3)) for s in sensor_ids
    }
    seqs = draw(st.lists(st.integers(1, 10**12), min_size=1, max_size=8, unique=True))
    readings = tuple(
        Reading(
            seq=seq,
            sensor=draw(st.sampled_from(sensor_ids)),
            measurement=draw(names),
            time_ns=draw(st.integers(0, MAX_TIME_NS)),
            boot=draw(st.text(max_size=8)),
            mono_ns=draw(st.integers(0, 2**63 - 1)),
            fields=draw(st.dictionaries(names, field_values, min_size=1, max_size=4)),
        )
        for seq in seqs
    )
    return Batch(
        gateway=draw(ids),
        epoch=draw(st.from_regex(r"\A[0-9a-f]{8,64}\Z")),
        batch_id=draw(st.integers(0, 2**40)),
        sent_ns=draw(st.integers(0, 2**63 - 1)),
        clock_synced=draw(st.booleans()),
        boot=draw(st.text(max_size=8)),
        mono_ns=draw(st.integers(0, 2**63 - 1)),
        site=draw(
            st.dictionaries(st.sampled_from(["district", "site", "kind"]), tag_values)
        ),
        sensors=sensors,
        readings=readings,
    )


@given(batches())
@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_property(batch: Batch) -> None:
    back = decode_batch(encode_batch(batch), batch.gateway)
    assert back == batch
    assert back.rejected == ()


# -- envelope rejections ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"\xff\xfe\x00", b"{", b"[1, 2]", b"null", b"17", b'"v"'],
    ids=["empty", "text", "not-utf8", "truncated", "list", "null", "number", "string"],
)
def test_bad_json(data: bytes) -> None:
    assert reason_of(data).reason == "bad_json"


@pytest.mark.parametrize("version", [0, 2, 99, "1", None, -1])
def test_unsupported_version_names_the_accepted_ones(version: object) -> None:
    err = reason_of(raw(doc(v=version)))
    assert err.reason == "unsupported_version"
    assert repr(version) in err.detail
    assert str(sorted(SUPPORTED_VERSIONS)) in err.detail  # "[1]"


def test_missing_version() -> None:
    d = doc()
    del d["v"]
    err = reason_of(raw(d))
    assert err.reason == "unsupported_version"
    assert "[1]" in err.detail


@pytest.mark.parametrize("version", [True, 1.0])
def test_version_must_be_an_int(version: object) -> None:
    assert reason_of(raw(doc(v=version))).reason == "unsupported_version"


@pytest.mark.parametrize("version", [[1], {}, []], ids=repr)
def test_unhashable_version_is_a_payload_error(version: object) -> None:
    assert reason_of(raw(doc(v=version))).reason == "unsupported_version"


def test_gateway_mismatch_between_topic_and_payload() -> None:
    err = reason_of(raw(doc()), topic_gateway="gw-2")
    assert err.reason == "gateway_mismatch"
    assert "'gw-1'" in err.detail
    assert "'gw-2'" in err.detail


def test_gateway_match_is_exact() -> None:
    assert reason_of(raw(doc()), topic_gateway="GW-1").reason == "gateway_mismatch"


@pytest.mark.parametrize(
    ("over", "reason", "mentions"),
    [
        ({"epoch": "DEADBEEF"}, "bad_field", "epoch"),  # upper case
        ({"epoch": "abc123"}, "bad_field", "epoch"),  # too short
        ({"epoch": "a" * 65}, "bad_field", "epoch"),  # too long
        ({"epoch": "0123456789abcdeg"}, "bad_field", "epoch"),
        ({"epoch": 12345678}, "bad_field", "epoch"),
        ({"epoch": None}, "bad_field", "epoch"),
        ({"gateway": "gw 1"}, "bad_field", "gateway"),
        ({"gateway": ""}, "bad_field", "gateway"),
        ({"gateway": 1}, "bad_field", "gateway"),
        ({"gateway": "g" * 65}, "bad_field", "gateway"),
        ({"clock": None}, "bad_field", "clock"),
        ({"clock": {"synced": "yes", "boot": "b", "mono_ns": 1}}, "bad_field", "clock.synced"),
        ({"clock": {"synced": True, "boot": 1, "mono_ns": 1}}, "bad_field", "clock.boot"),
        ({"clock": {"synced": True, "boot": "b", "mono_ns": True}}, "bad_field", "clock.mono_ns"),
        ({"batch": True}, "bad_field", "batch"),
        ({"batch": "7"}, "bad_field", "batch"),
        ({"sent_ns": 1.5}, "bad_field", "sent_ns"),
        ({"sensors": []}, "bad_field", "sensors"),
        ({"sensors": {"pm 1": {}}}, "bad_field", "pm 1"),
        ({"sensors": {"pm-1": {"model": 5}}}, "bad_field", "sensors.pm-1"),
        ({"sensors": {"pm-1": {"bad-name": "x"}}}, "bad_field", "sensors.pm-1"),
        ({"sensors": {"pm-1": "pms5003"}}, "bad_field", "sensors.pm-1"),
        ({"site": ["마포구"]}, "bad_field", "site"),
        ({"site": {"district": 1}}, "bad_field", "site"),
        ({"readings": {"1": {}}}, "bad_field", "readings"),
        ({"readings": None}, "bad_field", "readings"),
    ],
)
def test_envelope_rejections(over: dict[str, Any], reason: str, mentions: str) -> None:
    err = reason_of(raw(doc(**over)))
    assert err.reason == reason
    assert mentions in err.detail
    assert str(err).startswith(f"{reason}: ")


def test_too_many_readings() -> None:
    items = [reading(i) for i in range(1, MAX_READINGS_PER_BATCH + 2)]
    err = reason_of(raw(doc(readings=items)))
    assert err.reason == "too_large"
    assert str(MAX_READINGS_PER_BATCH) in err.detail


def test_exactly_the_maximum_is_accepted() -> None:
    items = [reading(i) for i in range(1, MAX_READINGS_PER_BATCH + 1)]
    assert len(decode_batch(raw(doc(readings=items))).readings) == MAX_READINGS_PER_BATCH


def test_payload_over_the_byte_limit() -> None:
    err = reason_of(b" " * (MAX_PAYLOAD_BYTES + 1))
    assert err.reason == "too_large"


def test_duplicate_seq() -> None:
    err = reason_of(raw(doc(readings=[reading(1), reading(2), reading(1)])))
    assert err.reason == "duplicate_seq"
    assert "seq 1" in err.detail


@pytest.mark.parametrize(
    "item",
    [
        reading(0),
        reading(-1),
        reading(1, seq="1"),
        reading(1, seq=1.0),
        reading(1, seq=True),
        reading(1, seq=None),
        {k: v for k, v in reading(1).items() if k != "seq"},
        5,
        "reading",
        None,
        [1],
    ],
    ids=[
        "zero",
        "negative",
        "string",
        "float",
        "bool",
        "null",
        "missing",
        "int",
        "str",
        "none",
        "list",
    ],
)
def test_bad_seq_sinks_the_batch(item: object) -> None:
    # Without a seq a reading has no identity: it can be neither acked nor dead-lettered.
    err = reason_of(raw(doc(readings=[reading(1), item])))
    assert err.reason == "bad_seq"


# -- reading rejections: the bad one is set aside, the rest go through ---------------------


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"sensor": "nope"}, "unknown_sensor"),
        ({"sensor": None}, "unknown_sensor"),
        ({"sensor": 1}, "unknown_sensor"),
        ({"m": "1particulate"}, "bad_measurement"),
        ({"m": "pm 2.5"}, "bad_measurement"),
        ({"m": "미세먼지"}, "bad_measurement"),
        ({"m": ""}, "bad_measurement"),
        ({"m": None}, "bad_measurement"),
        ({"t": -1}, "bad_time"),
        ({"t": 1.5}, "bad_time"),
        ({"t": "1700000000"}, "bad_time"),
        ({"t": True}, "bad_time"),
        ({"t": None}, "bad_time"),
        ({"mono": -1}, "bad_time"),
        ({"mono": False}, "bad_time"),
        ({"boot": None}, "bad_time"),
        ({"boot": 7}, "bad_time"),
        ({"f": {}}, "no_fields"),
        ({"f": None}, "no_fields"),
        ({"f": [1, 2]}, "no_fields"),
        ({"f": {"seq": 1}}, "bad_field_name"),
        ({"f": {"epoch": "x"}}, "bad_field_name"),
        ({"f": {"time": 1}}, "bad_field_name"),
        ({"f": {"pm-2.5": 1}}, "bad_field_name"),
        ({"f": {"": 1}}, "bad_field_name"),
        ({"f": {"x": None}}, "bad_value"),
        ({"f": {"x": [1]}}, "bad_value"),
        ({"f": {"x": {"y": 1}}}, "bad_value"),
    ],
)
def test_bad_reading_is_rejected_with_its_seq(over: dict[str, Any], code: str) -> None:
    bad = reading(2, **over)
    b = decode_batch(raw(doc(readings=[reading(1), bad, reading(3)])), "gw-1")
    assert [r.seq for r in b.readings] == [1, 3]
    (rej,) = b.rejected
    assert rej.seq == 2
    assert rej.reason.startswith(f"{code}: ")
    assert json.loads(rej.raw) == bad
    assert b.all_seqs() == SeqRanges.of(
        [1, 2, 3]
    )  # the bad one is acked too (after dead-lettering)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_float_is_rejected(literal: str) -> None:
    text = raw(doc(readings=[reading(1), reading(2, f={"x": 0})])).decode()
    text = text.replace('"x": 0', f'"x": {literal}')
    b = decode_batch(text.encode())
    assert [r.seq for r in b.readings] == [1]
    assert b.rejected[0].seq == 2
    assert b.rejected[0].reason.startswith("bad_value: ")


def test_rejected_raw_keeps_korean_text() -> None:
    bad = reading(1, sensor="없는센서")
    (rej,) = decode_batch(raw(doc(readings=[bad]))).rejected
    assert "없는센서" in rej.raw


def test_every_reading_bad_still_decodes() -> None:
    b = decode_batch(raw(doc(readings=[reading(1, m=""), reading(2, f={})])))
    assert b.readings == ()
    assert [r.seq for r in b.rejected] == [1, 2]
    assert b.all_seqs() == SeqRanges.of([1, 2])


@pytest.mark.parametrize(
    "over",
    [
        {"readings": [reading(1, m="particulate\n")]},
        {"readings": [reading(1, f={"pm\n": 1})]},
        {"epoch": EPOCH + "\n"},
        {"gateway": "gw-1\n"},
        {"sensors": {"pm-1\n": {}}, "readings": [reading(1, sensor="pm-1\n")]},
        {"sensors": {"pm-1": {"model\n": "x"}}},
    ],
    ids=["measurement", "field", "epoch", "gateway", "sensor-id", "tag-name"],
)
def test_trailing_newline_in_names_is_refused(over: dict[str, Any]) -> None:
    try:
        b = decode_batch(raw(doc(**over)))
    except PayloadError:
        return
    assert b.readings == ()  # a bad name inside a reading must at least reject that reading


# -- the fuzz invariant -------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
envelope_keys = [
    "v",
    "gateway",
    "epoch",
    "batch",
    "sent_ns",
    "clock",
    "site",
    "sensors",
    "readings",
]
reading_keys = ["seq", "sensor", "m", "t", "boot", "mono", "f"]


def _decode_or_payload_error(data: bytes, topic: str | None = None) -> None:
    try:
        b = decode_batch(data, topic)
    except PayloadError as exc:
        assert exc.reason
        return
    assert isinstance(b, Batch)
    # Every reading is accounted for, good or rejected; only a time probe has none.
    assert b.readings or b.rejected or json.loads(data)["readings"] == []


@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _decode_or_payload_error(data)


@given(json_values)
def test_fuzz_arbitrary_json(value: object) -> None:
    _decode_or_payload_error(json.dumps(value).encode())


@given(st.sampled_from(envelope_keys), json_values, st.booleans())
def test_fuzz_envelope_field_replaced(key: str, value: object, delete: bool) -> None:
    d = doc()
    if delete:
        del d[key]
    else:
        d[key] = value
    _decode_or_payload_error(raw(d), "gw-1")


@given(st.integers(0, 2), st.sampled_from(reading_keys), json_values, st.booleans())
def test_fuzz_reading_field_replaced(index: int, key: str, value: object, delete: bool) -> None:
    d = copy.deepcopy(doc())
    if delete:
        del d["readings"][index][key]
    else:
        d["readings"][index][key] = value
    _decode_or_payload_error(raw(d))


@given(st.lists(json_values, min_size=1, max_size=5))
def test_fuzz_readings_list(items: list[object]) -> None:
    _decode_or_payload_error(raw(doc(readings=items)))


@given(batches(), st.data())
@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_truncated_or_flipped(batch: Batch, data: st.DataObject) -> None:
    encoded = encode_batch(batch)
    cut = data.draw(st.integers(0, len(encoded)))
    _decode_or_payload_error(encoded[:cut])
    pos = data.draw(st.integers(0, len(encoded) - 1))
    flipped = bytearray(encoded)
    flipped[pos] ^= data.draw(st.integers(1, 255))
    _decode_or_payload_error(bytes(flipped))


def test_deep_nesting_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        decode_batch(b"[" * 100_000)


def test_huge_integer_literal_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        decode_batch(b'{"v": 1, "batch": ' + b"9" * 5000 + b"}")


# -- acks ---------------------------------------------------------------------------------


def test_ack_round_trip() -> None:
    ack = Ack("gw-1", EPOCH, 7, SeqRanges.of([1, 2, 3, 10, 11, 500]))
    data = encode_ack(ack)
    assert json.loads(data) == {
        "v": 1,
        "gateway": "gw-1",
        "epoch": EPOCH,
        "batch": 7,
        "seqs": [[1, 3], [10, 11], [500, 500]],
    }
    assert decode_ack(data) == ack


@given(ids, st.integers(0, 2**40), st.sets(st.integers(1, 10**6), max_size=50))
def test_ack_round_trip_property(gateway: str, batch_id: int, seqs: set[int]) -> None:
    ack = Ack(gateway, EPOCH, batch_id, SeqRanges.of(seqs))
    assert decode_ack(encode_ack(ack)) == ack


def test_ack_normalises_overlapping_pairs() -> None:
    data = json.dumps(
        {"v": 1, "gateway": "g", "epoch": EPOCH, "batch": 1, "seqs": [[5, 9], [1, 6]]}
    )
    assert decode_ack(data.encode()).seqs == SeqRanges(((1, 9),))


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"seqs": [[5, 4]]}, "bad_field"),
        ({"seqs": [[1, 2, 3]]}, "bad_field"),
        ({"seqs": [5]}, "bad_field"),
        ({"seqs": None}, "bad_field"),
        ({"seqs": "1-5"}, "bad_field"),
        ({"gateway": None}, "bad_field"),
        ({"batch": True}, "bad_field"),
        ({"v": 2}, "unsupported_version"),
    ],
)
def test_ack_rejections(over: dict[str, Any], reason: str) -> None:
    d = {"v": 1, "gateway": "g", "epoch": EPOCH, "batch": 1, "seqs": [[1, 2]]} | over
    with pytest.raises(PayloadError) as info:
        decode_ack(json.dumps(d).encode())
    assert info.value.reason == reason


def test_ack_bad_json() -> None:
    with pytest.raises(PayloadError) as info:
        decode_ack(b"{nope")
    assert info.value.reason == "bad_json"


@pytest.mark.parametrize(
    "seqs", [[["a", "b"]], [[1.5, 2.5]], [{"a": 1, "b": 2}], [[True, True]]], ids=repr
)
def test_ack_seqs_must_be_ints(seqs: object) -> None:
    d = {"v": 1, "gateway": "g", "epoch": EPOCH, "batch": 1, "seqs": seqs}
    with pytest.raises(PayloadError):
        decode_ack(json.dumps(d).encode())
