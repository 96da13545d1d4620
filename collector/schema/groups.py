"""Which retention group each measurement is written to (sans-IO, no imports of the agent).

``raw`` readings (downsampled by continuous queries), ``health`` (the gateways'
and collectors' own readings) or ``events`` (alerts, dead letters, outbox
drops: rare, and kept longest).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from collector.alerts.points import ALERTS_MEASUREMENT
from collector.deadletter import DEADLETTER_MEASUREMENT

Group = Literal["raw", "health", "events"]

# Written by edge_agent/health.py and edge_agent/outbox/bookkeeping.py (the agent's
# names, repeated here so the collector need not import the agent to route them).
GATEWAY_HEALTH = "gateway_health"
SENSOR_HEALTH = "sensor_health"
OUTBOX_DROPS = "outbox_drops"
# collector/service.py HEALTH_MEASUREMENT
COLLECTOR_HEALTH = "cityedge_collector"

GROUPS: Mapping[str, Group] = {
    GATEWAY_HEALTH: "health",
    SENSOR_HEALTH: "health",
    COLLECTOR_HEALTH: "health",
    ALERTS_MEASUREMENT: "events",
    DEADLETTER_MEASUREMENT: "events",
    OUTBOX_DROPS: "events",
}


def group_of(measurement: str) -> Group:
    """The retention group a measurement's points are written to."""
    return GROUPS.get(measurement, "raw")
