"""Dead letters, sans-IO: the one way a reading or point that cannot be written is kept.

Ingest makes one of each bad reading (collector/ingest.py), the write pipeline
of each point that cannot be encoded or that the database refused
(collector/delivery.py). Both land on ``cityedge_deadletter`` with the tags
gateway, reason, sensor and measurement and the fields seq, epoch, detail and
raw; whatever they were made from, they always encode: tags are made printable
and cut without a trailing backslash, text is bounded and free of lone
surrogates, and the time is one InfluxDB can store.
"""

from __future__ import annotations

from cityedge.uplink import FieldValue
from cityedge.uplink.text import safe_tag
from cityedge.uplink.timing import MAX_INT64, storable_time
from collector.lineprotocol import Point, safe_string

DEADLETTER_MEASUREMENT = "cityedge_deadletter"
# What a dead letter keeps of what was wrong: enough to see it, not a 4 MB string
# again (InfluxDB 1.x caps a string field at 64 KB). A database's refusal can quote
# the line it refused, so the detail keeps more than ingest's reasons ever need.
MAX_RAW_CHARS = 4096
MAX_DETAIL_CHARS = 2000
# Tag values copied from what was refused (its gateway, sensor, measurement), cut to this.
MAX_DEAD_TAG_CHARS = 64
MAX_EPOCH_CHARS = 64


def dead_letter(*, gateway: str, reason: str, sensor: str | None, measurement: str | None,
                seq: object, epoch: str, detail: str, raw: str, time_ns: int) -> Point:
    """The dead letter. A tag given as None is left out; a seq that is not an int64 is
    written as 0; a ``time_ns`` InfluxDB cannot store is written as 0."""
    tags = {"gateway": gateway, "reason": reason, "sensor": sensor, "measurement": measurement}
    int64 = isinstance(seq, int) and not isinstance(seq, bool) and abs(seq) <= MAX_INT64
    fields: dict[str, FieldValue] = {
        "seq": seq if int64 and isinstance(seq, int) else 0,
        "epoch": safe_string(epoch, MAX_EPOCH_CHARS),
        "detail": safe_string(detail, MAX_DETAIL_CHARS),
        "raw": safe_string(raw, MAX_RAW_CHARS),
    }
    return Point(DEADLETTER_MEASUREMENT,
                 {k: safe_tag(v, MAX_DEAD_TAG_CHARS) for k, v in tags.items() if v is not None},
                 fields, time_ns if storable_time(time_ns) else 0)
