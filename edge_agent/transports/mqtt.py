"""MQTT uplink: batches to ``.../up`` at QoS 1, acks from ``.../ack``, status with a last will.

Alert displays arrive on ``.../down``; ``downlink`` (set by the agent) turns
each into the ack published on ``.../down_ack``, in arrival order, on a task
of their own: a slow display file write never holds up an ack, and so never
a delete.

With the gateway's seal ``key`` (cityedge/uplink/seal.py) an ack without a
valid seal is dropped here, counted by reason in ``bad_ack_reasons``
(``unsealed``, ``bad_seal``, or what was wrong with its JSON): anyone who can
publish to the ack topic could have sent it. Display messages are checked
against the same key by the agent's board (edge_agent/displays.py), which
answers each with an ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from cityedge.logthrottle import LogThrottle
from cityedge.mqtt import MqttClient, MqttOptions, Will
from cityedge.uplink import Ack, PayloadError, Topics, decode_ack
from cityedge.uplink.status import encode_status
from cityedge.version import package_version
from edge_agent.config import MqttConfig
from edge_agent.transports.base import note_bad_ack

log = logging.getLogger(__name__)

# Display messages waiting for the board. It shows at most 16 (displays.py); a
# backlog past this is a flood: dropped and counted, and the collector, which
# hears no ack for them, counts them unacked.
MAX_PENDING_DISPLAYS = 64


class MqttTransport:
    def __init__(self, config: MqttConfig, gateway: str, *, max_in_flight: int,
                 key: bytes | None = None) -> None:
        self.config = config
        self.gateway = gateway
        self.key = key
        self.topics = Topics(config.topic_prefix)
        self.bad_ack_reasons: Counter[str] = Counter()
        offline = encode_status(gateway, "offline", package_version())
        self._options = MqttOptions(
            host=config.host,
            port=config.port,
            client_id=f"cityedge-gw-{gateway}",
            keepalive=config.keepalive,
            username=config.username,
            password=config.password,
            # The window bounds batches in flight; paho's own queue only needs
            # room for those plus status messages.
            max_queued_outgoing=max_in_flight + 8,
            reconnect_max=config.reconnect_max,
            will=Will(self.topics.status(gateway), offline, qos=1, retain=True),
            subscriptions=[(self.topics.ack(gateway), 1), (self.topics.down(gateway), 1)],
            tls=config.tls,
        )
        self.client: MqttClient | None = None
        self.downlink: Callable[[bytes], Awaitable[bytes | None]] | None = None
        self.display_acks_dropped = 0  # not queued: the collector counts them unacked
        self.displays_dropped = 0  # more than MAX_PENDING_DISPLAYS waiting
        self._displays: asyncio.Queue[bytes] = asyncio.Queue(MAX_PENDING_DISPLAYS)
        self._display_task: asyncio.Task[None] | None = None
        self._log = LogThrottle(log)  # a flood must not fill the log

    async def start(self) -> None:
        self.client = MqttClient(self._options)
        self.client.on_connect = self._announce
        self.client.start()
        self._display_task = asyncio.create_task(self._display_loop(), name="displays")

    def _announce(self) -> None:
        assert self.client is not None
        online = encode_status(self.gateway, "online", package_version())
        self.client.publish(self.topics.status(self.gateway), online, qos=1, retain=True)

    def ready(self) -> bool:
        return self.client is not None and self.client.connected.is_set()

    def problem(self) -> str:
        return "" if self.client is None else self.client.stats.last_error

    def send(self, payload: bytes) -> bool:
        assert self.client is not None
        return self.client.publish(self.topics.up(self.gateway), payload, qos=1)

    async def next_ack(self) -> Ack:
        assert self.client is not None
        while True:
            message = await self.client.get()
            if message.topic == self.topics.down(self.gateway):
                self._queue_display(message.payload)
                continue
            try:
                return decode_ack(message.payload, self.key)
            except PayloadError as exc:
                note_bad_ack(self.bad_ack_reasons, exc.reason, str(exc))

    @property
    def bad_acks(self) -> int:
        return sum(self.bad_ack_reasons.values())

    def health_fields(self) -> dict[str, int]:
        """Display messages past the queue, display acks not queued, and messages paho's
        incoming queue had no room for (an ack among them costs a resend)."""
        return {"displays_dropped": self.displays_dropped,
                "display_acks_dropped": self.display_acks_dropped,
                "uplink_incoming_dropped": self.client.stats.overflowed if self.client else 0}

    def _queue_display(self, payload: bytes) -> None:
        try:
            self._displays.put_nowait(payload)
        except asyncio.QueueFull:
            self.displays_dropped += 1
            self._log.note("displays_dropped", f"{MAX_PENDING_DISPLAYS} display messages"
                           f" waiting; dropped one ({self.displays_dropped} so far)",
                           time.monotonic())

    async def _display_loop(self) -> None:
        while True:
            await self._downlink(await self._displays.get())

    async def _downlink(self, payload: bytes) -> None:
        assert self.client is not None
        if self.downlink is None:
            log.warning("downlink message ignored (nothing handles it): %.200r", payload)
            return
        ack = await self.downlink(payload)
        if ack is None:
            return
        if not self.client.publish(self.topics.down_ack(self.gateway), ack, qos=1):
            self.display_acks_dropped += 1
            self._log.note("display_acks_dropped", f"display ack not queued"
                           f" ({self.client.stats.last_error}); the collector counts it"
                           f" unacked ({self.display_acks_dropped} so far)", time.monotonic())

    async def close(self) -> None:
        if self._display_task is not None:
            self._display_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._display_task
        if self.client is not None:
            if self.client.connected.is_set():
                offline = encode_status(self.gateway, "offline", package_version())
                self.client.publish(self.topics.status(self.gateway), offline, qos=1, retain=True)
            await self.client.close()
