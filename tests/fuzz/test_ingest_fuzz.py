"""Any bytes and names given to ingest are written, dead-lettered or refused, with a reason.

Nothing raises. The invariant in full, for the sans-IO path a message takes
(payload bytes -> ``collector.ingest.ingest`` -> points and dead letters ->
``lineprotocol.encode``):

1. ``ingest`` returns ``Accepted`` or ``Refused`` and raises nothing, whatever the
   bytes and whatever the topic's gateway id.
2. A refusal carries a short reason code and a bounded detail.
3. Everything accepted encodes as line protocol: every point and every dead
   letter, however hostile the names it was built from (trailing backslashes at
   every cut length, lone surrogates, control characters, huge strings, many
   fields, deep nesting, Korean text). What is written is bounded: fields per
   point, string length, a dead letter's text, and times InfluxDB can store.
4. Every seq the ack names is accounted for exactly once, as a point or as a
   dead letter with a reason; no point goes to a measurement the collector keeps.
5. The pipeline's backstop, ``quarantined_point``, turns any point into a dead
   letter that encodes.

The batches reported against the running collector (``REPORTED``) are tried on
every run. The strategy starts from a good batch and makes attacks on it from two tables
(``ENVELOPE``, in one batch in five, and ``READING``, up to two per reading), so that every
kind of attack is tried many times in a few hundred examples while the rest of
the batch still gets judged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cityedge.uplink.payload import (
    MAX_FIELDS_PER_READING,
    MAX_STRING_CHARS,
    MAX_TIME_NS,
    MIN_TIME_NS,
    reserved_measurement,
)
from collector.deadletter import DEADLETTER_MEASUREMENT, MAX_RAW_CHARS
from collector.delivery import quarantined_point
from collector.ingest import Accepted, Refused, ingest
from collector.lineprotocol import Point, check, encode

FUZZ = settings(max_examples=300, deadline=None)
REASON = re.compile(r"[a-z_]{3,40}")
EPOCH = "00112233aabbccdd"

# -- hostile values: each family is drawn often -------------------------------------------
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
controls = st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Zs"])
korean = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
few = st.text(max_size=4)
hostile_text = st.one_of(
    st.integers(0, 70).map(lambda n: "a" * n + "\\"),  # a trailing backslash at every cut
    st.tuples(few, surrogates, few).map("".join),  # a lone surrogate
    st.tuples(few, controls, few).map("".join),  # a newline, NUL, zero-width space...
    st.text(korean, min_size=1, max_size=10),
    st.sampled_from(["alerts", "cityedge_deadletter", "cityedge_collector", "cityedge_x"]),
    st.sampled_from(["seq", "epoch", "time", "time_corrected", "", " ", "a,b=c d", '"']),
    st.integers(MAX_STRING_CHARS - 1, 70_000).map(lambda n: "y" * n),
    st.text(max_size=20),
)
hostile_numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([-1, 0, MAX_TIME_NS, MAX_TIME_NS + 1, 2**63 - 1, 2**63, -(2**63) - 1]),
    st.floats(), st.booleans(), st.none(),
)
deep = st.integers(1, 900).map(lambda n: json.loads("[" * n + "]" * n))
anything = st.one_of(hostile_text, hostile_numbers, deep,
                     st.dictionaries(hostile_text, hostile_numbers, max_size=3))


@dataclass
class Case:
    doc: dict[str, Any]
    topic: str | None
    attacks: list[str]


Attack = Callable[[st.DrawFn, Case, dict[str, Any]], None]
Where = Callable[[Case, dict[str, Any]], dict[str, Any]]


def put(where: Where, key: str | None, values: st.SearchStrategy[Any]) -> Attack:
    """An attack that puts a drawn value at ``where(case, reading)[key]``; with key None the
    drawn value becomes a key itself (holding 1)."""
    def attack(draw: st.DrawFn, c: Case, r: dict[str, Any]) -> None:
        target, value = where(c, r), draw(values)
        if key is None:
            target[value] = 1
        else:
            target[key] = value
    return attack


def _gateway(draw: st.DrawFn, c: Case, _r: dict[str, Any]) -> None:
    c.doc["gateway"] = c.topic = draw(hostile_text)


def _topic(draw: st.DrawFn, c: Case, _r: dict[str, Any]) -> None:
    c.topic = draw(st.none() | hostile_text)


def _sensor_id(draw: st.DrawFn, c: Case, r: dict[str, Any]) -> None:
    r["sensor"] = draw(hostile_text)
    c.doc["sensors"][r["sensor"]] = {"model": "x"}


def _many_fields(draw: st.DrawFn, _c: Case, r: dict[str, Any]) -> None:
    r["f"] = {f"f{i}": i for i in range(draw(st.integers(60, 10_000)))}


def _anchor(draw: st.DrawFn, c: Case, r: dict[str, Any]) -> None:
    """An anchor that corrects this reading's time out of InfluxDB's range (or not)."""
    c.doc["clock"]["synced"] = r["s"] = False
    edge = st.sampled_from([MAX_TIME_NS, MAX_TIME_NS - 2, -MAX_TIME_NS - 5, 2**63])
    c.doc["clock"]["boots"]["b"]["anchor_wall"] = draw(edge | st.integers(-(2**70), 2**70))


def _doc(c: Case, _r: dict[str, Any]) -> dict[str, Any]:
    return c.doc


def _reading(_c: Case, r: dict[str, Any]) -> dict[str, Any]:
    return r


def _fields(_c: Case, r: dict[str, Any]) -> dict[str, Any]:
    return r["f"] if isinstance(r["f"], dict) else r


def _tags(c: Case, _r: dict[str, Any]) -> dict[str, Any]:
    return c.doc["sensors"]["pm-1"]


def _site(c: Case, _r: dict[str, Any]) -> dict[str, Any]:
    return c.doc["site"]


# Where an attacker can put something, and what. The envelope's: one of these refuses the
# whole batch, so a batch gets at most one.
ENVELOPE: dict[str, Attack] = {
    "gateway": _gateway,
    "topic": _topic,
    "epoch": put(_doc, "epoch", hostile_text),
    "version": put(_doc, "v", anything),
    "sensor_id": _sensor_id,
    "tag_key": put(_tags, None, hostile_text),
    "tag_value": put(_tags, "model", hostile_text),
    "site_value": put(_site, "site", hostile_text),
    "seq": put(_reading, "seq", hostile_numbers),  # no identity: nothing can be acked
    "boots": put(lambda c, _r: c.doc["clock"]["boots"]["b"], "anchor_wall", anything),
}
# A reading's: each reading may take up to two, and the good ones around it still land.
READING: dict[str, Attack] = {
    "measurement": put(_reading, "m", hostile_text),
    "sensor": put(_reading, "sensor", hostile_text),
    "boot": put(_reading, "boot", hostile_text),
    "field_key": put(_fields, None, hostile_text),
    "field_value": put(_fields, "note", hostile_text),
    "field_value_any": put(_fields, "x", anything),
    "fields": put(_reading, "f", anything),
    "t": put(_reading, "t", hostile_numbers),
    "mono": put(_reading, "mono", hostile_numbers),
    "synced": put(_reading, "s", anything),
    "many_fields": _many_fields,
    "anchor": _anchor,
}


def good_batch(n: int) -> dict[str, Any]:
    return {
        "v": 1, "gateway": "gw-1", "epoch": EPOCH, "batch": 1, "sent_ns": 1,
        "clock": {"synced": True, "boot": "b", "mono_ns": 1,
                  "boots": {"b": {"anchor_mono": 0, "anchor_wall": 1_700_000_000 * 10**9}}},
        "site": {"district": "마포구", "site": "망원동 1번 정류장", "kind": "bus_stop"},
        "sensors": {"pm-1": {"model": "pms5003"}},
        "readings": [{"seq": i, "sensor": "pm-1", "m": "particulate",
                      "t": 1_700_000_000_000_000_000 + i, "boot": "b", "mono": i, "s": True,
                      "f": {"pm2_5_ugm3": i, "note": "보통"}} for i in range(1, n + 1)],
    }


def reported(attack: str, change: Callable[[dict[str, Any], dict[str, Any]], Any]) -> Case:
    """A batch of three good readings with the second one (or the envelope) attacked."""
    doc = good_batch(3)
    change(doc, doc["readings"][1])
    return Case(doc, doc["gateway"] if isinstance(doc["gateway"], str) else None, [attack])


# The attacks reported against the running collector, tried on every run.
REPORTED = [
    reported("measurement", lambda _d, r: r.update(m="m" * 63 + "\\")),
    reported("sensor", lambda _d, r: r.update(sensor="s" * 63 + "\\")),
    reported("field_value", lambda _d, r: r["f"].update(note="x\udc80")),
    reported("field_key", lambda _d, r: r["f"].update({"\udc80": 1})),
    reported("measurement", lambda _d, r: r.update(m="\udc80")),
    reported("site_value", lambda d, _r: d["site"].update(site="망원\udc80")),
    reported("tag_value", lambda d, _r: d["sensors"]["pm-1"].update(model="pms\n5003")),
    reported("many_fields", lambda _d, r: r.update(f={f"f{i}": i for i in range(10_000)})),
    reported("field_value", lambda _d, r: r["f"].update(note="y" * 4_000_000)),
    reported("measurement", lambda _d, r: r.update(m="alerts")),
    reported("measurement", lambda _d, r: r.update(m="cityedge_collector")),
    reported("anchor", lambda d, r: (r.update(s=False), d["clock"]["boots"]["b"].update(
        anchor_wall=MAX_TIME_NS))),
    reported("gateway", lambda d, _r: d.update(gateway="g" * 63 + "\\")),
]


@st.composite
def hostile_batches(draw: st.DrawFn) -> Case:
    """A good batch (Korean place names, 1-4 readings) with attacks on it."""
    n = draw(st.integers(1, 4))
    doc = good_batch(n)
    case = Case(doc, "gw-1", [])
    if draw(st.integers(0, 4)) == 4:  # one batch in five: the readings get judged in most
        case.attacks.append(draw(st.sampled_from(sorted(ENVELOPE))))
        ENVELOPE[case.attacks[0]](draw, case, doc["readings"][0])
    for r in doc["readings"]:
        for name in draw(st.lists(st.sampled_from(sorted(READING)), max_size=2)):
            case.attacks.append(name)
            READING[name](draw, case, r)
    return case


def receive(data: bytes, topic: str | None) -> Accepted | Refused:
    """The whole sans-IO receive path, and every assertion of the invariant."""
    out = ingest(data, topic)
    if isinstance(out, Refused):
        assert REASON.fullmatch(out.reason), out.reason
        assert 0 < len(out.detail) <= 1000
        return out
    assert isinstance(out, Accepted)
    body = encode([*out.points, *out.dead_letters])
    assert body.endswith(b"\n")
    written = [p.identity.seq for p in out.points if p.identity]
    dead = [int(p.fields["seq"]) for p in out.dead_letters]
    assert sorted(written + dead) == sorted(out.ack.seqs), "a reading lost or doubled"
    for dl in out.dead_letters:
        assert dl.measurement == DEADLETTER_MEASUREMENT
        assert REASON.fullmatch(dl.tags["reason"]), dl.tags
        assert all(len(v) <= MAX_RAW_CHARS + 40 for v in dl.fields.values()
                   if isinstance(v, str))
    for p in out.points:
        assert not reserved_measurement(p.measurement), p.measurement
        assert len(p.fields) <= MAX_FIELDS_PER_READING + 3  # seq, epoch, a time flag
        assert all(len(v) <= MAX_STRING_CHARS for v in p.fields.values() if isinstance(v, str))
    for p in [*out.points, *out.dead_letters]:
        assert MIN_TIME_NS <= p.time_ns <= MAX_TIME_NS
    return out


def with_reported(test: Callable[[Case], None]) -> Callable[[Case], None]:
    for case in reversed(REPORTED):
        test = example(case)(test)
    return test


@given(hostile_batches())
@with_reported
@FUZZ
def test_hostile_batches(case: Case) -> None:
    # ensure_ascii writes a lone surrogate as the \udXXX escape a gateway could send.
    out = receive(json.dumps(case.doc, ensure_ascii=True).encode(), case.topic)
    if not case.attacks:  # the batch before any attack is good: all of it is written
        assert isinstance(out, Accepted)
        assert len(out.points) == len(case.doc["readings"])
    text = json.dumps(case.doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    receive(text, case.topic)  # a surrogate as raw bytes is not UTF-8: bad JSON


@given(hostile_batches(), st.data())
@FUZZ
def test_hostile_batches_cut_or_flipped(case: Case, data: st.DataObject) -> None:
    raw = bytearray(json.dumps(case.doc, ensure_ascii=True).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.sampled_from(list(b'\\"{}[],:0a\xff\x00\n')))
    receive(bytes(raw[: data.draw(st.integers(0, len(raw)))]), case.topic)
    receive(bytes(raw), case.topic)


@given(st.binary(max_size=400), st.one_of(st.none(), hostile_text))
@FUZZ
def test_any_bytes(data: bytes, topic: str | None) -> None:
    receive(data, topic)


point_values = st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.booleans(), hostile_text)


@given(hostile_text, st.dictionaries(hostile_text, hostile_text, max_size=4),
       st.dictionaries(hostile_text, point_values, max_size=4), st.integers(-(2**70), 2**70),
       hostile_text)
@FUZZ
def test_any_point_becomes_a_dead_letter_that_encodes(measurement: str, tags: dict[str, str],
                                                       fields: dict[str, Any], time_ns: int,
                                                       detail: str) -> None:
    point = Point(measurement, tags, fields, time_ns)
    check(point)  # names a problem or none; never raises
    dl = quarantined_point(point, "unencodable", detail)
    assert check(dl) is None
    encode([dl])
