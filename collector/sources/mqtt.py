"""MQTT source: uplink batches in, end-to-end acks out after the write.

The broker ack (PUBACK) is manual and sent last, after our own ack to the
gateway: a collector killed between write and ack leaves the message unacked
at the broker, and the gateway's resend covers the rest.

With a keyring, each ack is sealed with its gateway's key
(cityedge/uplink/seal.py); without one (insecure), acks go unsealed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter

from cityedge.mqtt import Message, MqttClient, MqttOptions
from cityedge.uplink import Ack, Topics, encode_ack
from cityedge.uplink.seal import KeyRing
from collector.admission import Admission, ingest_checked
from collector.config import MqttSourceConfig
from collector.delivery import WritePipeline
from collector.ingest import Refused

log = logging.getLogger(__name__)


class MqttSource:
    def __init__(self, config: MqttSourceConfig, pipeline: WritePipeline,
                 admission: Admission | None = None,
                 keyring: KeyRing | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.admission = admission  # None: no registry (insecure: true)
        self.keyring = keyring
        self.topics = Topics(config.topic_prefix)
        self.refused: Counter[str] = Counter()
        self.client: MqttClient | None = None

    async def start(self, connect_timeout: float = 10.0) -> None:
        c = self.config
        options = MqttOptions(
            host=c.host,
            port=c.port,
            client_id=c.client_id,
            keepalive=c.keepalive,
            username=c.username,
            password=c.password,
            manual_ack=True,
            receive_maximum=c.receive_maximum,
            incoming_queue=c.receive_maximum + 10,
            subscriptions=[(self.topics.up_subscription(c.share_group or None), 1)],
            tls=c.tls,
        )
        self.client = MqttClient(options)
        self.client.start()
        await self.client.wait_connected(connect_timeout)

    async def run(self) -> None:
        assert self.client is not None
        while True:
            message = await self.client.get()
            self.handle(message)

    def handle(self, message: Message) -> None:
        assert self.client is not None
        gateway = self.topics.gateway_of(message.topic)
        result = ingest_checked(message.payload, gateway, self.admission)
        if isinstance(result, Refused):
            self.refused[result.reason] += 1
            log.warning("refused batch from %s on %s: %s: %s",
                        gateway, message.topic, result.reason, result.detail)
            self.client.ack(message)  # nothing in it can ever be written
            return
        fut = self.pipeline.submit(result)
        client, ack_topic, ack = self.client, self.topics.ack(result.gateway), result.ack

        def written(f: asyncio.Future[None]) -> None:
            if f.cancelled():
                return
            client.publish(ack_topic, self._ack_payload(ack), qos=1)
            client.ack(message)

        fut.add_done_callback(written)

    def _ack_payload(self, ack: Ack) -> bytes:
        """The ack, sealed with its gateway's key if the keyring has one. The collector's
        clock rides on it: gateways without NTP anchor on it."""
        key = None if self.keyring is None else self.keyring.key_for(ack.gateway)
        return encode_ack(dataclasses.replace(ack, time_ns=time.time_ns()), key)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
