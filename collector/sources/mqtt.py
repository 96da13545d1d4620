"""MQTT source: uplink batches in, end-to-end acks out after the write.

The broker ack (PUBACK) is manual and sent last, after our own ack to the
gateway: a collector killed between write and ack leaves the message unacked
at the broker, and the gateway's resend covers the rest.

With a keyring, each ack is sealed with its gateway's key
(cityedge/uplink/seal.py); without one (insecure), acks go unsealed.

Every message ends one of three ways, and each is PUBACKed so the broker never
hands it back: written (then acked to the gateway), dead-lettered inside a
written batch (acked too), or refused with a reason and counted (not acked to
the gateway, whose resend brings the readings back later: a refusal loses
nothing). Refusals are logged at most once per reason per ``log_interval``.

The collector announces an MQTT 5 Maximum Packet Size just above the largest
batch it takes (``MAX_PACKET_BYTES``): a message past it is never sent to us
(Mosquitto drops it for this subscriber and logs "Dropping too large outgoing
PUBLISH"), so a gateway cannot make the collector receive and copy hundreds of
megabytes only to refuse them. Those drops are the broker's and counted in its
log; ``message_size_limit`` in mosquitto.conf bounds them for every subscriber.
A message over the payload limit but under the packet limit is refused here as
``too_large`` and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time

from cityedge.logthrottle import DEFAULT_INTERVAL_S
from cityedge.mqtt import DEFAULT_SESSION_EXPIRY_S, Message, MqttClient, MqttOptions
from cityedge.uplink import Topics
from cityedge.uplink.payload import MAX_PAYLOAD_BYTES
from cityedge.uplink.seal import KeyRing
from cityedge.uplink.text import brief
from collector.admission import Admission
from collector.config import MqttSourceConfig
from collector.delivery import WritePipeline
from collector.ingest import Refused
from collector.ratelimit import RateLimiter
from collector.sources.intake import Intake

log = logging.getLogger(__name__)

ACKS_QUEUED_PER_BATCH_IN_FLIGHT = 20
# A PUBLISH around its payload: fixed header (at most 5 bytes), topic (2 + at most
# 65,535, MQTT's own bound), packet id (2), and properties (a gateway sends none;
# 1 KiB of slack). So every payload up to the limit arrives, whatever its topic.
PUBLISH_OVERHEAD_BYTES = 5 + 2 + 65_535 + 2 + 1024
MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + PUBLISH_OVERHEAD_BYTES


class MqttSource:
    def __init__(self, config: MqttSourceConfig, pipeline: WritePipeline, *,
                 admission: Admission | None = None,
                 keyring: KeyRing | None = None,
                 limiter: RateLimiter | None = None,
                 log_interval: float = DEFAULT_INTERVAL_S) -> None:
        self.config = config
        self.pipeline = pipeline
        self.intake = Intake(log, admission=admission, keyring=keyring, limiter=limiter,
                             log_interval=log_interval)
        self.refused = self.intake.refused
        self.log = self.intake.log
        self.topics = Topics(config.topic_prefix)
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
            # A shared-subscription member on a clean session that ends with its connection:
            # killed, it leaves the group at once; on a persistent one it kept its share of
            # the batches for the session's 7 days (bench/shared_members_bench.py). Its
            # unanswered batches are the gateways' to resend. A plain subscriber keeps its
            # session, so batches wait for it while it restarts.
            clean_start=bool(c.share_group),
            session_expiry=0 if c.share_group else DEFAULT_SESSION_EXPIRY_S,
            receive_maximum=c.receive_maximum,
            # Mosquitto 2.0.11 ignores our Receive Maximum once messages queue for us (it
            # was measured sending 1,800 unacked to a subscriber that announced 200), so we
            # bound ourselves: at receive_maximum unanswered batches we stop reading the
            # socket and TCP holds the broker back (cityedge/flowgate.py).
            max_unanswered=c.receive_maximum,
            # One read past the gate brings at most as many packets as paho has messages
            # of its own in flight (max_queued_outgoing): the queue holds them all.
            incoming_queue=c.receive_maximum
            + (ACKS_QUEUED_PER_BATCH_IN_FLIGHT + 1) * c.receive_maximum + 10,
            # Room for the acks of every batch in progress, and more: an ack paho cannot
            # queue is lost (the gateway then resends the whole batch).
            max_queued_outgoing=ACKS_QUEUED_PER_BATCH_IN_FLIGHT * c.receive_maximum,
            subscriptions=[(self.topics.up_subscription(c.share_group or None), 1)],
            tls=c.tls,
            max_packet_size=MAX_PACKET_BYTES,
        )
        self.client = MqttClient(options)
        self.client.start()
        await self.client.wait_connected(connect_timeout)

    async def run(self) -> None:
        assert self.client is not None
        while True:
            message = await self.client.get()
            try:
                self.handle(message)
            except Exception as exc:  # one message must never stop the source
                # A bug, not the gateway's fault; still answered, so the broker does not
                # hand the message back for ever. The gateway resends.
                self.refuse(message, "internal_error", f"{type(exc).__name__}: {exc}",
                            exc_info=exc)

    def handle(self, message: Message) -> None:
        assert self.client is not None
        gateway = self.topics.gateway_of(message.topic)
        # Who may send first (the registry), so unknown ids never get rate-limit state.
        refused = self.intake.refusal(gateway)
        if refused is not None:
            self.refuse(message, refused.reason, refused.detail)
            return
        wait = self.intake.over_limit(gateway, time.monotonic(), len(message.payload))
        if wait:
            self.refuse(message, "rate_limited", f"over the rate limit; {wait:.1f} s to a token")
            return
        result = self.intake.ingest(message.payload, gateway)
        if isinstance(result, Refused):
            self.refuse(message, result.reason, result.detail)
            return
        fut = self.pipeline.submit(result)
        client, ack_topic, ack = self.client, self.topics.ack(result.gateway), result.ack

        def written(f: asyncio.Future[None]) -> None:
            if f.cancelled():  # shutting down: not PUBACKed, so the broker keeps it
                client.answered(message)
                return
            if f.exception() is not None:
                self.refuse(message, "not_written", str(f.exception()))
                return
            client.publish(ack_topic, self.intake.ack_bytes(ack, time.time_ns()), qos=1)
            client.ack(message)

        fut.add_done_callback(written)

    def refuse(self, message: Message, reason: str, detail: str,
               exc_info: BaseException | None = None) -> None:
        """Count, log (throttled) and PUBACK: nothing in it will ever be written as sent."""
        assert self.client is not None
        self.intake.count(reason, f"refused batch on {brief(message.topic, 120)}: {reason}: "
                          f"{detail[:300]}", time.monotonic(), exc_info=exc_info)
        self.client.ack(message)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
