"""The display downlink and its ack: encoded, decoded, and answered by the terminal's side."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from collector.alerts import AlertEvent
from collector.notifiers.mqtt_downlink import (
    DisplayAck,
    DownlinkError,
    decode_ack,
    decode_display,
    encode_ack,
    encode_display,
    terminal_ack,
)
from collector.notifiers.mqtt_downlink.message import ack_topic, display_for

EVENT = AlertEvent(alert_id="a1b2c3d4e5f60718", seq=2, rule="pm10_advisory", state="firing",
                   previous="pending", severity="advisory", time_ns=1709514000000000000,
                   started_ns=1709506800000000000, value=163.0, message="m",
                   scope={"district": "강남구"}, notify=True)


def test_display_round_trip_and_expiry() -> None:
    d = display_for(EVENT, "강남구 미세먼지 주의보", 3600 * 10**9)
    assert (d.id, d.action, d.expires_ns) == ("a1b2c3d4e5f60718:2", "show",
                                              EVENT.time_ns + 3600 * 10**9)
    assert decode_display(encode_display(d)) == d
    assert json.loads(encode_display(d))["text"] == "강남구 미세먼지 주의보"  # UTF-8, not \\u


@pytest.mark.parametrize(("state", "action"), [("firing", "show"), ("acknowledged", "show"),
                                               ("flapping", "show"), ("resolved", "clear")])
def test_action_follows_the_state(state: str, action: str) -> None:
    assert display_for(replace(EVENT, state=state), "t", None).action == action


def test_terminal_acks_show_and_clear() -> None:
    show = encode_display(display_for(EVENT, "t", None))
    shown, ack = terminal_ack(show, "gw-bus-7")
    assert shown is not None and shown.action == "show"
    assert decode_ack(ack) == DisplayAck("a1b2c3d4e5f60718:2", "gw-bus-7", "shown")
    clear = encode_display(display_for(replace(EVENT, state="resolved", seq=3), "t", None))
    assert decode_ack(terminal_ack(clear, "gw-bus-7")[1]).result == "cleared"


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "bad_json"),
    (b'{"v": 2, "type": "alert_display", "id": "x"}', "unsupported_version"),
    (b'{"v": 1, "type": "reboot", "id": "x"}', "wrong_type"),
    (b'{"v": 1, "type": "alert_display", "id": "x"}', "bad_field"),
])
def test_terminal_rejects_what_it_cannot_show_with_the_reason(payload: bytes, reason: str) -> None:
    shown, ack = terminal_ack(payload, "gw-bus-7")
    decoded = decode_ack(ack)
    assert shown is None and decoded.result == "rejected" and decoded.detail.startswith(reason)
    with pytest.raises(DownlinkError) as info:
        decode_display(payload)
    assert info.value.reason == reason


def test_ack_topic_and_bad_acks() -> None:
    assert ack_topic("cityedge/v1", "gw-bus-7") == "cityedge/v1/gw-bus-7/down_ack"
    assert decode_ack(encode_ack(DisplayAck("i", "g", "cleared"))).result == "cleared"
    with pytest.raises(DownlinkError):
        decode_ack(b'{"v": 1, "type": "alert_display_ack", "id": "i", "result": "maybe"}')
