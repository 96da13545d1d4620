"""The subscriber's backpressure core: received and answered counts in, paused out."""

from __future__ import annotations

import asyncio

import paho.mqtt.client as paho
import pytest

from cityedge.flowgate import FlowGate, FlowGateError
from cityedge.mqtt import MqttClient, MqttOptions


def test_reading_pauses_at_the_limit_and_reopens_one_answer_below_it() -> None:
    gate = FlowGate(3)
    for _ in range(2):
        gate.received()
    assert not gate.paused
    gate.received()
    assert gate.paused and gate.pauses == 1
    gate.received()  # one read can bring a packet past the limit
    assert gate.paused and gate.peak == 4
    assert gate.answered() is False  # 3 open: still at the limit
    assert gate.answered() is True  # 2 open: reading reopens
    assert not gate.paused
    assert gate.answered() is False and gate.answered() is False
    assert gate.open == 0


def test_each_time_the_limit_is_reached_is_one_pause() -> None:
    gate = FlowGate(1)
    for _ in range(5):
        gate.received()
        gate.answered()
    assert (gate.pauses, gate.peak, gate.paused) == (5, 1, False)


def test_more_answers_than_messages_is_a_local_mistake() -> None:
    gate = FlowGate(2)
    with pytest.raises(FlowGateError):
        gate.answered()
    with pytest.raises(FlowGateError):
        FlowGate(0)


def test_a_message_the_full_queue_could_not_take_leaves_the_gate() -> None:
    """The client's shell: a message dropped unacked on a full queue is not held, so it
    must not keep counting, or enough such drops would pause reading for good."""
    async def main() -> None:
        client = MqttClient(MqttOptions("127.0.0.1", 1, "c", manual_ack=True,
                                        incoming_queue=1, max_unanswered=5))
        for mid in (1, 2, 3):
            msg = paho.MQTTMessage(mid=mid, topic=b"cityedge/v1/gw/up")
            msg.qos, msg.payload = 1, b"{}"
            client._on_message(client._client, None, msg)
        assert client.stats.overflowed == 2
        assert client.gate is not None and client.gate.open == 1  # only the one queued
        client.answered(await client.get())
        assert client.gate.open == 0 and not client.gate.paused

    asyncio.run(main())
