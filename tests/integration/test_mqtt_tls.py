"""cityedge.mqtt over TLS: publishes from the asyncio thread while paho's thread reads.

An SSL connection must not be read and written from two threads at once. paho
writes a publish from the calling thread unless its own loop thread runs, and
cityedge.mqtt runs the loop in a thread of its own, so every publish (and
every manual ack) from the asyncio side once raced the network thread's reads:
the TLS records came out garbled, and Mosquitto dropped the connection
("wrong version number", then "Protocol error"). Plain TCP hid it.
"""

from __future__ import annotations

import asyncio

import pytest

from cityedge.mqtt import MqttClient
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration

COUNT = 2000
CHUNK = 100


def test_publishing_while_receiving_keeps_the_tls_connection(secure: SecureFleet) -> None:
    topic = f"{secure.prefix}/collectors/tls-echo"

    async def main() -> tuple[int, int, bool]:
        client = MqttClient(secure.collector_options("c-tls-echo", subscriptions=[(topic, 1)]))
        client.start()
        try:
            # The SUBSCRIBE went out before the connection was reported, and the broker
            # handles a connection's packets in order: every echo comes back.
            await client.wait_connected(10)
            got = 0
            for start in range(0, COUNT, CHUNK):  # within the client's outgoing queue
                for i in range(start, start + CHUNK):
                    assert client.publish(topic, b"%d" % i, qos=1), client.stats
                    await asyncio.sleep(0)  # the echoes arrive while we keep sending
                async with asyncio.timeout(10):
                    while got < start + CHUNK:
                        await client.get()
                        got += 1
            # One connection, never dropped.
            return got, client.stats.connects, client.connected.is_set()
        finally:
            await client.close()

    got, connects, still_connected = asyncio.run(main())
    assert (got, connects, still_connected) == (COUNT, 1, True)
