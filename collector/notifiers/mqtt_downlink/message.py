"""From an alert event to the display message a terminal shows.

The wire format (display and ack, version 1) lives in cityedge/uplink/downlink.py,
shared with the gateway's agent; this module only decides what an event shows.
"""

from __future__ import annotations

from cityedge.uplink.downlink import Action, Display
from collector.alerts.events import AlertEvent

# Events that put (or keep) text on a display; any other state clears it.
SHOW_STATES = frozenset({"firing", "acknowledged", "flapping"})


def display_for(event: AlertEvent, text: str, ttl_ns: int | None) -> Display:
    action: Action = "show" if event.state in SHOW_STATES else "clear"
    return Display(event.event_id, event.alert_id, action, event.rule, event.severity, text,
                   event.time_ns, None if ttl_ns is None else event.time_ns + ttl_ns,
                   dict(event.scope))
