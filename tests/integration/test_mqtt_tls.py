"""cityedge.mqtt over TLS: publishes while receiving, and records holding several packets.

An SSL connection must not be read and written from two threads at once. When
paho ran its network loop in a thread of its own, every publish (and every
manual ack) from the asyncio side once raced that thread's reads: the TLS
records came out garbled, and Mosquitto dropped the connection ("wrong version
number", then "Protocol error"). Plain TCP hid it. paho now runs on the event
loop, so reads and writes take turns; the first test keeps that pinned.

The second pins a TLS detail of running paho from the loop: one TLS record can
hold several MQTT packets, paho reads one packet per call, and the rest waits in
the SSL object, where the loop's readiness check on the socket cannot see it.
"""

from __future__ import annotations

import asyncio

import pytest

from cityedge.mqtt import MqttClient, MqttOptions
from cityedge.tls import server_context
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


# A broker's answer in one write, so in one TLS record: CONNACK (MQTT 5, accepted, no
# properties), then two QoS 0 PUBLISHes on topic "t" without properties.
CONNACK = b"\x20\x03\x00\x00\x00"
PUBLISHES = b"\x30\x05\x00\x01t\x00a" + b"\x30\x05\x00\x01t\x00b"


def test_every_packet_of_one_tls_record_is_read(secure: SecureFleet) -> None:
    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # CONNECT's first byte; the rest does not matter here
        writer.write(CONNACK + PUBLISHES)
        await reader.read()  # until the client leaves

    async def main() -> list[bytes]:
        server = await asyncio.start_server(broker, "127.0.0.1", 0,
                                            ssl=server_context(secure.server_tls()))
        port = server.sockets[0].getsockname()[1]
        # No subscriptions and nothing in flight: paho reads one packet per call.
        client = MqttClient(MqttOptions("127.0.0.1", port, "c-one-record",
                                        tls=secure.tls_config(), keepalive=60))
        client.start()
        try:
            async with asyncio.timeout(5):  # not the next keepalive, 60 s away
                return [(await client.get()).payload for _ in range(2)]
        finally:
            await client.close()
            server.close()

    assert asyncio.run(main()) == [b"a", b"b"]
