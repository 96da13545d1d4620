"""MQTT downlink notifier: put an alert on every matching terminal's display.

For a fine-dust advisory in 강남구 it publishes one display message to the
``.../down`` topic of each known gateway whose site_kind is bus_stop and
whose district is the alert's (``targets`` and ``same``). The gateways'
persistent MQTT sessions hold the message for a terminal that is offline,
so sending does not wait for acks; acks arrive on ``.../down_ack`` and are
counted (acked, rejected, and unacked after ``ack_timeout``). Any registered
gateway may publish on its own ``down_ack``: an ack that cannot be used is
counted by reason (``bad_ack_<reason>``) and logged at most once per reason per
``LogThrottle`` interval, so a flood of them costs a counter, not the log.

Each message is sealed with its gateway's key from the collector's keyring
(cityedge/uplink/seal.py), so a terminal shows or clears only what a
collector sent. Without a keyring nothing is sealed (insecure); a gateway the
keyring has no key for gets the message unsealed, counted as ``unsealed``
(a terminal with a secret rejects it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cityedge import yamlconfig
from cityedge.counters import by_reason
from cityedge.logthrottle import LogThrottle
from cityedge.mqtt import MqttClient, MqttOptions
from cityedge.tls import TlsConfig
from cityedge.uplink import Topics
from cityedge.uplink.downlink import DownlinkError, decode_ack, encode_display
from cityedge.uplink.text import brief
from cityedge.uplink.topics import DEFAULT_PREFIX
from collector.alerts.errors import DeliveryRejected, Retryable
from collector.alerts.events import AlertEvent
from collector.notifiers.base import NotifierContext, register
from collector.notifiers.mqtt_downlink.message import display_for

# Reasons an unusable ack is counted by one by one (DownlinkError has a handful of
# codes); any more are counted as "other", so the counter stays bounded.
MAX_ACK_REASONS = 16


@dataclass(frozen=True)
class DownlinkConfig:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata={"min": 1, "max": 65535})
    client_id: str = "cityedge-collector-downlink"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive: int = field(default=30, metadata={"min": 5})
    topic_prefix: str | None = None  # default: the collector's own prefix
    targets: dict[str, str] = field(default_factory=lambda: {"site_kind": "bus_stop"})
    same: list[str] = field(default_factory=lambda: ["district"])
    text: str = "{display}"
    ttl: float = field(default=6 * 3600.0, metadata={"min": 0.0})
    ack_timeout: float = field(default=30.0, metadata={"min": 0.1})
    # TLS to the broker, as the collector's mqtt.tls (paths absolute or from the cwd).
    tls: TlsConfig | None = None


class _Values(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


class DownlinkNotifier:
    name = "mqtt_downlink"

    def __init__(self, config: DownlinkConfig) -> None:
        self.config = config
        self.client: MqttClient | None = None
        self.context = NotifierContext()
        self.prefix = config.topic_prefix or DEFAULT_PREFIX
        self.counts = {"sent": 0, "messages": 0, "no_targets": 0, "acked": 0, "rejected": 0,
                       "unacked": 0, "unsealed": 0}
        self.awaiting: dict[tuple[str, str], float] = {}  # (msg id, gateway) -> deadline
        self.acks: list[tuple[str, str, str]] = []  # last acks (id, gateway, result), for tests
        self.bad_acks: Counter[str] = Counter()  # unusable acks, by reason
        self._task: asyncio.Task[None] | None = None
        self._log: LogThrottle | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any], doc: yamlconfig.Located,
                     path: yamlconfig.KeyPath) -> DownlinkNotifier:
        return cls(yamlconfig.bind(DownlinkConfig, options, doc, path))

    def validate(self) -> None:
        try:
            self.config.text.format_map(_Values(display="d", message="m", rule="r"))
        except (ValueError, IndexError, AttributeError) as exc:
            raise ValueError(f"text: bad template: {exc}") from None
        if not self.config.targets and not self.config.same:
            raise ValueError("targets: with no targets and no same, every gateway would get it")

    async def start(self, context: NotifierContext) -> None:
        self.context = context
        self.prefix = self.config.topic_prefix or context.topic_prefix
        c = self.config
        self.client = MqttClient(MqttOptions(
            host=c.host, port=c.port, client_id=c.client_id, keepalive=c.keepalive,
            username=c.username, password=c.password, tls=c.tls,
            subscriptions=[(Topics(self.prefix).down_ack("+"), 1)]))
        self.client.start()
        self._task = asyncio.create_task(self._read_acks(), name="downlink-acks")

    def targets_for(self, event: AlertEvent) -> list[str] | None:
        """Gateway ids to show this event on; None if the alert lacks a `same` tag."""
        match = dict(self.config.targets)
        for tag in self.config.same:
            if tag not in event.scope:
                return None
            match[tag] = event.scope[tag]
        return self.context.gateways(match)

    async def send(self, event: AlertEvent) -> None:
        assert self.client is not None, "start() first"
        targets = self.targets_for(event)
        if targets is None:
            raise DeliveryRejected(
                f"alert scope {dict(event.scope)} lacks {self.config.same}")
        if not targets:
            self.counts["no_targets"] += 1
            return
        values = _Values(event.scope, display=event.display or event.message,
                         message=event.message, rule=event.rule, severity=event.severity)
        ttl = int(self.config.ttl * 1e9) if self.config.ttl else None
        display = display_for(event, self.config.text.format_map(values), ttl)
        deadline = time.monotonic() + self.config.ack_timeout
        for gw in targets:
            payload = encode_display(display, self._seal_key(gw))
            if not self.client.publish(Topics(self.prefix).down(gw), payload, qos=1):
                raise Retryable(f"publish to {gw} refused: {self.client.stats.last_error}")
            self.awaiting[(display.id, gw)] = deadline
            self.counts["messages"] += 1
        self.counts["sent"] += 1
        self._expire()

    def _seal_key(self, gateway: str) -> bytes | None:
        keyring = self.context.keyring
        if keyring is None:
            return None
        key = keyring.key_for(gateway)
        if key is None:
            self.counts["unsealed"] += 1
        return key

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, deadline in self.awaiting.items() if deadline <= now]:
            del self.awaiting[key]
            self.counts["unacked"] += 1

    async def _read_acks(self) -> None:
        assert self.client is not None
        while True:
            message = await self.client.get()
            self.take_ack(message.topic, message.payload, time.monotonic())

    def take_ack(self, topic: str, payload: bytes, now: float) -> None:
        """One message from ``.../<gateway>/down_ack``: counted, logged (throttled)."""
        log = self._throttle()
        try:
            ack = decode_ack(payload)
        except DownlinkError as exc:
            reason = exc.reason
            if reason not in self.bad_acks and len(self.bad_acks) >= MAX_ACK_REASONS:
                reason = "other"
            self.bad_acks[reason] += 1
            log.note(f"bad_ack_{reason}", f"unusable display ack on {brief(topic, 120)}: "
                     f"{brief(str(exc), 300)}", now)
            return
        gateway = topic.split("/")[-2]
        if self.awaiting.pop((ack.id, gateway), None) is None:
            return  # a second ack, or one after the timeout: counted once
        self.counts["rejected" if ack.result == "rejected" else "acked"] += 1
        self.acks = [*self.acks[-99:], (ack.id, gateway, ack.result)]
        if ack.result == "rejected":
            log.note("rejected", f"terminal {brief(gateway)} rejected {brief(ack.id)}: "
                     f"{brief(ack.detail, 300)}", now)

    def _throttle(self) -> LogThrottle:
        if self._log is None or self._log.logger is not self.context.log:
            self._log = LogThrottle(self.context.log)
        return self._log

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.client is not None:
            await self.client.close()

    def stats(self) -> dict[str, int]:
        self._expire()
        return {**self.counts, **by_reason("bad_ack", self.bad_acks),
                "awaiting_ack": len(self.awaiting)}


register("mqtt_downlink", DownlinkNotifier.from_options)
