"""What an alert event puts on a terminal: the display message the mqtt_downlink notifier sends."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cityedge.uplink.downlink import decode_display, encode_display
from collector.alerts import AlertEvent
from collector.notifiers.mqtt_downlink import display_for

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
