"""The collector announces a Maximum Packet Size: a message far past the payload limit is
never sent to it (real Mosquitto 2.0 drops it for this subscriber), one just past it is
received and refused as too_large, and the connection goes on for the next batch."""

from __future__ import annotations

import asyncio
import json

import pytest

from cityedge.mqtt import MqttClient, MqttOptions
from cityedge.uplink import Topics, decode_ack
from cityedge.uplink.payload import MAX_PAYLOAD_BYTES
from collector.config import MqttSourceConfig
from collector.delivery import WritePipeline
from collector.sources.mqtt import MAX_PACKET_BYTES, MqttSource
from collector.writers.influxdb_v1 import InfluxV1Config, InfluxV1Writer
from simulators.services import InfluxDB, Mosquitto

pytestmark = pytest.mark.integration

GW = "gw-big"


def good_batch() -> bytes:
    return json.dumps({
        "v": 1, "gateway": GW, "epoch": "00112233aabbccdd", "batch": 1, "sent_ns": 1,
        "clock": {"synced": True, "boot": "b", "mono_ns": 1},
        "sensors": {"pm-1": {"model": "pms5003"}},
        "readings": [{"seq": 1, "sensor": "pm-1", "m": "particulate",
                      "t": 1_760_000_000_000_000_000, "boot": "b", "mono": 1,
                      "f": {"pm2_5_ugm3": 1.5}}]}).encode()


def test_an_oversized_message_never_reaches_the_collector(
        mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str) -> None:
    async def main() -> None:
        writer = InfluxV1Writer(InfluxV1Config(url=influxdb.url, database=unique_name))
        await writer.start()
        pipeline = WritePipeline(writer, linger=0)
        written = asyncio.create_task(pipeline.run())
        source = MqttSource(MqttSourceConfig(port=mosquitto.port, client_id=unique_name,
                                             topic_prefix=unique_name, share_group=""),
                            pipeline)
        await source.start()
        reading = asyncio.create_task(source.run())
        topics = Topics(unique_name)
        gateway = MqttClient(MqttOptions("127.0.0.1", mosquitto.port, f"{unique_name}-gw",
                                         clean_start=True,
                                         subscriptions=[(topics.ack(GW), 1)]))
        gateway.start()
        await gateway.wait_connected(10)
        await asyncio.sleep(0.3)
        assert gateway.publish(topics.up(GW), b" " * (MAX_PACKET_BYTES + 1024), qos=1)
        assert gateway.publish(topics.up(GW), b" " * (MAX_PAYLOAD_BYTES + 1), qos=1)
        assert gateway.publish(topics.up(GW), good_batch(), qos=1)
        ack = decode_ack((await asyncio.wait_for(gateway.get(), 20)).payload)
        assert ack.seqs.as_pairs() == [[1, 1]]
        # Only the message just past the payload limit was received (and refused).
        assert source.refused == {"too_large": 1}
        assert source.client is not None
        assert source.client.stats.connects == 1  # not disconnected by the broker
        await gateway.close()
        reading.cancel()
        await source.close()
        await pipeline.close()
        await written
        await writer.close()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert "Dropping too large outgoing PUBLISH for " + unique_name in mosquitto.log_tail(200)
