"""InfluxDB line protocol in, sans-IO: a write request's body in, a cityedge batch out.

What Telegraf's influxdb/influxdb_v2 outputs and the Influx client libraries
send (the InfluxDB line protocol reference)::

    weather,location=us-midwest,sensor=t1 temperature=82,ok=true,n=3i 1465839830100400200

measurement, tags (``,k=v``), a space, fields (``k=v`` comma-separated: floats,
``i`` integers, ``u`` unsigned, ``"strings"``, t/true/f/false), an optional
timestamp in the request's precision. Measurement names escape comma and
space; tag keys, tag values and field keys escape comma, equals and space;
strings escape double quote and backslash. Lines starting with ``#`` and
blank lines are skipped.

Each line becomes one reading of a cityedge batch (cityedge/uplink/payload.py),
so the collector's own ingest validates it: the line's tags become the tags of
a sensor (its ``sensor`` tag names it when it has one; otherwise the id is
``t`` + a hash of the tag set: a function of the line's own tags, whatever
else the body holds), ``gateway`` and the site tags are the collector's (from
the registry), never the client's. A line without a timestamp gets ``now_ns``.
Identity: epoch = a hash of the writer's id, seq = the line's second and a
hash of its measurement, tags and time (``seq_of``), so a line resent in any
body, re-batched or not, is the identical point with the identical identity,
as far as it carries a timestamp: a line without one gets the arrival time,
so its resend is a second point (as InfluxDB itself does it). A body becomes
as many batches as the batch limits need (sensors, bytes), at most MAX_PARTS.
A line that cannot be parsed or carried is returned in ``rejected`` with its
number and reason (the caller dead-letters it and answers 400 naming the
first).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cityedge.uplink.payload import (
    ID_RE,
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_BATCH,
    MAX_SENSORS_PER_BATCH,
    MAX_TAGS_PER_SENSOR,
    NAME_RE,
    tag_value_ok,
)
from cityedge.uplink.timing import MAX_INT64

# Timestamp units by the request's precision argument (1.x: n, u, ms, s, m, h;
# 2.x: ns, us, ms, s).
PRECISION_NS: Mapping[str, int] = {"n": 1, "ns": 1, "u": 1_000, "us": 1_000, "ms": 1_000_000,
                                   "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
STAMP_RE = re.compile(r"-?[0-9]{1,30}")
# Longest line kept in a dead letter or an error message, in characters.
MAX_QUOTE_CHARS = 200
FieldValue = float | int | bool | str
# A batch's readings and sensors stay this far under MAX_PAYLOAD_BYTES: the envelope
# (gateway, epoch, clock, brackets) is the rest.
BATCH_BUDGET = MAX_PAYLOAD_BYTES - 1024
# Batches one request may become (5,000 lines of 5,000 tag sets need 20); a body
# needing more (one sensor id with many tag sets) is refused as too large (413), and
# Telegraf splits it.
MAX_PARTS = 32
# A seq: the line's second (clamped to 32 bits) above 30 bits of a hash, under 2**62.
SEQ_LOW_BITS = 30
SEQ_LOW_MASK = (1 << SEQ_LOW_BITS) - 1
SEQ_MAX_SECOND = (1 << 32) - 1


class LineError(ValueError):
    """One line is not line protocol (or not one the collector can carry)."""


@dataclass(frozen=True, slots=True)
class Line:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time: int | None


@dataclass(frozen=True, slots=True)
class BadLine:
    number: int  # 1-based, in the body
    reason: str  # a short code: bad_line, bad_tag, bad_timestamp
    detail: str
    text: str  # the line, cut to MAX_QUOTE_CHARS


def _until(s: str, i: int, stops: str, escapes: str) -> tuple[str, int]:
    """Text from i up to an unescaped character of ``stops``; a backslash before one of
    ``escapes`` is the character itself, before anything else it is kept."""
    out: list[str] = []
    n = len(s)
    while i < n and s[i] not in stops:
        if s[i] == "\\" and i + 1 < n and s[i + 1] in escapes:
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out), i


def _string(s: str, i: int) -> tuple[str, int]:
    """A double-quoted field value starting at s[i] == '"' (str.find between escapes)."""
    out: list[str] = []
    i += 1
    while True:
        quote = s.find('"', i)
        if quote < 0:
            raise LineError("unterminated string field value")
        slash = s.find("\\", i, quote)
        if slash < 0:
            out.append(s[i:quote])
            return "".join(out), quote + 1
        out.append(s[i:slash])
        if slash + 1 < len(s) and s[slash + 1] in '"\\':
            out.append(s[slash + 1])
            i = slash + 2
        else:
            out.append("\\")
            i = slash + 1


_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})


def _value(raw: str, key: str) -> FieldValue:
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    try:
        if "_" in raw:  # Python's literals allow 1_000; line protocol does not
            raise ValueError(raw)
        number: float = int(raw[:-1]) if raw.endswith(("i", "u")) else float(raw)
    except ValueError:
        raise LineError(f"field {key!r}: invalid value {raw[:40]!r}") from None
    if isinstance(number, int):
        if not (0 if raw[-1] == "u" else -MAX_INT64 - 1) <= number <= MAX_INT64:
            raise LineError(f"field {key!r}: {raw[:40]} does not fit in a signed 64-bit"
                            " integer")
        return number
    if not math.isfinite(number) or raw.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        raise LineError(f"field {key!r}: {raw[:40]!r} is not a finite number")
    return number


def _tags(s: str, i: int) -> tuple[dict[str, str], int]:
    tags: dict[str, str] = {}
    while i < len(s) and s[i] == ",":
        key, i = _until(s, i + 1, "=, ", ",= ")
        if i >= len(s) or s[i] != "=" or not key:
            raise LineError(f"tag {key[:40]!r}: missing '='")
        value, i = _until(s, i + 1, ", ", ",= ")
        if not value:
            raise LineError(f"tag {key!r}: missing value")
        tags[key] = value
    return tags, i


def _fields(s: str, i: int) -> tuple[dict[str, FieldValue], int]:
    if i >= len(s) or s[i] != " ":
        raise LineError("missing fields")
    fields: dict[str, FieldValue] = {}
    i += 1
    while True:
        key, i = _until(s, i, "=, ", ",= ")
        if i >= len(s) or s[i] != "=" or not key:
            raise LineError(f"field {key[:40]!r}: missing '='")
        if s.startswith('"', i + 1):
            fields[key], i = _string(s, i + 1)
            if i < len(s) and s[i] not in ", ":
                raise LineError(f"field {key!r}: {s[i:i + 20]!r} after the closing quote")
        else:
            raw, i = _until(s, i + 1, ", ", "")
            fields[key] = _value(raw, key)
        if i < len(s) and s[i] == ",":
            i += 1
            continue
        return fields, i


def parse_line(s: str, precision_ns: int) -> Line:
    """One line; raises LineError naming what is wrong."""
    measurement, i = _until(s, 0, ", ", ", ")
    if not measurement:
        raise LineError("missing measurement")
    tags, i = _tags(s, i)
    fields, i = _fields(s, i)
    if i >= len(s):
        return Line(measurement, tags, fields, None)
    return Line(measurement, tags, fields, _stamp(s[i + 1:].strip(" "), precision_ns))


def _stamp(stamp: str, precision_ns: int) -> int:
    """A timestamp: an optional minus and ASCII digits (not Python's 1_000 or +5)."""
    if not STAMP_RE.fullmatch(stamp):
        raise LineError(f"invalid timestamp {stamp[:40]!r}")
    t = int(stamp) * precision_ns
    if not 0 <= t <= MAX_INT64:
        raise LineError(f"timestamp {stamp} is outside what the database can store")
    return t


def _check_tags(tags: Mapping[str, str]) -> None:
    if len(tags) > MAX_TAGS_PER_SENSOR:
        raise LineError(f"{len(tags)} tags > {MAX_TAGS_PER_SENSOR}")
    for key, value in tags.items():
        if not NAME_RE.fullmatch(key):
            raise LineError(f"tag key {key[:40]!r}: expected {NAME_RE.pattern}")
        if not tag_value_ok(value):
            raise LineError(f"tag {key}={value[:40]!r}: expected printable text, at most 256"
                            " characters, without a trailing backslash")


def parse_fast(s: str, precision_ns: int) -> Line:
    """``parse_line`` for the common line (no backslash, no quote): str.split instead of a
    character loop; anything unusual goes to the careful scanner, which names the error."""
    head, _, rest = s.partition(" ")
    fields_s, _, stamp = rest.partition(" ")
    if "\\" in s or '"' in s or not fields_s or " " in stamp:
        return parse_line(s, precision_ns)
    measurement, *pairs = head.split(",")
    tags: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not key or not eq or not value:
            return parse_line(s, precision_ns)
        tags[key] = value
    fields: dict[str, FieldValue] = {}
    for pair in fields_s.split(","):
        key, eq, raw = pair.partition("=")
        if not key or not eq:
            return parse_line(s, precision_ns)
        fields[key] = _value(raw, key)
    if not measurement:
        return parse_line(s, precision_ns)
    return Line(measurement, tags, fields, _stamp(stamp, precision_ns) if stamp else None)


def sensor_of(tags: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The sensor a line's own tags make, and its tags: its ``sensor`` tag when that is an
    id, else ``t`` + a hash of the tag set. Never depends on other lines."""
    own = {k: v for k, v in tags.items() if k not in ("sensor", "gateway")}
    named = tags.get("sensor")
    if named is not None and ID_RE.fullmatch(named):
        return named, own
    digest = hashlib.sha256(json.dumps(sorted(tags.items())).encode()).hexdigest()[:12]
    return f"t{digest}", own


def epoch_of(gateway: str) -> str:
    """A writer's epoch: stable, 16 hex digits derived from its id."""
    return hashlib.sha256(f"lineproto:{gateway}".encode()).hexdigest()[:16]


def seq_of(measurement: str, tags: Mapping[str, str], time_ns: int) -> int:
    """A line's seq, from its own series and time (what InfluxDB keys a point by), so a
    line has the same identity in whatever body it is resent: the second in the high
    bits (seqs grow with time, as the alert engine's bounded memory of them expects),
    30 bits of a hash of series and time below."""
    key = "\n".join([measurement, *(f"{k}={v}" for k, v in sorted(tags.items())),
                      str(time_ns)])
    low = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest()) & SEQ_LOW_MASK
    return max(1, min(time_ns // 10**9, SEQ_MAX_SECOND) << SEQ_LOW_BITS | low)


@dataclass(frozen=True, slots=True)
class Part:
    """One cityedge batch (v1 JSON) of a body's lines, within the batch limits."""

    payload: bytes
    lines: tuple[tuple[int, int, str], ...]  # each line's number, seq, text (cut)


@dataclass(frozen=True, slots=True)
class Lines:
    epoch: str
    parts: tuple[Part, ...]  # at least one (an empty batch when no line is a reading)
    rejected: tuple[BadLine, ...]
    lines: int  # lines that were readings or rejected (not comments or blank)

    @property
    def payload(self) -> bytes:
        """The batch of a body that makes one."""
        assert len(self.parts) == 1, f"{len(self.parts)} batches"
        return self.parts[0].payload


class _Open:
    """A batch being filled: its sensors, readings and size in bytes."""

    __slots__ = ("lines", "readings", "sensors", "seqs", "size")

    def __init__(self) -> None:
        self.sensors: dict[str, dict[str, str]] = {}
        self.readings: list[str] = []
        self.lines: list[tuple[int, int, str]] = []
        self.seqs: set[int] = set()
        self.size = 0

    def cost(self, sid: str, own: dict[str, str], seq: int, reading: int) -> int | None:
        """What the reading adds in bytes, or None when it cannot go in this batch."""
        known = self.sensors.get(sid)
        if seq in self.seqs or (known is not None and known != own):
            return None
        cost = reading + 1
        if known is None:
            if len(self.sensors) >= MAX_SENSORS_PER_BATCH:
                return None
            cost += len(json.dumps({sid: own})) + 1
        return cost if self.size + cost <= BATCH_BUDGET else None

    def payload(self, gateway: str, epoch: str, now_ns: int) -> bytes:
        head = json.dumps({"v": 1, "gateway": gateway, "epoch": epoch, "batch": 0,
                           "sent_ns": now_ns, "clock": {"synced": True, "boot": "", "mono_ns": 0},
                           "sensors": self.sensors}, separators=(",", ":"))
        return f'{head[:-1]},"readings":[{",".join(self.readings)}]}}'.encode()


class _Batcher:
    """Places each reading in the first batch it fits; the same point twice is merged."""

    def __init__(self) -> None:
        self.parts: list[_Open] = [_Open()]
        self.sensor_of: dict[tuple[tuple[str, str], ...], tuple[str, dict[str, str]]] = {}
        self.first: dict[int, tuple[_Open, int, tuple[str, dict[str, str], int],
                                    dict[str, FieldValue]]] = {}

    def add(self, number: int, raw: str, line: Line, t: int) -> str | None:
        """None, or why the line cannot be carried (a reason for a BadLine)."""
        key = tuple(line.tags.items())
        known = self.sensor_of.get(key)
        if known is None:
            known = self.sensor_of[key] = sensor_of(line.tags)
        sid, own = known
        seq = seq_of(line.measurement, line.tags, t)
        point = (line.measurement, line.tags, t)
        fields = line.fields
        same = self.first.get(seq)
        if same is not None and same[2] == point:
            # The same point twice (measurement, tags, time): InfluxDB merges the fields.
            part, index, _, fields = same
            fields.update(line.fields)
            reading = _reading(seq, sid, line.measurement, t, fields)
            part.size += len(reading) - len(part.readings[index])
            part.readings[index] = reading
            part.lines.append((number, seq, raw[:MAX_QUOTE_CHARS]))
            return None
        reading = _reading(seq, sid, line.measurement, t, fields)
        for part in self.parts:
            cost = part.cost(sid, own, seq, len(reading))
            if cost is not None:
                break
        else:
            part = _Open()
            cost = part.cost(sid, own, seq, len(reading))
            if cost is None:
                return f"{len(reading)} bytes as a reading"
            if len(self.parts) >= MAX_PARTS:
                raise LineError(f"more than {MAX_PARTS} batches for one request: split it")
            self.parts.append(part)
        self.first.setdefault(seq, (part, len(part.readings), point, dict(fields)))
        part.size += cost
        part.sensors.setdefault(sid, own)
        part.seqs.add(seq)
        part.readings.append(reading)
        part.lines.append((number, seq, raw[:MAX_QUOTE_CHARS]))
        return None


def _reading(seq: int, sid: str, measurement: str, t: int,
             fields: Mapping[str, FieldValue]) -> str:
    return json.dumps({"seq": seq, "sensor": sid, "m": measurement, "t": t, "boot": "",
                       "mono": 0, "s": True, "f": fields}, separators=(",", ":"))


def to_batch(body: bytes, gateway: str, precision: str, now_ns: int) -> Lines:
    """The body as cityedge batches, as few as the batch limits allow (sensors, bytes;
    a sensor id with two tag sets or a seq twice go to different batches); lines it
    cannot carry are in ``rejected``.

    Raises LineError if the body is not UTF-8, has more lines than a batch may, or
    would need more than MAX_PARTS batches.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(f"body is not UTF-8 (byte {exc.start})") from None
    unit = PRECISION_NS[precision]
    epoch = epoch_of(gateway)
    batcher = _Batcher()
    rejected: list[BadLine] = []
    counted = 0
    for number, whole in enumerate(text.split("\n"), 1):
        raw = whole.rstrip("\r")
        s = raw.lstrip(" \t")
        if not s or s.startswith("#") or not s.strip(" \t"):
            continue
        counted += 1
        if counted > MAX_READINGS_PER_BATCH:
            raise LineError(f"more than {MAX_READINGS_PER_BATCH} lines in one request")
        try:
            line = parse_fast(s, unit)
            _check_tags(line.tags)
        except LineError as exc:
            rejected.append(BadLine(number, "bad_line", str(exc), raw[:MAX_QUOTE_CHARS]))
            continue
        why = batcher.add(number, raw, line, now_ns if line.time is None else line.time)
        if why is not None:
            rejected.append(BadLine(number, "too_large", why, raw[:MAX_QUOTE_CHARS]))
    parts = batcher.parts
    done = tuple(Part(p.payload(gateway, epoch, now_ns), tuple(p.lines))
                 for p in parts if p.readings or p is parts[0])
    return Lines(epoch, done, tuple(rejected), counted)
