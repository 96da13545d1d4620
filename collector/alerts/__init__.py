"""Alerts: rules as YAML data, a sans-IO engine on event time, and the runner that notifies.

The engine (``Engine``) takes readings, gateway status and clock ticks and
returns ``AlertEvent`` values; it does no I/O. ``AlertRunner`` (runner.py)
is the collector's side: it feeds the engine, keeps its state on disk,
delivers events to notifiers (collector/notifiers/) and hands InfluxDB
points to the collector's writer. docs/alerts.md is the reference.
"""

from collector.alerts.engine import Engine
from collector.alerts.errors import (
    AlertError,
    DeliveryRejected,
    NotifyError,
    Retryable,
    RuleError,
    Throttled,
    UsageError,
)
from collector.alerts.events import Ack, AlertEvent, Silence, Status
from collector.alerts.lifecycle import State
from collector.alerts.points import ALERTS_MEASUREMENT, alert_point
from collector.alerts.rules import Rule, RuleSet, load_rules

__all__ = [
    "ALERTS_MEASUREMENT",
    "Ack",
    "AlertError",
    "AlertEvent",
    "DeliveryRejected",
    "Engine",
    "NotifyError",
    "Retryable",
    "Rule",
    "RuleError",
    "RuleSet",
    "Silence",
    "State",
    "Status",
    "Throttled",
    "UsageError",
    "alert_point",
    "load_rules",
]
