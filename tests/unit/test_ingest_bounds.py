"""Bounds and hostile text: each limit on both sides of its edge, and every reading that
breaks one dead-lettered with its reason while the rest of the batch lands.

Every dead letter built here must also encode as line protocol: an attacker's
name ending in a backslash, or a lone surrogate, once made the collector's write
raise and the process crash-loop on the message the broker kept handing back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cityedge.uplink.payload import (
    MAX_FIELDS_PER_READING,
    MAX_INT64,
    MAX_SENSORS_PER_BATCH,
    MAX_STRING_CHARS,
    MAX_TAGS_PER_SENSOR,
    MAX_TIME_NS,
    RESERVED_MEASUREMENTS,
)
from collector.deadletter import DEADLETTER_MEASUREMENT, MAX_RAW_CHARS
from collector.ingest import Accepted, Refused, ingest
from collector.lineprotocol import Point, check, encode
from tests.unit.test_ingest import EPOCH, payload, reading

SURROGATE = "\udc80"


def outcome(data: bytes, topic: str | None = "gw-1") -> Accepted | Refused:
    out = ingest(data, topic)
    if isinstance(out, Accepted):
        # Whatever came in, what goes to the database encodes.
        encode([*out.points, *out.dead_letters])
    return out


def one_bad(bad: dict[str, Any], **envelope: Any) -> tuple[Accepted, Point]:
    """A batch of a good reading, the bad one (seq 2) and another good one."""
    out = outcome(payload(readings=[reading(1), bad, reading(3)], **envelope))
    assert isinstance(out, Accepted), out
    assert [p.identity.seq for p in out.points if p.identity] == [1, 3]
    (dl,) = out.dead_letters
    assert dl.measurement == DEADLETTER_MEASUREMENT
    assert dl.fields["seq"] == 2
    assert out.ack.seqs.as_pairs() == [[1, 3]]  # the bad one is acked after its dead letter
    return out, dl


def json_with_surrogate(doc: dict[str, Any], marker: str) -> bytes:
    """JSON where ``marker`` stands for a lone surrogate escape (json.dumps would not)."""
    return json.dumps(doc).replace(marker, "\\udc80").encode()


# -- fields per reading ----------------------------------------------------------------
def test_the_most_fields_a_reading_may_have_land() -> None:
    fields = {f"f{i}": i for i in range(MAX_FIELDS_PER_READING)}
    out = outcome(payload(readings=[reading(1, f=fields)]))
    assert isinstance(out, Accepted)
    assert out.dead_letters == ()
    p = out.points[0]
    assert len(p.fields) == MAX_FIELDS_PER_READING
    written = p.line().rsplit(" ", 2)[1].split(",")
    assert len(written) == MAX_FIELDS_PER_READING + 2  # with seq and epoch


@pytest.mark.parametrize("n", [MAX_FIELDS_PER_READING + 1, 10_000])
def test_a_reading_with_too_many_fields_is_dead_lettered(n: int) -> None:
    _, dl = one_bad(reading(2, f={f"f{i}": i for i in range(n)}))
    assert dl.tags["reason"] == "too_many_fields"
    assert f"{n} fields" in str(dl.fields["detail"])
    assert len(str(dl.fields["raw"])) <= MAX_RAW_CHARS + 40  # kept, but not whole


# -- string length ---------------------------------------------------------------------
def test_a_string_at_the_limit_lands() -> None:
    out = outcome(payload(readings=[reading(1, f={"note": "가" * MAX_STRING_CHARS})]))
    assert isinstance(out, Accepted)
    assert out.points[0].fields["note"] == "가" * MAX_STRING_CHARS


@pytest.mark.parametrize("n", [MAX_STRING_CHARS + 1, 4 * 1024 * 1024 - 4096])
def test_a_longer_string_is_dead_lettered_and_not_stored_whole(n: int) -> None:
    _, dl = one_bad(reading(2, f={"note": "x" * n}))
    assert dl.tags["reason"] == "string_too_long"
    assert len(str(dl.fields["raw"])) <= MAX_RAW_CHARS + 40


# -- reserved measurements -----------------------------------------------------------------
@pytest.mark.parametrize("m", [*sorted(RESERVED_MEASUREMENTS), "cityedge_anything"])
def test_a_gateway_cannot_write_the_collectors_measurements(m: str) -> None:
    _, dl = one_bad(reading(2, m=m))
    assert dl.tags["reason"] == "reserved_measurement"
    assert dl.tags["measurement"] == m  # the dead letter says what was tried


@pytest.mark.parametrize("m", ["gateway_health", "sensor_health", "outbox_drops", "alert",
                               "cityedge"])
def test_what_gateways_send_themselves_is_not_reserved(m: str) -> None:
    out = outcome(payload(readings=[reading(1, m=m)]))
    assert isinstance(out, Accepted)
    assert [p.measurement for p in out.points] == [m]


# -- tags per sensor, sensors per batch (the envelope: the whole batch is refused) ---------
def test_the_most_tags_a_sensor_may_have() -> None:
    tags = {f"t{i}": "v" for i in range(MAX_TAGS_PER_SENSOR)}
    assert isinstance(outcome(payload(sensors={"pm-1": tags})), Accepted)
    tags[f"t{MAX_TAGS_PER_SENSOR}"] = "v"
    out = outcome(payload(sensors={"pm-1": tags}))
    assert isinstance(out, Refused)
    assert out.reason == "too_many_tags"


def test_the_most_sensors_a_batch_may_name() -> None:
    sensors = {f"s{i}": {"model": "m"} for i in range(MAX_SENSORS_PER_BATCH - 1)}
    sensors["pm-1"] = {"model": "pms5003"}
    ok = outcome(payload(sensors=sensors, readings=[reading(1)]))
    assert isinstance(ok, Accepted)
    sensors["one-more"] = {}
    out = outcome(payload(sensors=sensors, readings=[reading(1)]))
    assert isinstance(out, Refused)
    assert out.reason == "too_many_sensors"


# -- numbers and times InfluxDB cannot store -------------------------------------------
@pytest.mark.parametrize("value", [MAX_INT64 + 1, -MAX_INT64 - 2, 10**300])
def test_an_integer_beyond_64_bits_is_dead_lettered(value: int) -> None:
    _, dl = one_bad(reading(2, f={"x": value}))
    assert dl.tags["reason"] == "bad_value"


@pytest.mark.parametrize("value", [MAX_INT64, -MAX_INT64 - 1])
def test_64_bit_integers_land(value: int) -> None:
    out = outcome(payload(readings=[reading(1, f={"x": value})]))
    assert isinstance(out, Accepted)
    assert out.points[0].fields["x"] == value


def test_a_time_past_influxdbs_range_is_dead_lettered() -> None:
    _, dl = one_bad(reading(2, t=MAX_TIME_NS + 1))
    assert dl.tags["reason"] == "bad_time"
    assert dl.time_ns == 2  # its seq: the reading's own time cannot be stored


def test_a_correction_that_leaves_the_range_is_dead_lettered_at_the_readings_time() -> None:
    """An unsynchronised reading corrected by an anchor far in the future."""
    clock = {"synced": False, "boot": "b00t", "mono_ns": 5,
             "boots": {"b00t": {"anchor_mono": 0, "anchor_wall": MAX_TIME_NS}}}
    bad = reading(2, s=False, mono=10**15)
    _, dl = one_bad(bad, clock=clock)
    assert dl.tags["reason"] == "bad_time"
    assert dl.time_ns == bad["t"]  # the reading's own time: a resend overwrites it
    assert json.loads(str(dl.fields["raw"]))["seq"] == 2


# -- hostile names: trailing backslashes at every cut, surrogates, control characters -----
@pytest.mark.parametrize("length", range(1, 70))
@pytest.mark.parametrize("key", ["sensor", "m"])
def test_a_backslash_at_any_cut_never_reaches_a_tag(length: int, key: str) -> None:
    name = "a" * (length - 1) + "\\" + "\\" * (length % 3)
    out = outcome(payload(readings=[reading(1), reading(2, **{key: name})]))
    assert isinstance(out, Accepted)
    (dl,) = out.dead_letters
    tag = dl.tags.get("sensor" if key == "sensor" else "measurement", "")
    assert not tag.endswith("\\")
    assert check(dl) is None


@pytest.mark.parametrize(
    ("where", "reason"),
    [("m", "bad_measurement"), ("sensor", "unknown_sensor"), ("field_key", "bad_field_name"),
     ("field_value", "bad_value"), ("boot", None)],
)
def test_a_lone_surrogate_in_a_reading_is_a_reason_not_a_crash(where: str,
                                                               reason: str | None) -> None:
    mark = "SURROGATE_HERE"
    bad = reading(2)
    if where == "field_key":
        bad["f"] = {mark: 1}
    elif where == "field_value":
        bad["f"] = {"note": f"x{mark}"}
    else:
        bad[where] = f"x{mark}"
    out = outcome(json_with_surrogate(json.loads(payload(readings=[reading(1), bad])), mark))
    assert isinstance(out, Accepted)
    if reason is None:  # the boot id is never written: it only picks a clock anchor
        assert out.dead_letters == ()
        return
    (dl,) = out.dead_letters
    assert dl.tags["reason"] == reason
    assert SURROGATE not in str(dl.fields["raw"])
    assert "\\udc80" in str(dl.fields["raw"])  # kept as the escape it came as


@pytest.mark.parametrize("value", [f"마포{SURROGATE}구", "a\nb", "a\x00b", "a\x1bb", "a\u200bb",
                                   "a\u3000b", "a\\"])
def test_a_tag_value_no_line_can_carry_refuses_the_batch(value: str) -> None:
    mark = "VALUE_HERE"
    for over in ({"site": {"district": mark}}, {"sensors": {"pm-1": {"model": mark}}}):
        text = json.dumps(json.loads(payload(**over))).replace(
            json.dumps(mark), json.dumps(value))
        out = outcome(text.encode())
        assert isinstance(out, Refused), (over, value)
        assert out.reason == "bad_field"


def test_korean_tag_values_are_printable_and_land() -> None:
    out = outcome(payload(site={"district": "강남구", "site": "역삼동 1번 정류장",
                                "kind": "bus_stop"}))
    assert isinstance(out, Accepted)
    assert out.points[0].tags["site"] == "역삼동 1번 정류장"


@pytest.mark.parametrize("topic", ["gw 1", "", "x" * 100_000, f"gw{SURROGATE}", "gw\\"])
def test_a_topic_naming_no_possible_gateway_is_refused_before_parsing(topic: str) -> None:
    out = outcome(payload(gateway="gw-1"), topic)
    assert isinstance(out, Refused)
    assert out.reason == "bad_gateway_id"
    assert out.gateway is None
    assert len(out.detail) < 200


def test_deep_nesting_inside_a_reading_is_a_dead_letter() -> None:
    text = payload(readings=[reading(1), reading(2, f={"x": "NEST"})]).decode()
    deep = "[" * 5000 + "]" * 5000
    out = outcome(text.replace('"NEST"', deep).encode())
    assert isinstance(out, Refused)  # too deep for json: the whole payload is bad JSON
    assert out.reason == "bad_json"
    nested = "[" * 900 + "]" * 900
    out = outcome(text.replace('"NEST"', nested).encode())
    assert isinstance(out, Accepted)
    (dl,) = out.dead_letters
    assert dl.tags["reason"] == "bad_value"


def test_dead_letter_fields_are_bounded() -> None:
    _, dl = one_bad(reading(2, sensor="s" * 5000, m="m" * 5000))
    assert len(dl.tags["sensor"]) <= 64
    assert len(dl.tags["measurement"]) <= 64
    assert dl.fields["epoch"] == EPOCH
