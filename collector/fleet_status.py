"""Each gateway's status message (online/offline and agent version), from the broker.

The status topics are retained, so subscribing once brings every gateway's
last word; ``StatusWatcher`` keeps listening (the operations page) and
``read_statuses`` listens for a moment (``edge-collector fleet``). What comes
in is untrusted: a topic that names no valid gateway id, or a message that
is not a status, is counted and left out; the book is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, OrderedDict
from collections.abc import Mapping

from cityedge.mqtt import Message, MqttClient, MqttOptions
from cityedge.uplink import Topics
from cityedge.uplink.payload import ID_RE
from cityedge.uplink.status import GatewayStatus, read_status
from collector.alerts.mqtt_feed import BrokerConfig

# Gateways whose status is kept (the fleet is about 3,300); the least recently heard
# is forgotten first.
MAX_GATEWAYS = 20_000
# Seconds ``edge-collector fleet`` listens for the retained status messages by default.
DEFAULT_LISTEN_S = 2.0
# Seconds to wait for the broker before giving up on status messages.
CONNECT_TIMEOUT_S = 5.0


class StatusBook:
    """Status messages in, the newest status per gateway out (sans-IO)."""

    def __init__(self, topics: Topics, max_gateways: int = MAX_GATEWAYS) -> None:
        self.topics = topics
        self.max_gateways = max_gateways
        self.statuses: OrderedDict[str, GatewayStatus] = OrderedDict()
        self.ignored: Counter[str] = Counter()

    def handle(self, topic: str, payload: bytes) -> None:
        gateway = self.topics.gateway_of(topic)
        if gateway is None or topic != self.topics.status(gateway):
            self.ignored["foreign_topic"] += 1
            return
        if not ID_RE.fullmatch(gateway):
            self.ignored["bad_gateway_id"] += 1
            return
        status = read_status(payload, gateway)
        if status is None:
            self.ignored["bad_status"] += 1
            return
        self.statuses[gateway] = status
        self.statuses.move_to_end(gateway)
        while len(self.statuses) > self.max_gateways:
            self.statuses.popitem(last=False)
            self.ignored["forgotten"] += 1

    def snapshot(self) -> Mapping[str, GatewayStatus]:
        return dict(self.statuses)


class StatusWatcher:
    """A subscription to every gateway's status topic, feeding a ``StatusBook``."""

    def __init__(self, config: BrokerConfig, suffix: str = "fleet") -> None:
        self.config = config
        self.book = StatusBook(Topics(config.topic_prefix))
        self.suffix = suffix
        self.client: MqttClient | None = None

    def start(self) -> None:
        c = self.config
        self.client = MqttClient(MqttOptions(
            host=c.host, port=c.port, client_id=f"{c.client_id}-{self.suffix}",
            keepalive=c.keepalive, username=c.username, password=c.password, clean_start=True,
            session_expiry=0, subscriptions=[(self.book.topics.status_subscription(), 1)],
            tls=c.tls))
        self.client.start()

    async def run(self) -> None:
        assert self.client is not None
        while True:
            message: Message = await self.client.get()
            self.book.handle(message.topic, message.payload)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


async def _listen(config: BrokerConfig, seconds: float) -> Mapping[str, GatewayStatus]:
    watcher = StatusWatcher(config, "fleet-cli")
    watcher.start()
    assert watcher.client is not None
    try:
        await watcher.client.wait_connected(CONNECT_TIMEOUT_S)
        task = asyncio.create_task(watcher.run())
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await watcher.close()
    return watcher.book.snapshot()


def read_statuses(config: BrokerConfig, seconds: float = DEFAULT_LISTEN_S
                  ) -> Mapping[str, GatewayStatus]:
    """The retained status of every gateway, heard for ``seconds`` (MqttError: no broker)."""
    return asyncio.run(_listen(config, seconds))
