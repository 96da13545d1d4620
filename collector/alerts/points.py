"""Alert events as InfluxDB points (measurement ``alerts``), for the collector's writer.

Tags: rule, severity, state and the alert's scope tags (district, site, ...),
so the data team can GROUP BY them; fields: value, message, alert_id, the
event's flags, and ``fencing_token`` (the leader's, with ``lease: etcd``).
The point's time is the event time, so a replayed or re-sent event
overwrites itself like a reading does.
"""

from __future__ import annotations

import math

from cityedge.uplink import FieldValue
from collector.alerts.events import AlertEvent
from collector.lineprotocol import Point

ALERTS_MEASUREMENT = "alerts"


def alert_point(event: AlertEvent) -> Point:
    tags = {**event.scope, "rule": event.rule, "severity": event.severity, "state": event.state}
    fields: dict[str, FieldValue] = {
        "message": event.message,
        "alert_id": event.alert_id,
        "seq": event.seq,
        "previous": event.previous,
        "started_ns": event.started_ns,
        "members": event.members,
        "notify": event.notify,
        "late": event.late,
        "repeat": event.repeat,
        "silenced": event.silenced,
    }
    if event.fencing_token:
        fields["fencing_token"] = event.fencing_token
    if math.isfinite(event.value):  # InfluxDB refuses NaN and infinities
        fields["value"] = float(event.value)
    return Point(ALERTS_MEASUREMENT, tags, fields, event.time_ns)
