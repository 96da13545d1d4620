"""InfluxDB line protocol, sans-IO: points in, bytes out.

Shared by the 1.x and 2.x writers (the format is the same). Escaping follows
the InfluxDB reference: measurement escapes comma and space; tag keys, tag
values and field keys escape comma, equals and space; string field values
escape double quote and backslash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from cityedge.uplink import FieldValue
from cityedge.uplink.text import (
    escapes_separator,
    safe_tag,  # noqa: F401 (callers take it from here)
)

# Which way a reading came in (Point.source; alert rules can filter on it): a cityedge
# uplink batch from an edge agent (MQTT or HTTP), an InfluxDB line-protocol write, or
# a sensor.community (airrohr) push. Not written to InfluxDB.
Source = Literal["uplink", "line_protocol", "airrohr"]
SOURCES: tuple[Source, ...] = ("uplink", "line_protocol", "airrohr")
# The identity fields a reading's point carries (Identity), written after its own.
IDENTITY_FIELDS = ("seq", "epoch")


@dataclass(frozen=True, slots=True)
class Identity:
    """Which reading a point is: the gateway outbox's ``epoch`` and the reading's ``seq``.

    Written as the fields ``seq`` and ``epoch``, never tags (DESIGN invariant 4):
    a tag would make every reading its own series and defeat the overwrite that
    makes resends safe.
    """

    seq: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Point:
    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int
    # A reading's point: its identity, written after ``fields`` (format_point).
    identity: Identity | None = None
    # Which way it came in (SOURCES); for the alert engine only, never written (nor in
    # the repr a quarantined point keeps).
    source: Source = field(default="uplink", compare=False, repr=False)

    def line(self) -> str:
        return format_point(self)


_MEAS = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_STR = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n"})


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.translate(_STR) + '"'


class LineProtocolError(ValueError):
    """A point no line of line protocol can carry; ``index`` is its place in the list
    given to ``encode``. Ingest never makes one: this is the backstop."""

    def __init__(self, message: str, index: int = 0) -> None:
        super().__init__(message)
        self.index = index


def _no_trailing_backslash(what: str, text: str) -> None:
    # The part of the tag-value rule (text.tag_text_ok) that no escaping can mend; the
    # rest (printable) is ingest's to enforce, and the encoder escapes what it can.
    if escapes_separator(text):
        raise LineProtocolError(f"{what} {text[-40:]!r}: cannot end in a backslash")


def format_point(p: Point) -> str:
    """One line; tags sorted (InfluxDB's own advice for write speed), empty tag values left out."""
    return _line(p, series_prefix(p.measurement, p.tags))


def series_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """A series' measurement and tag set as a line starts with them, escaped."""
    _no_trailing_backslash("measurement", measurement)
    parts = [measurement.translate(_MEAS)]
    for key in sorted(tags):
        value = tags[key]
        _no_trailing_backslash("tag value", value)
        if value:
            _no_trailing_backslash("tag key", key)
            parts.append(f"{key.translate(_KEY)}={value.translate(_KEY)}")
    return ",".join(parts)


# Field keys as a line carries them, checked and escaped once: a fleet writes a few
# hundred distinct keys (its profiles' fields); past this many the cache starts over.
MAX_CACHED_KEYS = 4096
_field_keys: dict[str, str] = {}


def _field_key(key: str) -> str:
    escaped = _field_keys.get(key)
    if escaped is None:
        _no_trailing_backslash("field key", key)
        escaped = key.translate(_KEY)
        if len(_field_keys) >= MAX_CACHED_KEYS:
            _field_keys.clear()
        _field_keys[key] = escaped
    return escaped


def _epoch(epoch: str) -> str:
    # A batch's points share one epoch: quoted once for them all, as the keys are.
    quoted = _epochs.get(epoch)
    if quoted is None:
        if len(_epochs) >= MAX_CACHED_KEYS:
            _epochs.clear()
        quoted = _epochs[epoch] = _field(epoch)
    return quoted


_epochs: dict[str, str] = {}


def _line(p: Point, prefix: str) -> str:
    # The common types by exact type first (a bool is not an int here); anything else,
    # a subclass included, through _field, which decides as format_point always did.
    out = []
    for key, value in p.fields.items():
        kind = type(value)
        if kind is int:
            text = f"{value}i"
        elif kind is float:
            text = repr(value)
        else:
            text = _field(value)
        out.append(f"{_field_keys.get(key) or _field_key(key)}={text}")
    if p.identity is not None:
        seq, epoch = p.identity.seq, p.identity.epoch
        out.append(f"seq={seq}i,epoch={_epoch(epoch)}" if type(seq) is int
                   else f"seq={_field(seq)},epoch={_epoch(epoch)}")
    return f"{prefix} {','.join(out)} {p.time_ns}"


def identity_of(p: Point) -> Identity | None:
    """The reading a point is: beside it, or in the fields of a dead letter (which keeps
    them as its own) or of a point read back from InfluxDB or an export."""
    if p.identity is not None:
        return p.identity
    seq, epoch = p.fields.get("seq"), p.fields.get("epoch")
    if not isinstance(seq, int) or isinstance(seq, bool) or epoch is None:
        return None
    return Identity(seq, str(epoch))


def with_identity(p: Point) -> Point:
    """A point read back from InfluxDB or an export, its identity fields moved beside it."""
    identity = identity_of(p)
    if identity is None or p.identity is not None:
        return p
    own = {k: v for k, v in p.fields.items() if k not in IDENTITY_FIELDS}
    return Point(p.measurement, p.tags, own, p.time_ns, identity, p.source)


def encode(points: list[Point]) -> bytes:
    """The lines, UTF-8; LineProtocolError names the first point that cannot be encoded."""
    lines = []
    # A reading's points share their tags mapping per sensor and batch (ingest.py): its
    # series prefix is built once for them all.
    tags: Mapping[str, str] | None = None
    measurement, prefix = "", ""
    for i, p in enumerate(points):
        try:
            if p.tags is not tags or p.measurement != measurement:
                prefix = series_prefix(p.measurement, p.tags)
                tags, measurement = p.tags, p.measurement
            lines.append(_line(p, prefix))
        except LineProtocolError as exc:
            exc.index = i
            raise
    try:
        return ("\n".join(lines) + "\n").encode()
    except UnicodeEncodeError:
        for i, line in enumerate(lines):
            if problem := _unencodable(line):
                raise LineProtocolError(problem, i) from None
        raise


def _unencodable(line: str) -> str | None:
    try:
        line.encode()
    except UnicodeEncodeError as exc:
        return f"not UTF-8: {exc.reason} at {exc.start}: {line[max(0, exc.start - 20):exc.end]!r}"
    return None


def check(p: Point) -> str | None:
    """Why this point cannot be written as line protocol, or None when it can."""
    try:
        return _unencodable(format_point(p))
    except LineProtocolError as exc:
        return str(exc)


def safe_string(value: str, limit: int) -> str:
    """A string field value any line can carry: cut to ``limit`` characters (saying how
    many were left out) and lone surrogates written as their ``\\udXXX`` escape."""
    if len(value) > limit:
        value = f"{value[:limit]}...(+{len(value) - limit} chars)"
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
