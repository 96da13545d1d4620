"""An unreachable uplink is one line when it goes down, a reminder while it stays down,
and one line when it is back, each with the outbox's depth; a blip is not logged."""

from __future__ import annotations

import logging

from edge_agent.uplink_watch import GRACE_S, REMIND_S, UplinkWatch

TARGET = "MQTT broker 10.0.0.5:8883"


def test_a_broker_never_reached_is_reported_after_the_grace_then_reminded() -> None:
    watch = UplinkWatch(TARGET, now=0.0)
    assert watch.observe(False, 2.0, "connect: [Errno 111] Connection refused", 3) is None
    line = watch.observe(False, GRACE_S, "connect: [Errno 111] Connection refused", 7)
    assert line is not None and line.level == logging.WARNING
    assert line.text == (f"uplink down: cannot reach {TARGET} for 10 s (connect: [Errno 111]"
                         " Connection refused); 7 readings waiting in the outbox, kept and"
                         " sent when it returns")
    # Retries in between say nothing ...
    assert all(watch.observe(False, GRACE_S + t, "x", 9) is None for t in range(1, 299, 2))
    # ... until the reminder.
    again = watch.observe(False, GRACE_S + REMIND_S, "connect: timed out", 420)
    assert again is not None
    assert again.text.startswith(f"uplink still down: cannot reach {TARGET} for 5 min"
                                 " (connect: timed out); 420 readings waiting")
    back = watch.observe(True, GRACE_S + REMIND_S + 10, "", 455)
    assert back is not None and back.level == logging.WARNING
    assert back.text == (f"uplink back: {TARGET} after 5 min down; sending the 455 readings"
                         " waiting in the outbox")
    assert watch.outages == 1


def test_a_short_blip_is_not_an_outage() -> None:
    watch = UplinkWatch(TARGET, now=0.0)
    first = watch.observe(True, 1.0, "", 0)
    assert first is not None and first.level == logging.INFO
    assert first.text == f"uplink up: {TARGET}"
    assert watch.observe(False, 5.0, "disconnected: keepalive", 2) is None
    assert watch.observe(False, 5.0 + GRACE_S - 1, "disconnected: keepalive", 2) is None
    reconnected = watch.observe(True, 5.0 + GRACE_S - 0.5, "", 2)
    assert reconnected is not None and reconnected.level == logging.INFO
    assert watch.outages == 0


def test_each_outage_is_reported_once_more() -> None:
    watch = UplinkWatch(TARGET, now=0.0)
    watch.observe(True, 0.0, "", 0)
    lines = [watch.observe(up, t, "refused", 1) for t, up in
             [(1, False), (12, False), (13, True), (20, False), (31, False), (40, True)]]
    texts = [line.text.split(":")[0] for line in lines if line is not None]
    assert texts == ["uplink down", "uplink back", "uplink down", "uplink back"]
    assert watch.outages == 2
