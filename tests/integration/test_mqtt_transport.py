"""The agent's MQTT uplink on a real Mosquitto: acks are never held up by displays."""

from __future__ import annotations

import asyncio
import time

import pytest

from cityedge.mqtt import MqttClient, MqttOptions
from cityedge.uplink import Ack, SeqRanges, Topics, encode_ack
from edge_agent.config import MqttConfig
from edge_agent.transports.mqtt import MAX_PENDING_DISPLAYS, MqttTransport
from simulators.services import Mosquitto

pytestmark = pytest.mark.integration


def test_a_slow_display_write_never_delays_an_ack(mosquitto: Mosquitto, unique_name: str) -> None:
    prefix, gateway = f"test/{unique_name}", "gw-1"
    topics = Topics(prefix)

    async def main() -> None:
        transport = MqttTransport(MqttConfig(port=mosquitto.port, topic_prefix=prefix),
                                  gateway, max_in_flight=1)
        handled: list[bytes] = []

        async def slow_display(payload: bytes) -> bytes | None:
            await asyncio.sleep(3.0)  # a display file on a dying SD card
            handled.append(payload)
            return None

        transport.downlink = slow_display
        await transport.start()
        assert transport.client is not None
        await asyncio.wait_for(transport.client.connected.wait(), 10)
        peer = MqttClient(MqttOptions("127.0.0.1", mosquitto.port, f"peer-{unique_name}"))
        peer.start()
        await peer.wait_connected(10)
        try:
            await asyncio.sleep(0.3)  # the transport's subscriptions are in place
            for i in range(MAX_PENDING_DISPLAYS + 10):
                peer.publish(topics.down(gateway), f"display {i}".encode(), qos=1)
            peer.publish(topics.ack(gateway),
                         encode_ack(Ack(gateway, "00112233aabbccdd", 7, SeqRanges.of([1, 2]))))
            started = time.monotonic()
            ack = await asyncio.wait_for(transport.next_ack(), 10)
            assert ack.batch_id == 7 and ack.seqs == SeqRanges.of([1, 2])
            assert time.monotonic() - started < 2.0, "the ack waited for the display"
            # The flood past the queue is dropped and counted, never held in memory (one
            # fewer when the board took the first before the rest arrived).
            assert transport.displays_dropped in (9, 10)
        finally:
            await peer.close()
            await transport.close()

    asyncio.run(main())
