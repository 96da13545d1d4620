"""Readings from files, for ``edge-collector rules test``: CSV or InfluxDB line protocol.

Kapacitor's replay is the model: readings go through the rules in file order,
and the clock is advanced to each reading's time before it is fed (or to its
``arrival`` column, to script a backlog that arrives after live data). A
reading whose time is behind the clock by a rule's ``late_after`` is late.

CSV: a header row; ``time`` (RFC 3339, or integer ns) and ``measurement`` are
required; district, site, site_kind, gateway, sensor and model (plus any
``--tag``) are tags; ``source`` (uplink, line_protocol, airrohr; uplink when
empty) is the way the reading came in, for rules with ``sources``; other
non-empty cells are fields (numbers, true/false).
A row with measurement ``_status`` and a field ``state`` (online/offline) is
a gateway status message. Line protocol: one point per line with a timestamp.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cityedge.uplink import FieldValue
from collector.alerts.engine import Engine
from collector.alerts.errors import UsageError
from collector.alerts.events import AlertEvent, Status
from collector.lineprotocol import SOURCES, Point, with_identity

KNOWN_TAGS = frozenset({"district", "site", "site_kind", "gateway", "sensor", "model"})
STATUS_MEASUREMENT = "_status"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PRECISION = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


class ReadingsError(UsageError):
    """A readings file line that cannot be used; the message names the line."""


Item = tuple[int, Point | Status]  # (arrival time, what arrives)


def parse_time(text: str, zone: ZoneInfo) -> int:
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    d = dt - EPOCH  # integer arithmetic: a float timestamp would blur the nanoseconds
    return (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000


def _value(text: str) -> FieldValue:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text) if text.strip().lstrip("-").isdigit() else float(text)
    except ValueError:
        return text


def read_csv(text: str, zone: ZoneInfo, extra_tags: Iterable[str] = ()) -> Iterator[Item]:
    tag_names = KNOWN_TAGS | set(extra_tags)
    rows = csv.DictReader(io.StringIO(text))
    missing = {"time", "measurement"} - set(rows.fieldnames or ())
    if missing:
        raise ReadingsError(f"line 1: missing column(s) {', '.join(sorted(missing))}")
    for row in rows:
        line = rows.line_num
        try:
            t = parse_time(row["time"], zone)
            arrival = parse_time(row["arrival"], zone) if row.get("arrival") else t
        except ValueError as exc:
            raise ReadingsError(f"line {line}: time: {exc}") from None
        tags = {k: v for k, v in row.items() if k in tag_names and v}
        fields = {k: _value(v) for k, v in row.items() if k not in tag_names
                  and k not in ("time", "measurement", "arrival", "source") and v}
        source = row.get("source") or "uplink"
        if source not in SOURCES:
            raise ReadingsError(f"line {line}: source: {source!r} is not one of"
                                f" {', '.join(SOURCES)}")
        if row["measurement"] == STATUS_MEASUREMENT:
            if fields.get("state") not in ("online", "offline") or "gateway" not in tags:
                raise ReadingsError(f"line {line}: a _status row needs gateway and "
                                    "state online or offline")
            yield arrival, Status(tags["gateway"], fields["state"] == "online", t)
            continue
        if not fields:
            raise ReadingsError(f"line {line}: no field values")
        # Exported readings carry their identity as fields: it goes beside the point.
        yield arrival, with_identity(Point(row["measurement"], tags, fields, t,
                                           source=source))


def _split(text: str, sep: str, *, quotes: bool = False) -> list[str]:
    """Split on sep outside backslash escapes (and, for fields, outside double quotes)."""
    out, cur, i, quoted = [], [], 0, False
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if quotes and c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _lp_field(text: str) -> FieldValue:
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return _unescape(text[1:-1])
    if text in ("t", "T", "true", "True", "TRUE"):
        return True
    if text in ("f", "F", "false", "False", "FALSE"):
        return False
    if text.endswith(("i", "u")):
        return int(text[:-1])
    return float(text)


def read_line_protocol(text: str, precision: str = "ns") -> Iterator[Item]:
    scale = PRECISION[precision]
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            parts = _split(line, " ", quotes=True)
            if len(parts) != 3:
                raise ValueError("expected 'measurement,tags fields timestamp'")
            head = _split(parts[0], ",")
            tags = {}
            for item in head[1:]:
                k, _, v = item.partition("=")
                tags[_unescape(k)] = _unescape(v)
            fields = {}
            for item in _split(parts[1], ",", quotes=True):
                k, eq, v = item.partition("=")
                if not eq:
                    raise ValueError(f"field {item!r} has no '='")
                fields[_unescape(k)] = _lp_field(v)
            t = int(parts[2]) * scale
        except ValueError as exc:
            raise ReadingsError(f"line {n}: {exc}") from None
        yield t, with_identity(Point(_unescape(head[0]), tags, fields, t))


def replay(engine: Engine, items: Iterable[Item], until_ns: int | None = None
           ) -> Iterator[AlertEvent]:
    """Feed items in order, ticking the clock to each arrival; then tick to until_ns."""
    for arrival, item in items:
        yield from engine.tick(arrival)
        if isinstance(item, Status):
            yield from engine.status(item)
        else:
            yield from engine.readings([item])
    if until_ns is not None:
        yield from engine.tick(until_ns)
