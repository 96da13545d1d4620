"""What the terminal at this stop should be showing, from the collector's display downlink.

Sans-IO: ``DisplayBoard.receive(payload, now_ns)`` takes a ``.../down``
message and returns whether what is shown changed and the ack to publish;
the agent writes the board to the terminal's display file and publishes the
ack (agent.py). Rules, as cityedge/uplink/downlink.py states them: an event
id is acted on once and acknowledged every time; a clear removes its alert's
show; a show expires at ``expires_ns`` so a lost clear cannot leave a warning
up; an event older than the last one applied for its alert (a resend that
crossed a newer event) is acknowledged but not applied.

What a stranger on the broker can do is bounded (DESIGN, Trust):
- with the gateway's seal key, a show or a clear without a valid seal is
  rejected (``unsealed``, ``bad_seal``) before anything else: its id is not
  remembered, so the genuine message with that id is still acted on, and
  no ack is sent for it (``answered``): no collector sent it, and a flood of
  answers would crowd the uplink's queue;
- at most ``MAX_SHOWING`` alerts are on the board; a show for one more is
  rejected (``board_full``), so the display file stays small (a few kB per
  entry, see the limits in cityedge/uplink/downlink.py);
- nothing stays up for ever: a show without ``expires_ns`` expires
  ``DEFAULT_TTL_NS`` after its time, one asking for more than
  ``MAX_TTL_NS`` gets that, and once the clock is trusted a show dated more
  than ``MAX_AHEAD_NS`` in the future is rejected (``from_future``) or, if
  already up, taken down.
Every rejection is counted by reason (``rejected``).
"""

from __future__ import annotations

import dataclasses
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

# Rejections of a message no collector can be shown to have sent: not answered.
UNATTRIBUTED = frozenset({"unsealed", "bad_seal"})
# Event ids remembered for "act once"; QoS 1 resends arrive within minutes.
SEEN_IDS = 4096
# Alerts whose last applied event time is remembered (ordering guard).
LAST_APPLIED = 4096
# Alerts on the board at once: a district's advisory and warning for two
# pollutants, with room for site alerts; a terminal shows a few lines anyway.
MAX_SHOWING = 16
_HOUR_NS = 3600 * 10**9
# A show without an expiry: the collector's mqtt_downlink default ttl.
DEFAULT_TTL_NS = 6 * _HOUR_NS
# The longest a show may ask to stay up without a refresh: a day past any
# plausible ttl; an episode that lasts longer is refreshed by its repeats.
MAX_TTL_NS = 7 * 24 * _HOUR_NS
# Clock difference tolerated between a collector and a gateway whose clock is
# trusted (both NTP, or anchored on a collector's clock).
MAX_AHEAD_NS = _HOUR_NS


class DisplayBoard:
    def __init__(self, gateway: str, *, has_display: bool, key: bytes | None = None) -> None:
        self.gateway = gateway
        self.has_display = has_display
        self.key = key  # the seal key (cityedge/uplink/seal.py); None: insecure, unchecked
        self.showing: dict[str, Display] = {}  # alert_id -> the show on screen
        self.counts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()  # by reason
        self._seen: OrderedDict[str, Result] = OrderedDict()
        self._applied: OrderedDict[str, int] = OrderedDict()  # alert_id -> event time_ns

    def receive(self, payload: bytes, now_ns: int | None) -> tuple[bool, DisplayAck]:
        """(changed, the ack to publish). ``now_ns`` None: the gateway's clock is not trusted yet,
        so an expiry in the message is kept but not checked on arrival."""
        try:
            display = decode_display(payload, self.key)
        except DownlinkError as exc:
            return False, self._reject(message_id(payload), exc.reason, exc.detail)
        if display.id in self._seen:
            self.counts["repeated"] += 1
            return False, self._ack(display.id, self._seen[display.id])
        if not self.has_display:
            return False, self._reject(display.id, "no_display",
                                       "this gateway has no display output configured")
        if display.action == "show":
            display = _bounded(display)
            refused = self._refuse_show(display, now_ns)
            if refused is not None:
                self._note(display.id, "rejected")
                return False, self._reject(display.id, *refused)
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

    def _refuse_show(self, display: Display, now_ns: int | None) -> tuple[str, str] | None:
        """(reason, detail) if this show may not go up."""
        if now_ns is not None:
            assert display.expires_ns is not None  # _bounded
            if display.expires_ns <= now_ns:
                return "expired", f"{(now_ns - display.expires_ns) / 1e9:.0f} s ago"
            if display.time_ns > now_ns + MAX_AHEAD_NS:
                return "from_future", f"{(display.time_ns - now_ns) / 1e9:.0f} s ahead"
        if display.alert_id not in self.showing and len(self.showing) >= MAX_SHOWING:
            return "board_full", f"{len(self.showing)} alerts are up, at most {MAX_SHOWING}"
        return None

    def expire(self, now_ns: int) -> bool:
        """Drop shows past their expiry (or dated implausibly far ahead); True if any went."""
        gone = [a for a, d in self.showing.items()
                if (d.expires_ns is not None and d.expires_ns <= now_ns)
                or d.time_ns > now_ns + MAX_AHEAD_NS]
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
            restored[d.alert_id] = _bounded(d)
        newest = sorted(restored.values(), key=lambda d: d.time_ns, reverse=True)
        self.showing.update({d.alert_id: d for d in newest[:MAX_SHOWING]})
        for d in restored.values():
            self._applied[d.alert_id] = d.time_ns

    def _remember(self, display: Display, result: Result) -> DisplayAck:
        self._note(display.id, result)
        return self._ack(display.id, result)

    def _note(self, event_id: str, result: Result) -> None:
        self._seen[event_id] = result
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)

    def _reject(self, msg_id: str, reason: str, detail: str) -> DisplayAck:
        self.rejected[reason] += 1
        return self._ack(msg_id, "rejected", f"{reason}: {detail}")

    def _ack(self, msg_id: str, result: Result, detail: str = "") -> DisplayAck:
        self.counts[result] += 1
        return DisplayAck(msg_id, self.gateway, result, detail)


def _bounded(display: Display) -> Display:
    """The show with the expiry it will really have: a default if none, at most MAX_TTL_NS."""
    longest = display.time_ns + MAX_TTL_NS
    expires = display.time_ns + DEFAULT_TTL_NS if display.expires_ns is None else min(
        display.expires_ns, longest)
    return display if expires == display.expires_ns else dataclasses.replace(
        display, expires_ns=expires)


def reason_of(ack: DisplayAck) -> str:
    """The reason code of a rejection ("" for shown and cleared)."""
    return ack.detail.partition(":")[0] if ack.result == "rejected" else ""


def answered(ack: DisplayAck) -> bool:
    """Should this ack be sent? Not for a message that failed the seal check."""
    return reason_of(ack) not in UNATTRIBUTED
