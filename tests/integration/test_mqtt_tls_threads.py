"""``MqttClient`` over TLS, publishing from the asyncio thread while paho's thread reads.

paho writes a publish to the socket from the calling thread when it runs no
loop thread of its own; with TLS that meant two threads on one OpenSSL
connection, and under load the broker dropped the client ("decryption failed
or bad record mac", then a reconnect). The demo's secure run showed it on a
gateway and on the collector. Two clients here each send a flood to the other
while receiving the other's: no connection may drop, and every message
arrives once.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from cityedge.mqtt import MqttClient, MqttOptions
from simulators.secure import COLLECTOR, SecureSetup
from simulators.services import Mosquitto
from tests.conftest import _need

pytestmark = pytest.mark.integration

ROUNDS = 150
BURST = 40  # messages each client sends per round
PAYLOAD = b"x" * 300  # about a batch's size


async def _flood(setup: SecureSetup, broker: Mosquitto) -> tuple[list[int], list[int], int]:
    """(messages each client received, its connection drops, publishes paho refused)."""
    topic = "cityedge/v1/collectors/flood-{}"

    def client(name: str, hears: str) -> MqttClient:
        return MqttClient(MqttOptions(
            "127.0.0.1", broker.collector_port, f"flood-{name}", username=COLLECTOR,
            password=setup.collector_secret, tls=setup.tls(), clean_start=True,
            incoming_queue=2 * ROUNDS * BURST, max_queued_outgoing=2 * ROUNDS * BURST,
            subscriptions=[(topic.format(hears), 1)]))

    a, b = client("a", "b"), client("b", "a")
    for c in (a, b):
        c.start()
    try:
        for c in (a, b):
            await c.wait_connected(10)
        await asyncio.sleep(0.3)  # the subscriptions are in place
        received = [0, 0]

        async def drain(c: MqttClient, i: int) -> None:
            while True:
                await c.get()
                received[i] += 1

        readers = [asyncio.create_task(drain(c, i)) for i, c in enumerate((a, b))]
        refused = 0
        for _ in range(ROUNDS):
            for _ in range(BURST):
                refused += not a.publish(topic.format("a"), PAYLOAD)
                refused += not b.publish(topic.format("b"), PAYLOAD)
            await asyncio.sleep(0.005)
        with contextlib.suppress(TimeoutError):  # what arrived is compared below
            async with asyncio.timeout(30):
                while received != [ROUNDS * BURST] * 2:
                    await asyncio.sleep(0.05)
        for task in readers:
            task.cancel()
        return received, [a.stats.disconnects, b.stats.disconnects], refused
    finally:
        for c in (a, b):
            await c.close()


def test_publishing_while_receiving_over_tls_keeps_the_connection(tmp_path: Path) -> None:
    _need("mosquitto", "mosquitto")
    _need("openssl", "openssl")
    setup = SecureSetup.create(tmp_path / "secure")
    (tmp_path / "mosquitto").mkdir()
    broker = Mosquitto(tmp_path / "mosquitto", security=setup.security()).start()
    try:
        received, drops, refused = asyncio.run(_flood(setup, broker))
    finally:
        broker.stop()
    log = broker.log_path.read_text(errors="replace")
    assert (drops, refused) == ([0, 0], 0), log[-2000:]
    assert "bad record mac" not in log and "Protocol error" not in log, log[-2000:]
    assert received == [ROUNDS * BURST] * 2
