"""The alert display downlink and its acknowledgement, version 1 (JSON), sans-IO.

Collector -> gateway, QoS 1, on ``{prefix}/{gateway}/down``::

    {"v": 1, "type": "alert_display", "id": "<alert id>:<event seq>",
     "alert_id": "...", "action": "show" | "clear", "rule": "pm10_advisory",
     "severity": "advisory", "text": "강남구 미세먼지 주의보 - 외출을 자제하세요",
     "scope": {"district": "강남구"}, "time_ns": 1709514000000000000,
     "expires_ns": 1709535600000000000}

"show" puts ``text`` on the terminal until a "clear" with the same alert_id
or until ``expires_ns`` (so a lost "clear" cannot leave a warning up for
ever; repeats refresh it). ``id`` is unique per event: a terminal that sees
an id twice (a resend, or a second collector) acts once and acks again.

Gateway -> collector, QoS 1, on ``{prefix}/{gateway}/down_ack``::

    {"v": 1, "type": "alert_display_ack", "id": "<same id>", "gateway": "gw-bus-7",
     "result": "shown" | "cleared" | "rejected", "detail": ""}

``terminal_ack()`` is the gateway's half: it turns a display message into
the ack to publish, so the agent's side is a few lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from collector.alerts.errors import AlertError
from collector.alerts.events import AlertEvent

VERSION = 1
ACK_SUFFIX = "down_ack"
SHOW_STATES = frozenset({"firing", "acknowledged", "flapping"})


class DownlinkError(AlertError):
    """A display message or ack that cannot be used; ``reason`` is a short code.

    The peer's fault, like h11's RemoteProtocolError: any bytes either decode
    or raise this, never another exception.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True, slots=True)
class Display:
    id: str
    alert_id: str
    action: str
    rule: str
    severity: str
    text: str
    time_ns: int
    expires_ns: int | None
    scope: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DisplayAck:
    id: str
    gateway: str
    result: str
    detail: str = ""


def ack_topic(prefix: str, gateway: str) -> str:
    return f"{prefix}/{gateway}/{ACK_SUFFIX}"


def display_for(event: AlertEvent, text: str, ttl_ns: int | None) -> Display:
    action = "show" if event.state in SHOW_STATES else "clear"
    return Display(event.event_id, event.alert_id, action, event.rule, event.severity, text,
                   event.time_ns, None if ttl_ns is None else event.time_ns + ttl_ns,
                   dict(event.scope))


def encode_display(d: Display) -> bytes:
    doc = {"v": VERSION, "type": "alert_display", "id": d.id, "alert_id": d.alert_id,
           "action": d.action, "rule": d.rule, "severity": d.severity, "text": d.text,
           "scope": d.scope, "time_ns": d.time_ns, "expires_ns": d.expires_ns}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _load(payload: bytes, kind: str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise DownlinkError("bad_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise DownlinkError("bad_json", "not an object")
    if doc.get("v") != VERSION:
        raise DownlinkError("unsupported_version", f"v={doc.get('v')!r}; supported: {VERSION}")
    if doc.get("type") != kind:
        raise DownlinkError("wrong_type", f"type={doc.get('type')!r}, expected {kind}")
    return doc


def decode_display(payload: bytes) -> Display:
    doc = _load(payload, "alert_display")
    try:
        d = Display(str(doc["id"]), str(doc["alert_id"]), str(doc["action"]), str(doc["rule"]),
                    str(doc["severity"]), str(doc["text"]), int(doc["time_ns"]),
                    None if doc.get("expires_ns") is None else int(doc["expires_ns"]),
                    {str(k): str(v) for k, v in dict(doc.get("scope") or {}).items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise DownlinkError("bad_field", repr(exc)) from None
    if d.action not in ("show", "clear"):
        raise DownlinkError("bad_field", f"action={d.action!r}")
    return d


def encode_ack(ack: DisplayAck) -> bytes:
    doc = {"v": VERSION, "type": "alert_display_ack", "id": ack.id, "gateway": ack.gateway,
           "result": ack.result, "detail": ack.detail}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_ack(payload: bytes) -> DisplayAck:
    doc = _load(payload, "alert_display_ack")
    result = doc.get("result")
    if result not in ("shown", "cleared", "rejected") or not isinstance(doc.get("id"), str):
        raise DownlinkError("bad_field", f"id={doc.get('id')!r} result={result!r}")
    return DisplayAck(doc["id"], str(doc.get("gateway", "")), result, str(doc.get("detail", "")))


def terminal_ack(payload: bytes, gateway: str) -> tuple[Display | None, bytes]:
    """The gateway's side: parse a display message, return it (None if unusable) and the ack."""
    try:
        d = decode_display(payload)
    except DownlinkError as exc:
        try:
            msg_id = str(json.loads(payload).get("id", ""))
        except (ValueError, AttributeError):
            msg_id = ""
        return None, encode_ack(DisplayAck(msg_id, gateway, "rejected", str(exc)))
    result = "shown" if d.action == "show" else "cleared"
    return d, encode_ack(DisplayAck(d.id, gateway, result))
