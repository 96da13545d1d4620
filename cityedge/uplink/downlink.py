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

Both sides import this module (the collector's mqtt_downlink notifier and the
agent's display board), so they cannot disagree on the format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from cityedge.uplink.payload import PayloadError

DOWNLINK_VERSION = 1
Action = Literal["show", "clear"]
Result = Literal["shown", "cleared", "rejected"]
RESULTS: tuple[Result, ...] = ("shown", "cleared", "rejected")
# A display text longer than this is refused: terminals show a line or two.
MAX_TEXT_CHARS = 500


class DownlinkError(PayloadError):
    """A display message or ack that cannot be used.

    The peer's fault, like h11's RemoteProtocolError: any bytes either decode
    or raise this, never another exception.
    """


@dataclass(frozen=True, slots=True)
class Display:
    """One alert event to show on (or clear from) a terminal's display.

    ``id`` names the event (acted on once), ``alert_id`` the alert (a clear
    removes what a show of the same alert put up); times are Unix ns.
    """

    id: str
    alert_id: str
    action: Action
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
    result: Result
    detail: str = ""


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_display(d: Display) -> bytes:
    return _dump({"v": DOWNLINK_VERSION, "type": "alert_display", "id": d.id,
                  "alert_id": d.alert_id, "action": d.action, "rule": d.rule,
                  "severity": d.severity, "text": d.text, "scope": d.scope,
                  "time_ns": d.time_ns, "expires_ns": d.expires_ns})


def encode_ack(ack: DisplayAck) -> bytes:
    return _dump({"v": DOWNLINK_VERSION, "type": "alert_display_ack", "id": ack.id,
                  "gateway": ack.gateway, "result": ack.result, "detail": ack.detail})


def _load(payload: bytes, kind: str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
        raise DownlinkError("bad_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise DownlinkError("bad_json", "not an object")
    if doc.get("v") != DOWNLINK_VERSION:
        raise DownlinkError("unsupported_version",
                            f"v={doc.get('v')!r}; supported: {DOWNLINK_VERSION}")
    if doc.get("type") != kind:
        raise DownlinkError("wrong_type", f"type={doc.get('type')!r}, expected {kind}")
    return doc


def _text_ok(value: object) -> bool:
    """A string that can be sent back out: JSON's \\udc80 escapes decode to lone
    surrogates, which no UTF-8 encoder (ours, or a display's) accepts."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not _text_ok(value):
        raise DownlinkError("bad_field", f"{key}: expected a UTF-8 string, got {value!r:.100}")
    return value  # type: ignore[return-value]


def _ns(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DownlinkError("bad_field", f"{key}: expected Unix ns, got {value!r}")
    return value


def decode_display(payload: bytes) -> Display:
    doc = _load(payload, "alert_display")
    action = _str(doc, "action")
    if action not in ("show", "clear"):
        raise DownlinkError("bad_field", f"action: expected show or clear, got {action!r}")
    text = _str(doc, "text")
    if len(text) > MAX_TEXT_CHARS:
        raise DownlinkError("bad_field", f"text: {len(text)} characters, at most {MAX_TEXT_CHARS}")
    scope = doc.get("scope") or {}
    if not isinstance(scope, dict) or not all(_text_ok(k) and _text_ok(v)
                                              for k, v in scope.items()):
        raise DownlinkError("bad_field", f"scope: expected tag -> string, got {scope!r:.100}")
    expires = doc.get("expires_ns")
    return Display(_str(doc, "id"), _str(doc, "alert_id"), action,  # type: ignore[arg-type]
                   _str(doc, "rule"), _str(doc, "severity"), text,
                   _ns(doc.get("time_ns"), "time_ns"),
                   None if expires is None else _ns(expires, "expires_ns"), dict(scope))


def decode_ack(payload: bytes) -> DisplayAck:
    doc = _load(payload, "alert_display_ack")
    result = doc.get("result")
    if result not in RESULTS:
        raise DownlinkError("bad_field", f"result: expected one of {RESULTS}, got {result!r}")
    gateway, detail = doc.get("gateway", ""), doc.get("detail", "")
    if not (_text_ok(gateway) and _text_ok(detail)):
        raise DownlinkError("bad_field", "gateway and detail: expected UTF-8 strings")
    return DisplayAck(_str(doc, "id"), gateway, result, detail)


def message_id(payload: bytes) -> str:
    """The id of a message we could not decode, best effort, so a rejection names it."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return ""
    value = doc.get("id") if isinstance(doc, dict) else None
    return value if _text_ok(value) else ""  # type: ignore[return-value]
