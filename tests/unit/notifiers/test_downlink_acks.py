"""The downlink notifier's ack reader: any gateway may publish on its own down_ack, so
an unusable ack costs a counter (by reason, on the health point), not a log line each."""

from __future__ import annotations

import logging

import pytest

from cityedge.uplink.downlink import DisplayAck, encode_ack
from collector.notifiers.mqtt_downlink import DownlinkConfig, DownlinkNotifier

TOPIC = "cityedge/v1/gw-1/down_ack"


def test_a_flood_of_unusable_acks_is_counted_by_reason_and_logged_once_each(
        caplog: pytest.LogCaptureFixture) -> None:
    notifier = DownlinkNotifier(DownlinkConfig())
    with caplog.at_level(logging.WARNING, logger="collector.notifiers"):
        for i in range(1000):
            notifier.take_ack(TOPIC, b"\xff not json", i * 0.001)
            notifier.take_ack(TOPIC, b'{"v": 99, "type": "display_ack"}', i * 0.001)
    assert notifier.bad_acks == {"bad_json": 1000, "unsupported_version": 1000}
    stats = notifier.stats()
    assert stats["bad_ack_bad_json"] == 1000
    assert stats["bad_ack_unsupported_version"] == 1000
    assert len(caplog.records) == 2  # one per reason within the interval


def test_an_awaited_ack_is_counted_once_and_a_rejection_logged_throttled(
        caplog: pytest.LogCaptureFixture) -> None:
    notifier = DownlinkNotifier(DownlinkConfig())
    for i in range(50):
        notifier.awaiting[(f"e{i}", "gw-1")] = 1e9
    with caplog.at_level(logging.WARNING, logger="collector.notifiers"):
        for i in range(50):
            ack = encode_ack(DisplayAck(f"e{i}", "gw-1", "rejected", "no display"))
            notifier.take_ack(TOPIC, ack, 0.0)
            notifier.take_ack(TOPIC, ack, 0.0)  # a second ack of the same: not counted
    assert notifier.counts["rejected"] == 50
    assert not notifier.awaiting
    assert len(caplog.records) == 1
