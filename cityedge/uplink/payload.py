"""Uplink batch and ack formats, version 1 (JSON), encoded and validated sans-IO.

A batch carries many readings (the broker's cost is per message), the gateway's
send time and clock state, and the tags that say where the readings come from.
Every payload names its format version; the collector accepts the versions in
``SUPPORTED_VERSIONS`` and rejects others with a reason.

Batch, version 1::

    {"v": 1, "gateway": "gw-1", "epoch": "<hex>", "batch": 7,
     "sent_ns": 1700000000000000000,
     "clock": {"synced": true, "boot": "<hex>", "mono_ns": 123456789,
               "boots": {"<hex>": {"unverified_before": 0, "anchor_mono": 5,
                                   "anchor_wall": 17...}}},
     "site": {"district": "...", "site": "...", "kind": "dust_zone"},
     "sensors": {"pm-1": {"model": "pms5003"}},
     "readings": [{"seq": 1, "sensor": "pm-1", "m": "particulate", "t": 17..., "boot": "<hex>",
                   "mono": 123, "s": true, "f": {"pm2_5_ugm3": 12}}]}

A batch with no readings is a time probe: it is acked at once, and the ack's
``time_ns`` gives a gateway without NTP the collector's clock.

Ack, version 1::

    {"v": 1, "gateway": "gw-1", "epoch": "<hex>", "batch": 7, "seqs": [[1, 500]],
     "time_ns": 1700000000000000000, "mac": "<64 hex digits>"}

``seqs`` are inclusive ranges, 1 <= lo <= hi <= 2**63 - 1 (SQLite's largest
rowid), at most ``MAX_ACK_RANGES`` of them: an ack answers one batch.

Sealed acks (cityedge/uplink/seal.py, purpose ``"ack"``): a collector that
has the gateway's seal key sends ``encode_ack(ack, key)``, which adds
``mac`` over every other field; a gateway with a key decodes with
``decode_ack(data, key)``, which refuses an ack without a mac (reason
``unsealed``) or with a wrong one (``bad_seal``). Without a key (insecure
mode, opted into by configuring no secret) acks are neither sealed nor
checked, and any mac is ignored. A seal proves that a collector sent the ack,
not what it may delete: the gateway applies an ack only to the seqs of the
batch it names, while that batch is in flight (edge_agent/outbox/window.py).

Size (~450 lines, over the ~400 of the style guide): the batch and the ack are
one format version, read through the same envelope checks (``_load``,
``_req``, ``seq_ok``) and bounds; split, a version change would have to be
made in two modules that must agree.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from cityedge.uplink.reading import Reading, dump_fields
from cityedge.uplink.seal import is_sealed, seal, verify
from cityedge.uplink.seqranges import SeqRanges
from cityedge.uplink.text import brief, raw_text, tag_text_ok, utf8_ok
from cityedge.uplink.timing import (
    MAX_INT64,
    MAX_TIME_NS,
    MIN_TIME_NS,  # noqa: F401 (the time range, also here)
    BootTime,
    storable_time,
)

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

# A batch is one MQTT message or one HTTP request; Mosquitto's default
# message_size_limit is 256 MB, but a gateway on a slow uplink should not build
# messages that take minutes to send. 5,000 readings is about 1 MB of JSON.
MAX_READINGS_PER_BATCH = 5000
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
# An ack names the seqs of one batch: at most one range per reading.
MAX_ACK_RANGES = MAX_READINGS_PER_BATCH
# Seqs are SQLite rowids (INTEGER PRIMARY KEY): 1 .. 2**63 - 1, readings' and acks' alike.
MAX_SEQ = MAX_INT64

# InfluxDB accepts nearly any name; these keep names portable to 2.x/3.x and
# readable in InfluxQL without quoting. Korean text is fine in tag *values*.
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
EPOCH_RE = re.compile(r"^[0-9a-f]{8,64}$")

# Bounds on what one gateway may put in one batch (DESIGN, "Trust": no single
# message may grow the collector's memory or the database without bound). Each
# is far above what the fleet sends; going past one is a reason, never a crash.
# The largest firmware profile decodes 16 fields and gateway_health carries
# about 20. InfluxDB 1.x keeps every field key of a measurement in its index
# for good, so a reading with 10,000 invented keys would grow it for ever.
MAX_FIELDS_PER_READING = 64
# InfluxDB 1.x caps a string field at 64 KB (line protocol reference, "Data
# types"); no sensor sends more than a status word or a display line.
MAX_STRING_CHARS = 1024
# Tags name the series (InfluxDB's series cardinality): the agent sends a model
# and a handful of installer tags (pole, floor...), the collector adds five more.
MAX_TAGS_PER_SENSOR = 16
# A gateway carries 1-10 sensors (DESIGN, "Where it runs"); a batch names those
# its readings come from, plus any removed from the config while they waited.
MAX_SENSORS_PER_BATCH = 256
# Longest tag value, in characters (InfluxDB 1.x has no lower limit than the 64 KB
# series key; place names and models are short).
MAX_TAG_VALUE_CHARS = 256
# The collector's own measurements: a gateway writing them could forge dead
# letters, health or alerts (collector/ingest.py, collector/service.py,
# collector/alerts/points.py). Any name with the prefix is kept for the collector.
RESERVED_MEASUREMENTS = frozenset({"alerts", "cityedge_deadletter", "cityedge_collector"})
RESERVED_PREFIX = "cityedge_"
# Field keys the collector adds to every reading (identity and time flags).
RESERVED_FIELDS = frozenset({"seq", "epoch", "time", "time_corrected", "time_unverified"})


def tag_value_ok(value: str) -> bool:
    """A tag value a gateway may send: the tag-value rule (text.tag_text_ok), not empty
    (the tag would vanish) and at most MAX_TAG_VALUE_CHARS."""
    return bool(value) and len(value) <= MAX_TAG_VALUE_CHARS and tag_text_ok(value)


def seq_ok(value: object) -> TypeGuard[int]:
    """A seq, in a reading or an ack: an int (not a bool) from 1 to MAX_SEQ."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SEQ


def reading_time_ok(value: object) -> TypeGuard[int]:
    """A reading's own time as the wire takes it: one InfluxDB can store, not before 1970."""
    return storable_time(value) and value >= 0


def reserved_measurement(name: str) -> bool:
    return name in RESERVED_MEASUREMENTS or name.startswith(RESERVED_PREFIX)


class PayloadError(ValueError):
    """The peer sent a payload we cannot accept; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RejectedReading:
    """A reading inside an otherwise good batch that failed validation."""

    seq: int
    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class Batch:
    gateway: str
    epoch: str
    batch_id: int
    sent_ns: int
    clock_synced: bool
    boot: str
    mono_ns: int
    site: Mapping[str, str]
    sensors: Mapping[str, Mapping[str, str]]
    readings: tuple[Reading, ...]
    rejected: tuple[RejectedReading, ...] = field(default=())
    version: int = FORMAT_VERSION
    # How to time the unsynchronised readings of each boot in this batch (timing.py).
    boots: Mapping[str, BootTime] = field(default_factory=dict)

    def all_seqs(self) -> SeqRanges:
        return SeqRanges.of([r.seq for r in self.readings] + [r.seq for r in self.rejected])


@dataclass(frozen=True, slots=True)
class Ack:
    gateway: str
    epoch: str
    batch_id: int
    seqs: SeqRanges
    # The collector's wall clock when it sent the ack: a gateway without NTP
    # anchors its boot on it.
    time_ns: int | None = None


def encode_batch(batch: Batch) -> bytes:
    """The batch's JSON. Each reading's fields go in as their stored text (reading.py
    ``dump_fields``): the envelope is dumped once and the readings are spliced in."""
    doc = {
        "v": batch.version,
        "gateway": batch.gateway,
        "epoch": batch.epoch,
        "batch": batch.batch_id,
        "sent_ns": batch.sent_ns,
        "clock": {"synced": batch.clock_synced, "boot": batch.boot, "mono_ns": batch.mono_ns,
                  "boots": {b: bt.to_json() for b, bt in batch.boots.items()}},
        "site": dict(batch.site),
        "sensors": {k: dict(v) for k, v in batch.sensors.items()},
    }
    head = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    readings = ",".join(map(reading_json, batch.readings))
    return f'{head[:-1]},"readings":[{readings}]}}'.encode()


def reading_json(r: Reading) -> str:
    """One reading as a batch carries it; its fields are their stored text, as they are."""
    return _READING % (r.seq, _text(r.sensor), _text(r.measurement), r.time_ns, _text(r.boot),
                       r.mono_ns, _BOOL[r.synced], dump_fields(r.fields))


# One reading of a batch, with the keys in the order json.dumps gave them.
_READING = '{"seq":%d,"sensor":%s,"m":%s,"t":%d,"boot":%s,"mono":%d,"s":%s,"f":%s}'
_BOOL = {True: "true", False: "false"}
# json's own string encoder (ensure_ascii=False), as json.dumps uses it.
_text = json.encoder.encode_basestring


def encode_ack(ack: Ack, key: bytes | None = None) -> bytes:
    """The ack's JSON; sealed (``mac``) when the gateway's seal ``key`` is given."""
    doc: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "gateway": ack.gateway,
        "epoch": ack.epoch,
        "batch": ack.batch_id,
        "seqs": ack.seqs.as_pairs(),
    }
    if ack.time_ns is not None:
        doc["time_ns"] = ack.time_ns
    if key is not None:
        doc = seal(doc, key, "ack")
    return json.dumps(doc, separators=(",", ":")).encode()


def _load(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"{len(data)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and the int-digits limit; deep
        # nesting raises RecursionError. All are the peer's bad bytes.
        raise PayloadError("bad_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise PayloadError("bad_json", f"expected an object, got {type(doc).__name__}")
    version = doc.get("v")
    if not _int(version) or version not in SUPPORTED_VERSIONS:
        raise PayloadError(
            "unsupported_version",
            f"v={brief(version)}; this collector accepts {sorted(SUPPORTED_VERSIONS)}",
        )
    return doc


def _req(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise PayloadError("bad_field", f"{where}{key}: expected {names}, got {brief(value)}")
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    if isinstance(value, dict) and len(value) > MAX_TAGS_PER_SENSOR:
        raise PayloadError("too_many_tags",
                           f"{where}: {len(value)} tags > {MAX_TAGS_PER_SENSOR}")
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and NAME_RE.fullmatch(k) and isinstance(v, str) and tag_value_ok(v)
        for k, v in value.items()
    ):
        raise PayloadError(
            "bad_field",
            f"{where}: expected a map of name -> non-empty printable string (no trailing"
            f" backslash, at most {MAX_TAG_VALUE_CHARS} characters)",
        )
    return value


def _int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_reading(raw: Any, sensors: Mapping[str, Any]) -> Reading:
    """Validate one reading; raises PayloadError naming the problem."""
    if not isinstance(raw, dict):
        raise PayloadError("bad_reading", "expected an object")
    sensor, measurement, fields = raw.get("sensor"), raw.get("m"), raw.get("f")
    if not isinstance(sensor, str) or sensor not in sensors:
        raise PayloadError("unknown_sensor",
                           f"sensor {brief(sensor)} is not in the batch's sensors")
    if not isinstance(measurement, str) or not _name_ok(measurement):
        raise PayloadError("bad_measurement", f"measurement {brief(measurement)}")
    if reserved_measurement(measurement):
        raise PayloadError("reserved_measurement",
                           f"{measurement!r} is the collector's own measurement")
    _check_times(raw)
    if not isinstance(fields, dict) or not fields:
        raise PayloadError("no_fields", "f: expected a non-empty object")
    if len(fields) > MAX_FIELDS_PER_READING:
        raise PayloadError("too_many_fields",
                           f"{len(fields)} fields > {MAX_FIELDS_PER_READING}")
    for name, value in fields.items():
        if not _name_ok(name) or name in RESERVED_FIELDS:
            raise PayloadError("bad_field_name", f"field {brief(name)}")
        kind = type(value)  # the common cases first; _check_value decides the rest
        if not ((kind is int and -MAX_INT64 - 1 <= value <= MAX_INT64)
                or (kind is float and math.isfinite(value))):
            _check_value(name, value)
    return Reading(
        seq=raw["seq"],
        sensor=sensor,
        measurement=measurement,
        time_ns=raw["t"],
        boot=raw["boot"],
        mono_ns=raw["mono"],
        fields=fields,
        synced=raw.get("s", True),
    )


# Names that matched NAME_RE, so each is matched once: a fleet's measurements and field
# keys are a few hundred; past this many the set starts over.
MAX_CACHED_NAMES = 4096
_good_names: set[str] = set()


def _name_ok(name: str) -> bool:
    if name in _good_names:
        return True
    if not NAME_RE.fullmatch(name):
        return False
    if len(_good_names) >= MAX_CACHED_NAMES:
        _good_names.clear()
    _good_names.add(name)
    return True


def _check_times(raw: dict[str, Any]) -> None:
    t, mono = raw.get("t"), raw.get("mono")
    if not (type(t) is int and 0 <= t <= MAX_TIME_NS):  # reading_time_ok, the int at once
        raise PayloadError("bad_time", f"t={brief(t)}: expected an int from 0 to {MAX_TIME_NS}")
    if not (_int(mono) and 0 <= mono <= MAX_INT64):
        raise PayloadError("bad_time",
                           f"mono={brief(mono)}: expected an int from 0 to {MAX_INT64}")
    if not isinstance(raw.get("boot"), str):
        raise PayloadError("bad_time", "boot: expected a string")
    if not isinstance(raw.get("s", True), bool):
        raise PayloadError("bad_time", "s: expected true or false")


def _check_value(name: str, value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -MAX_INT64 - 1 <= value <= MAX_INT64:
            raise PayloadError("bad_value", f"{name}={brief(value)} does not fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError("bad_value", f"{name}={value!r} is not finite")
    elif isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise PayloadError("string_too_long", f"{name}: {len(value)} characters >"
                               f" {MAX_STRING_CHARS}")
        if not utf8_ok(value):
            raise PayloadError("bad_value", f"{name}={brief(value)} is not valid UTF-8")
    else:
        raise PayloadError("bad_value",
                           f"{name}={brief(value)}: expected a number, bool or string")


def decode_batch(data: bytes, topic_gateway: str | None = None) -> Batch:
    """Parse and validate a batch.

    A broken envelope raises PayloadError. A broken reading inside a good
    envelope does not: it comes back in ``Batch.rejected`` with its seq, so the
    collector can dead-letter and ack it instead of losing the whole batch.
    """
    doc = _load(data)
    gateway = _req(doc, "gateway", str, "")
    if not ID_RE.fullmatch(gateway):
        raise PayloadError("bad_field", f"gateway {brief(gateway)}: expected {ID_RE.pattern}")
    if topic_gateway is not None and gateway != topic_gateway:
        raise PayloadError(
            "gateway_mismatch", f"payload says {gateway!r}, topic says {brief(topic_gateway)}"
        )
    epoch = _req(doc, "epoch", str, "")
    if not EPOCH_RE.fullmatch(epoch):
        raise PayloadError("bad_field",
                           f"epoch {brief(epoch)}: expected 8-64 lowercase hex digits")
    clock = _req(doc, "clock", dict, "")
    sensors = _req(doc, "sensors", dict, "")
    if len(sensors) > MAX_SENSORS_PER_BATCH:
        raise PayloadError("too_many_sensors",
                           f"{len(sensors)} sensors > {MAX_SENSORS_PER_BATCH}")
    for sensor_id, tags in sensors.items():
        if not ID_RE.fullmatch(sensor_id):
            raise PayloadError("bad_field", f"sensors: id {brief(sensor_id)}")
        _str_map(tags, f"sensors.{sensor_id}")
    items = _req(doc, "readings", list, "")
    # An empty batch is a time probe: a gateway without NTP asks for the
    # collector's clock, which comes back on the ack (timing.py).
    if len(items) > MAX_READINGS_PER_BATCH:
        raise PayloadError("too_large", f"{len(items)} readings > {MAX_READINGS_PER_BATCH}")

    readings: list[Reading] = []
    rejected: list[RejectedReading] = []
    seen: set[int] = set()
    for raw in items:
        seq = raw.get("seq") if isinstance(raw, dict) else None
        if not seq_ok(seq):
            # Without a seq the reading has no identity to ack or dead-letter.
            raise PayloadError("bad_seq", f"reading without a valid seq: seq={brief(seq)}")
        if seq in seen:
            raise PayloadError("duplicate_seq", f"seq {seq} appears twice in one batch")
        seen.add(seq)
        try:
            readings.append(_check_reading(raw, sensors))
        except PayloadError as exc:
            rejected.append(RejectedReading(seq=seq, reason=f"{exc.reason}: {exc.detail}",
                                     raw=raw_text(raw)))

    return Batch(
        gateway=gateway,
        epoch=epoch,
        batch_id=_req(doc, "batch", int, ""),
        sent_ns=_req(doc, "sent_ns", int, ""),
        clock_synced=_req(clock, "synced", bool, "clock."),
        boot=_req(clock, "boot", str, "clock."),
        mono_ns=_req(clock, "mono_ns", int, "clock."),
        site=_str_map(doc.get("site", {}), "site"),
        sensors=sensors,
        readings=tuple(readings),
        rejected=tuple(rejected),
        version=doc["v"],
        boots=_boots(clock.get("boots", {})),
    )


def _boots(value: Any) -> dict[str, BootTime]:
    if not isinstance(value, dict):
        raise PayloadError("bad_field", "clock.boots: expected an object")
    out = {}
    for boot, doc in value.items():
        if not isinstance(doc, dict) or not all(
            _int(doc.get(k, 0)) for k in ("unverified_before", "anchor_mono", "anchor_wall")
        ) or ("anchor_mono" in doc) != ("anchor_wall" in doc) or not isinstance(
                doc.get("anchor_source", ""), str):
            raise PayloadError("bad_field",
                               f"clock.boots.{brief(boot)}: expected integer anchor fields")
        out[str(boot)] = BootTime.from_json(doc)
    return out


def decode_ack(data: bytes, key: bytes | None = None) -> Ack:
    """Parse and validate an ack; with a seal ``key``, only a sealed one (see the module doc)."""
    doc = _load(data)
    if key is not None:
        if not is_sealed(doc):
            raise PayloadError("unsealed", "this gateway takes sealed acks only")
        if not verify(doc, key, "ack"):
            raise PayloadError("bad_seal", "the ack's mac does not match this gateway's key")
    pairs = _req(doc, "seqs", list, "")
    if len(pairs) > MAX_ACK_RANGES:
        raise PayloadError("too_large", f"{len(pairs)} seq ranges > {MAX_ACK_RANGES}")
    if not all(isinstance(p, list) and len(p) == 2 and all(_int(x) for x in p) for p in pairs):
        raise PayloadError("bad_field", "seqs: expected a list of [lo, hi] integer pairs")
    if not all(seq_ok(x) for p in pairs for x in p):
        raise PayloadError("bad_field", f"seqs: expected seqs from 1 to {MAX_SEQ}")
    try:
        seqs = SeqRanges.from_pairs(pairs)
    except (TypeError, ValueError) as exc:
        raise PayloadError("bad_field", f"seqs: {exc}") from None
    time_ns = doc.get("time_ns")
    if time_ns is not None and not _int(time_ns):
        raise PayloadError("bad_field", "time_ns: expected an integer")
    return Ack(
        gateway=_req(doc, "gateway", str, ""),
        epoch=_req(doc, "epoch", str, ""),
        batch_id=_req(doc, "batch", int, ""),
        seqs=seqs,
        time_ns=time_ns,
    )
