"""Ingest, sans-IO: an uplink payload in; the points to write and the ack to send after, out.

Nothing here writes, sends or reads a clock. The caller writes ``points`` and
``dead_letters`` to InfluxDB and only after that sends ``ack``: DESIGN
invariant 3. The points are a pure function of the payload's readings, so a
resent reading makes the identical point (invariant 4).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cityedge.uplink import (
    OUT_OF_RANGE_FIELD,
    QUALITY_TAG,
    Ack,
    Batch,
    PayloadError,
    Reading,
    SeqRanges,
    decode_batch,
)
from cityedge.uplink.payload import ID_RE, RejectedReading, reading_json, reading_time_ok
from cityedge.uplink.text import brief, encodable
from cityedge.uplink.timing import MAX_TIME_NS, reading_time, storable_time
from collector.deadletter import dead_letter
from collector.lineprotocol import Identity, Point, Source

SITE_TAGS = {"district": "district", "site": "site", "kind": "site_kind"}


@dataclass(frozen=True, slots=True)
class Accepted:
    gateway: str
    points: tuple[Point, ...]
    dead_letters: tuple[Point, ...]
    ack: Ack
    # The points carry the registry's site tags, which the payload's disagreed with.
    site_overridden: bool = False

    @property
    def readings(self) -> int:
        return len(self.ack.seqs)


@dataclass(frozen=True, slots=True)
class Refused:
    """The payload as a whole cannot be used; nothing in it can be acked."""

    gateway: str | None
    reason: str
    detail: str


def reading_tags(batch: Batch, sensor: str,
                 site: Mapping[str, str] | None = None) -> dict[str, str]:
    """A reading's tags: the payload's site, its sensor's tags, then ``site`` (the
    registry's, by tag name, where there is one: it is authoritative), its gateway
    and sensor."""
    tags = {tag: batch.site.get(key, "") for key, tag in SITE_TAGS.items()}
    tags.update(batch.sensors.get(sensor, {}))
    if site is not None:
        tags.update(site)
    tags["gateway"] = batch.gateway
    tags["sensor"] = sensor
    return tags


def site_overridden(batch: Batch, sensors: Iterable[str], site: Mapping[str, str]) -> bool:
    """The payload's own site tags for a reading of one of ``sensors`` disagree with ``site``."""
    return any(reading_tags(batch, sensor).get(tag) != value
               for sensor in sensors for tag, value in site.items())


class BadTime(ValueError):
    """A clock correction put the reading outside the times InfluxDB can store."""


def reading_point(batch: Batch, reading: Reading,
                  site: Mapping[str, str] | None = None, source: Source = "uplink") -> Point:
    return _Points(batch, site, source).point(reading)


class _Points:
    """A batch's readings as points. Readings of one sensor share one tags mapping (two,
    with the out-of-range one) and the batch's boots are read once, so the line protocol
    encoder builds each series' prefix once per batch (lineprotocol.encode). Nothing
    changes a point's tags after this: they are shared."""

    __slots__ = ("batch", "boots", "site", "source", "tags")

    def __init__(self, batch: Batch, site: Mapping[str, str] | None,
                 source: Source = "uplink") -> None:
        self.batch = batch
        self.source = source
        self.site = site
        self.boots = dict(batch.boots)
        self.tags: dict[tuple[str, bool], dict[str, str]] = {}

    def _tags(self, sensor: str, out_of_range: bool) -> dict[str, str]:
        tags = self.tags.get((sensor, out_of_range))
        if tags is None:
            tags = reading_tags(self.batch, sensor, self.site)
            if out_of_range:  # outside the datasheet range: kept
                tags[QUALITY_TAG] = OUT_OF_RANGE_FIELD
            self.tags[(sensor, out_of_range)] = tags
        return tags

    def point(self, reading: Reading) -> Point:
        time_ns, how = reading_time(reading.time_ns, reading.boot, reading.mono_ns,
                                    reading.synced, self.boots)
        if not storable_time(time_ns):
            raise BadTime(f"time {time_ns} ({how}) is outside what InfluxDB can store")
        fields = reading.fields
        tags = self._tags(reading.sensor, isinstance(fields.get(OUT_OF_RANGE_FIELD), str))
        if how != "own":
            # Taken under an unsynchronised clock: corrected from the boot's anchor,
            # or kept as stamped and flagged (docs/delivery.md, "Time").
            fields = {**fields, f"time_{how}": True}
        # Identity beside the fields, written as fields, never tags (lineprotocol.Identity).
        return Point(reading.measurement, tags, fields, time_ns,
                     Identity(reading.seq, self.batch.epoch), self.source)


def dead_letter_point(batch: Batch, rejected: RejectedReading) -> Point:
    """The bad reading kept (up to MAX_RAW_CHARS), on a series of its own sensor and
    measurement.

    Its time is the reading's own when the wire would have taken it, so a resend
    overwrites the same dead letter instead of adding another.
    """
    try:
        raw = json.loads(rejected.raw)
    except (ValueError, RecursionError):
        raw = {}
    raw = raw if isinstance(raw, dict) else {}
    t = raw.get("t")
    # Else the seq: as stable across resends, and kept inside InfluxDB's range (the
    # largest int64 is one past its last timestamp).
    time_ns = t if reading_time_ok(t) else min(rejected.seq, MAX_TIME_NS)
    code, _, detail = rejected.reason.partition(": ")
    sensor, measurement = raw.get("sensor"), raw.get("m")
    return dead_letter(gateway=batch.gateway, reason=code,
                       sensor=sensor if isinstance(sensor, str) else None,
                       measurement=measurement if isinstance(measurement, str) else None,
                       seq=rejected.seq, epoch=batch.epoch, detail=detail, raw=rejected.raw,
                       time_ns=time_ns)


def ingest(payload: bytes, topic_gateway: str | None,
           site: Mapping[str, str] | None = None, source: Source = "uplink") -> Accepted | Refused:
    """Never raises: a payload is accepted (every reading a point or a dead letter) or
    refused as a whole with a reason. ``site``, the registry's site tags by tag name
    (SITE_TAGS), goes on every point instead of the payload's; ``site_overridden``
    says whether the payload disagreed."""
    if topic_gateway is not None and not ID_RE.fullmatch(topic_gateway):
        # Before parsing: a topic no gateway can have costs nothing to refuse.
        return Refused(None, "bad_gateway_id", f"topic names {brief(topic_gateway)}")
    try:
        batch = decode_batch(payload, topic_gateway)
    except PayloadError as exc:
        return Refused(topic_gateway, exc.reason, exc.detail)
    points: list[Point] = []
    rejected = list(batch.rejected)
    make = _Points(batch, site, source)
    for r in batch.readings:
        try:
            points.append(make.point(r))
        except BadTime as exc:
            rejected.append(RejectedReading(r.seq, f"bad_time: {exc}", encodable(reading_json(r))))
    seqs: SeqRanges = batch.all_seqs()
    return Accepted(
        gateway=batch.gateway,
        points=tuple(points),
        dead_letters=tuple(dead_letter_point(batch, r) for r in rejected),
        ack=Ack(batch.gateway, batch.epoch, batch.batch_id, seqs),
        site_overridden=site is not None and site_overridden(
            batch, {str(p.tags["sensor"]) for p in points}, site),
    )

