"""What the terminal at this stop should be showing, from the collector's display downlink.

Sans-IO: ``DisplayBoard.receive(payload, now_ns)`` takes a ``.../down``
message and returns whether what is shown changed and the ack to publish;
the agent writes the board to the terminal's display file and publishes the
ack (agent.py). Rules, as cityedge/uplink/downlink.py states them: an event
id is acted on once and acknowledged every time; a clear removes its alert's
show; a show expires at ``expires_ns`` so a lost clear cannot leave a warning
up; an event older than the last one applied for its alert (a resend that
crossed a newer event) is acknowledged but not applied.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from dataclasses import asdict
from typing import Any

from cityedge.uplink.downlink import (
    DOWNLINK_VERSION,
    Display,
    DisplayAck,
    DownlinkError,
    Result,
    decode_display,
    message_id,
)

# Event ids remembered for "act once"; QoS 1 resends arrive within minutes.
SEEN_IDS = 4096
# Alerts whose last applied event time is remembered (ordering guard).
LAST_APPLIED = 4096


class DisplayBoard:
    def __init__(self, gateway: str, *, has_display: bool) -> None:
        self.gateway = gateway
        self.has_display = has_display
        self.showing: dict[str, Display] = {}  # alert_id -> the show on screen
        self.counts: Counter[str] = Counter()
        self._seen: OrderedDict[str, Result] = OrderedDict()
        self._applied: OrderedDict[str, int] = OrderedDict()  # alert_id -> event time_ns

    def receive(self, payload: bytes, now_ns: int | None) -> tuple[bool, DisplayAck]:
        """(changed, the ack to publish). ``now_ns`` None: the gateway's clock is not trusted yet,
        so an expiry in the message is kept but not checked on arrival."""
        try:
            display = decode_display(payload)
        except DownlinkError as exc:
            return False, self._ack(message_id(payload), "rejected", str(exc))
        if display.id in self._seen:
            self.counts["repeated"] += 1
            return False, self._ack(display.id, self._seen[display.id])
        if not self.has_display:
            return False, self._ack(display.id, "rejected",
                                    "no_display: this gateway has no display output configured")
        if (display.action == "show" and display.expires_ns is not None and now_ns is not None
                and display.expires_ns <= now_ns):
            late_s = (now_ns - display.expires_ns) / 1e9
            return False, self._remember(display, "rejected", f"expired: {late_s:.0f} s ago")
        result: Result = "shown" if display.action == "show" else "cleared"
        last = self._applied.get(display.alert_id)
        if last is not None and display.time_ns < last:
            self.counts["superseded"] += 1
            return False, self._remember(display, result)
        self._applied[display.alert_id] = display.time_ns
        self._applied.move_to_end(display.alert_id)
        while len(self._applied) > LAST_APPLIED:
            self._applied.popitem(last=False)
        if display.action == "show":
            self.showing[display.alert_id] = display
            changed = True
        else:
            changed = self.showing.pop(display.alert_id, None) is not None
        return changed, self._remember(display, result)

    def expire(self, now_ns: int) -> bool:
        """Drop shows past their expiry; True if anything was removed."""
        gone = [a for a, d in self.showing.items()
                if d.expires_ns is not None and d.expires_ns <= now_ns]
        for alert_id in gone:
            del self.showing[alert_id]
        self.counts["expired"] += len(gone)
        return bool(gone)

    def current(self) -> list[Display]:
        """On screen, newest first."""
        return sorted(self.showing.values(), key=lambda d: d.time_ns, reverse=True)

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        """The display file's content: what to show, for the terminal's display software."""
        return {"v": 1, "gateway": self.gateway, "updated_ns": now_ns,
                "showing": [asdict(d) for d in self.current()]}

    def forget(self, event_id: str) -> None:
        """The display output failed: a resend of this event is acted on again."""
        self._seen.pop(event_id, None)

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Put back what a previous run left in the display file (the collector will not
        resend a show it already has an ack for). Each entry is checked as a display
        message is; ValueError (DownlinkError) if one is not, and the board is unchanged.
        What was applied before the restart is not kept: an older show crossing a clear
        applied by the previous run is shown again, until it expires."""
        entries = snapshot.get("showing")
        if not isinstance(entries, list):
            raise DownlinkError("bad_field", "showing: expected a list")
        restored = {}
        for entry in entries:
            if not isinstance(entry, dict):
                raise DownlinkError("bad_field", f"showing: expected objects, got {entry!r:.100}")
            doc = {**entry, "v": DOWNLINK_VERSION, "type": "alert_display"}
            d = decode_display(json.dumps(doc, ensure_ascii=False).encode("utf-8"))
            if d.action != "show":
                raise DownlinkError("bad_field", f"showing: {d.id} is a {d.action}")
            restored[d.alert_id] = d
        self.showing.update(restored)
        for d in restored.values():
            self._applied[d.alert_id] = d.time_ns

    def _remember(self, display: Display, result: Result, detail: str = "") -> DisplayAck:
        self._seen[display.id] = result
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return self._ack(display.id, result, detail)

    def _ack(self, msg_id: str, result: Result, detail: str = "") -> DisplayAck:
        self.counts[result] += 1
        return DisplayAck(msg_id, self.gateway, result, detail)
