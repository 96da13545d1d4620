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

Limits (a display is public text; the terminal's file must stay small): ``id``
and ``alert_id`` at most ``MAX_ID_CHARS``, ``rule`` and ``severity``
``MAX_NAME_CHARS``, ``text`` ``MAX_TEXT_CHARS``, ``scope`` at most
``MAX_SCOPE_TAGS`` tags of ``MAX_SCOPE_KEY_CHARS`` / ``MAX_SCOPE_VALUE_CHARS``;
no control characters (a display's software may act on escape sequences),
bar newlines in ``text``.

Sealed displays (cityedge/uplink/seal.py, purpose ``"display"``): a collector
with the gateway's seal key sends ``encode_display(d, key)``, adding ``mac``
over every other field; a gateway with a key decodes with
``decode_display(payload, key)``, which refuses a show or a clear without a
mac (``unsealed``) or with a wrong one (``bad_seal``). Without a key
(insecure mode) nothing is sealed or checked. The ack below is not sealed:
it changes nothing on the collector but a counter.

Gateway -> collector, QoS 1, on ``{prefix}/{gateway}/down_ack``::

    {"v": 1, "type": "alert_display_ack", "id": "<same id>", "gateway": "gw-bus-7",
     "result": "shown" | "cleared" | "rejected", "detail": ""}

Both sides import this module (the collector's mqtt_downlink notifier and the
agent's display board), so they cannot disagree on the format.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

from cityedge.uplink.payload import PayloadError
from cityedge.uplink.seal import is_sealed, seal, verify

DOWNLINK_VERSION = 1
Action = Literal["show", "clear"]
Result = Literal["shown", "cleared", "rejected"]
RESULTS: tuple[Result, ...] = ("shown", "cleared", "rejected")
# A display text longer than this is refused: terminals show a line or two.
MAX_TEXT_CHARS = 500
# Event ids are "<alert id>:<event seq>" (16 hex digits and a counter): room to spare.
MAX_ID_CHARS = 128
# Rule names and severities are plain names (rules.py): 64 like InfluxDB names here.
MAX_NAME_CHARS = 64
# A scope is the alert's location tags: at most six today (a sensor's group).
MAX_SCOPE_TAGS = 8
MAX_SCOPE_KEY_CHARS = 64
MAX_SCOPE_VALUE_CHARS = 128


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


def encode_display(d: Display, key: bytes | None = None) -> bytes:
    """The display message; sealed (``mac``) when the gateway's seal ``key`` is given."""
    doc: dict[str, Any] = {"v": DOWNLINK_VERSION, "type": "alert_display", "id": d.id,
                           "alert_id": d.alert_id, "action": d.action, "rule": d.rule,
                           "severity": d.severity, "text": d.text, "scope": d.scope,
                           "time_ns": d.time_ns, "expires_ns": d.expires_ns}
    return _dump(doc if key is None else seal(doc, key, "display"))


def encode_ack(ack: DisplayAck) -> bytes:
    return _dump({"v": DOWNLINK_VERSION, "type": "alert_display_ack", "id": ack.id,
                  "gateway": ack.gateway, "result": ack.result, "detail": ack.detail})


def _object(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
        raise DownlinkError("bad_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise DownlinkError("bad_json", "not an object")
    return doc


def _load(payload: bytes, kind: str) -> dict[str, Any]:
    return _kind(_object(payload), kind)


def _kind(doc: dict[str, Any], kind: str) -> dict[str, Any]:
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


def _plain(value: str, allow: str = "") -> bool:
    """No control characters (Unicode category Cc), bar those in ``allow``."""
    return all(c in allow or unicodedata.category(c) != "Cc" for c in value)


def _str(doc: dict[str, Any], key: str, limit: int | None = None) -> str:
    value = doc.get(key)
    if not _text_ok(value):
        raise DownlinkError("bad_field", f"{key}: expected a UTF-8 string, got {value!r:.100}")
    if limit is not None and (len(value) > limit or not _plain(value)):  # type: ignore[arg-type]
        raise DownlinkError("bad_field", f"{key}: at most {limit} characters, no control"
                            f" characters, got {value!r:.100}")
    return value  # type: ignore[return-value]


def _scope(value: Any) -> dict[str, str]:
    scope = value or {}
    if not isinstance(scope, dict) or not all(_text_ok(k) and _text_ok(v)
                                              for k, v in scope.items()):
        raise DownlinkError("bad_field", f"scope: expected tag -> string, got {scope!r:.100}")
    if len(scope) > MAX_SCOPE_TAGS or not all(
            len(k) <= MAX_SCOPE_KEY_CHARS and len(v) <= MAX_SCOPE_VALUE_CHARS
            and _plain(k) and _plain(v) for k, v in scope.items()):
        raise DownlinkError("bad_field", f"scope: at most {MAX_SCOPE_TAGS} tags, names of at"
                            f" most {MAX_SCOPE_KEY_CHARS} and values of at most"
                            f" {MAX_SCOPE_VALUE_CHARS} characters, no control characters")
    return dict(scope)


def _check_seal(doc: dict[str, Any], key: bytes | None) -> None:
    if key is None:
        return
    if not is_sealed(doc):
        raise DownlinkError("unsealed", "this gateway takes sealed display messages only")
    if not verify(doc, key, "display"):
        raise DownlinkError("bad_seal", "the message's mac does not match this gateway's key")


def _ns(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DownlinkError("bad_field", f"{key}: expected Unix ns, got {value!r}")
    return value


def decode_display(payload: bytes, key: bytes | None = None) -> Display:
    """Parse and check a display message; with a seal ``key``, only a sealed one.

    With a key the seal is checked before anything else the message says, and what
    is not even a JSON object is ``unsealed`` too: until the seal verifies, nothing
    shows the collector sent it, so the gateway does not answer it (a stranger's
    flood must not cost it a publish per message)."""
    if key is None:
        doc = _load(payload, "alert_display")
    else:
        try:
            doc = _object(payload)
        except DownlinkError as exc:
            raise DownlinkError("unsealed", f"not a sealed message ({exc.detail})") from None
        _check_seal(doc, key)
        _kind(doc, "alert_display")
    action = _str(doc, "action")
    if action not in ("show", "clear"):
        raise DownlinkError("bad_field", f"action: expected show or clear, got {action!r}")
    text = _str(doc, "text")
    if len(text) > MAX_TEXT_CHARS:
        raise DownlinkError("bad_field", f"text: {len(text)} characters, at most {MAX_TEXT_CHARS}")
    if not _plain(text, allow="\n"):
        raise DownlinkError("bad_field", "text: control characters other than newlines")
    expires = doc.get("expires_ns")
    return Display(_str(doc, "id", MAX_ID_CHARS), _str(doc, "alert_id", MAX_ID_CHARS),
                   action, _str(doc, "rule", MAX_NAME_CHARS),  # type: ignore[arg-type]
                   _str(doc, "severity", MAX_NAME_CHARS), text,
                   _ns(doc.get("time_ns"), "time_ns"),
                   None if expires is None else _ns(expires, "expires_ns"),
                   _scope(doc.get("scope")))


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
