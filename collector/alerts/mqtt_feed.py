"""Gateway status (last wills) and, optionally, every uplink batch, from the broker to the runner.

The collector's uplink subscription is shared: with several collectors each
sees only part of the batches. ``observe_uplinks`` adds a plain (non-shared)
subscription so the process that evaluates alerts sees every reading; the
engine's dedupe makes a reading seen twice (from the write path and from
here) count once. Status messages are the retained ``online`` and the last
will ``offline`` on ``{prefix}/{gateway}/status``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from cityedge.mqtt import Message, MqttClient, MqttOptions
from cityedge.tls import TlsConfig
from cityedge.uplink import Topics
from cityedge.uplink.status import decode_status
from collector.admission import Admission, ingest_checked
from collector.ingest import Accepted
from collector.lineprotocol import Point

log = logging.getLogger(__name__)


class BrokerConfig(Protocol):
    """The fields of collector.config.MqttSourceConfig this module reads."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def client_id(self) -> str: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def keepalive(self) -> int: ...
    @property
    def topic_prefix(self) -> str: ...
    @property
    def tls(self) -> TlsConfig | None: ...


class Sink(Protocol):
    def feed(self, points: Sequence[Point], now_ns: int) -> None: ...

    def on_status(self, gateway: str, state: str, now_ns: int) -> None: ...


class MqttFeed:
    def __init__(self, config: BrokerConfig, sink: Sink, *, status: bool, observe_uplinks: bool,
                 clock: Callable[[], int]) -> None:
        self.config, self.sink, self.clock = config, sink, clock
        self.topics = Topics(config.topic_prefix)
        self.subscriptions = []
        if status:
            self.subscriptions.append((self.topics.status_subscription(), 1))
        if observe_uplinks:
            self.subscriptions.append((self.topics.up_subscription(None), 1))
        self.ignored: Counter[str] = Counter()
        self.client: MqttClient | None = None
        # The collector's registry check (set by the service); None: no registry.
        self.admission: Admission | None = None

    async def start(self) -> None:
        c = self.config
        self.client = MqttClient(MqttOptions(
            host=c.host, port=c.port, client_id=f"{c.client_id}-alerts", keepalive=c.keepalive,
            username=c.username, password=c.password, clean_start=True, session_expiry=0,
            subscriptions=self.subscriptions, tls=c.tls))
        self.client.start()

    async def run(self) -> None:
        assert self.client is not None
        while True:
            self.handle(await self.client.get())

    def handle(self, message: Message) -> None:
        gateway = self.topics.gateway_of(message.topic)
        if gateway is None:
            self.ignored["foreign_topic"] += 1
            return
        refused = self.admission.refusal(gateway) if self.admission is not None else None
        if refused is not None:
            self.ignored[refused.reason] += 1
            return
        if message.topic == self.topics.status(gateway):
            state = decode_status(message.payload, gateway)
            if state is None:
                self.ignored["bad_status"] += 1
                return
            self.sink.on_status(gateway, state, self.clock())
        elif message.topic == self.topics.up(gateway):
            result = ingest_checked(message.payload, gateway, self.admission)
            if isinstance(result, Accepted):
                self.sink.feed(result.points, self.clock())
            else:
                self.ignored["refused_batch"] += 1

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
