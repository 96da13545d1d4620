"""Ingest, sans-IO: an uplink payload in; the points to write and the ack to send after, out.

Nothing here writes, sends or reads a clock. The caller writes ``points`` and
``dead_letters`` to InfluxDB and only after that sends ``ack``: DESIGN
invariant 3. The points are a pure function of the payload's readings, so a
resent reading makes the identical point (invariant 4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cityedge.uplink import Ack, Batch, PayloadError, SeqRanges, WireReading, decode_batch
from cityedge.uplink.payload import Rejected
from cityedge.uplink.timing import reading_time
from collector.lineprotocol import Point

DEADLETTER_MEASUREMENT = "cityedge_deadletter"
SITE_TAGS = {"district": "district", "site": "site", "kind": "site_kind"}


@dataclass(frozen=True, slots=True)
class Accepted:
    gateway: str
    points: tuple[Point, ...]
    dead_letters: tuple[Point, ...]
    ack: Ack

    @property
    def readings(self) -> int:
        return len(self.ack.seqs)


@dataclass(frozen=True, slots=True)
class Refused:
    """The payload as a whole cannot be used; nothing in it can be acked."""

    gateway: str | None
    reason: str
    detail: str


def reading_tags(batch: Batch, sensor: str) -> dict[str, str]:
    tags = {tag: batch.site.get(key, "") for key, tag in SITE_TAGS.items()}
    tags.update(batch.sensors.get(sensor, {}))
    tags["gateway"] = batch.gateway
    tags["sensor"] = sensor
    return tags


def reading_point(batch: Batch, reading: WireReading) -> Point:
    time_ns, how = reading_time(reading.time_ns, reading.boot, reading.mono_ns, reading.synced,
                                dict(batch.boots))
    fields = dict(reading.fields)
    if how != "own":
        # Taken under an unsynchronised clock: corrected from the boot's anchor,
        # or kept as stamped and flagged (docs/delivery.md, "Time").
        fields[f"time_{how}"] = True
    # Identity as fields, never tags (invariant 4): a tag would make every
    # reading its own series and defeat the overwrite that makes resends safe.
    fields["seq"] = reading.seq
    fields["epoch"] = batch.epoch
    return Point(reading.measurement, reading_tags(batch, reading.sensor), fields, time_ns)


def dead_letter_point(batch: Batch, rejected: Rejected) -> Point:
    """The bad reading kept whole, on a series of its own sensor and measurement.

    Its time is the reading's own when it has one, so a resend overwrites the
    same dead letter instead of adding another.
    """
    try:
        raw = json.loads(rejected.raw)
    except ValueError:
        raw = {}
    raw = raw if isinstance(raw, dict) else {}
    t = raw.get("t")
    time_ns = t if isinstance(t, int) and not isinstance(t, bool) and t >= 0 else rejected.seq
    code, _, detail = rejected.reason.partition(": ")
    tags = {"gateway": batch.gateway, "reason": code}
    for tag, key in (("sensor", "sensor"), ("measurement", "m")):
        if isinstance(raw.get(key), str):
            tags[tag] = raw[key][:64]
    return Point(
        DEADLETTER_MEASUREMENT,
        tags,
        {"seq": rejected.seq, "epoch": batch.epoch, "detail": detail, "raw": rejected.raw},
        time_ns,
    )


def ingest(payload: bytes, topic_gateway: str | None) -> Accepted | Refused:
    try:
        batch = decode_batch(payload, topic_gateway)
    except PayloadError as exc:
        return Refused(topic_gateway, exc.reason, exc.detail)
    seqs: SeqRanges = batch.all_seqs()
    return Accepted(
        gateway=batch.gateway,
        points=tuple(reading_point(batch, r) for r in batch.readings),
        dead_letters=tuple(dead_letter_point(batch, r) for r in batch.rejected),
        ack=Ack(batch.gateway, batch.epoch, batch.batch_id, seqs),
    )
