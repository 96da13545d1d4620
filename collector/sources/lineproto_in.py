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
``t`` + a hash of the tag set), ``gateway`` and the site tags are the
collector's (from the registry), never the client's. A line without a
timestamp gets ``now_ns``. Identity: epoch = a hash of the body, seq = the
line's number, so a client that resends the same body writes the identical
points, as far as its lines carry timestamps: a line without one gets the
arrival time, so its resend is a second point (as InfluxDB itself does it).
A line that cannot be parsed or carried is returned in ``rejected``
with its number and reason (the caller dead-letters it and answers 400 naming
the first).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from cityedge.uplink.payload import (
    ID_RE,
    MAX_READINGS_PER_BATCH,
    MAX_TAGS_PER_SENSOR,
    NAME_RE,
    tag_value_ok,
)
from cityedge.uplink.timing import MAX_INT64

# Timestamp units by the request's precision argument (1.x: n, u, ms, s, m, h;
# 2.x: ns, us, ms, s).
PRECISION_NS: Mapping[str, int] = {"n": 1, "ns": 1, "u": 1_000, "us": 1_000, "ms": 1_000_000,
                                   "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
# Longest line kept in a dead letter or an error message, in characters.
MAX_QUOTE_CHARS = 200
FieldValue = float | int | bool | str


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


@dataclass(frozen=True, slots=True)
class Lines:
    epoch: str
    payload: bytes  # a cityedge batch (v1 JSON) for collector.ingest
    rejected: tuple[BadLine, ...]
    lines: int  # lines that were readings or rejected (not comments or blank)


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
    """A double-quoted field value starting at s[i] == '"'."""
    out: list[str] = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in '"\\':
            out.append(s[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise LineError("unterminated string field value")


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
    stamp = s[i + 1:].strip(" ")
    try:
        t = int(stamp)
    except ValueError:
        raise LineError(f"invalid timestamp {stamp[:40]!r}") from None
    t *= precision_ns
    if not 0 <= t <= MAX_INT64:
        raise LineError(f"timestamp {stamp} is outside what the database can store")
    return Line(measurement, tags, fields, t)


def _check_tags(tags: Mapping[str, str]) -> None:
    if len(tags) > MAX_TAGS_PER_SENSOR:
        raise LineError(f"{len(tags)} tags > {MAX_TAGS_PER_SENSOR}")
    for key, value in tags.items():
        if not NAME_RE.fullmatch(key):
            raise LineError(f"tag key {key[:40]!r}: expected {NAME_RE.pattern}")
        if not tag_value_ok(value):
            raise LineError(f"tag {key}={value[:40]!r}: expected printable text, at most 256"
                            " characters, without a trailing backslash")


def _sensor(tags: dict[str, str], sensors: dict[str, dict[str, str]]) -> str:
    """The sensor a line's tags make (added to ``sensors``): its ``sensor`` tag, or a hash."""
    own = {k: v for k, v in tags.items() if k not in ("sensor", "gateway")}
    named = tags.get("sensor")
    if named is not None and ID_RE.fullmatch(named) and sensors.get(named, own) == own:
        sensors[named] = own
        return named
    digest = hashlib.sha256(json.dumps(sorted(tags.items())).encode()).hexdigest()[:12]
    sid = f"t{digest}"
    sensors[sid] = own
    return sid


def to_batch(body: bytes, gateway: str, precision: str, now_ns: int) -> Lines:
    """The body as one cityedge batch; lines it cannot carry are in ``rejected``.

    Raises LineError if the body is not UTF-8 or has more lines than a batch may.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(f"body is not UTF-8 (byte {exc.start})") from None
    unit = PRECISION_NS[precision]
    epoch = hashlib.sha256(body).hexdigest()[:16]
    sensors: dict[str, dict[str, str]] = {}
    readings: list[str] = []
    rejected: list[BadLine] = []
    for number, raw in enumerate(text.split("\n"), 1):
        s = raw.rstrip("\r")
        if not s.strip(" \t") or s.lstrip(" \t").startswith("#"):
            continue
        if len(readings) + len(rejected) >= MAX_READINGS_PER_BATCH:
            raise LineError(f"more than {MAX_READINGS_PER_BATCH} lines in one request")
        try:
            line = parse_line(s.lstrip(" \t"), unit)
            _check_tags(line.tags)
        except LineError as exc:
            rejected.append(BadLine(number, "bad_line", str(exc), s[:MAX_QUOTE_CHARS]))
            continue
        sid = _sensor(line.tags, sensors)
        readings.append(json.dumps(
            {"seq": number, "sensor": sid, "m": line.measurement,
             "t": now_ns if line.time is None else line.time, "boot": "", "mono": 0,
             "s": True, "f": line.fields}, ensure_ascii=False, separators=(",", ":")))
    head = json.dumps({"v": 1, "gateway": gateway, "epoch": epoch, "batch": 0,
                       "sent_ns": now_ns, "clock": {"synced": True, "boot": "", "mono_ns": 0},
                       "sensors": sensors}, ensure_ascii=False, separators=(",", ":"))
    payload = f'{head[:-1]},"readings":[{",".join(readings)}]}}'.encode()
    return Lines(epoch, payload, tuple(rejected), len(readings) + len(rejected))
