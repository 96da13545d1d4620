"""One gateway's MQTT connection: an asyncio protocol over the wire codec (wire.py).

Connects, subscribes to the gateway's ack topic at QoS 1, publishes batches at
QoS 1 and answers every incoming QoS 1 message with a PUBACK. The session is
persistent (clean session off, the client id fixed per gateway), as the
agent's is, so acks published while a gateway is away wait for it at the
broker. A broker-level PUBACK is not waited for: the end-to-end ack is what
deletes, and what is not acked is resent after the ack timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cityedge.uplink.status import encode_status
from simulators.city_fleet import wire

KEEPALIVE_S = 60


class Link(asyncio.Protocol):
    """``on_message(topic, payload)`` gets each incoming publish; ``on_ready()`` fires when
    subscribed; ``on_lost()`` when the connection is gone."""

    def __init__(self, client_id: str, gateway: str, *, ack_topic: str, status_topic: str,
                 on_message: Callable[[str, bytes], None], on_ready: Callable[[], None],
                 on_lost: Callable[[], None], username: str | None = None,
                 password: str | None = None) -> None:
        self.client_id, self.ack_topic, self.status_topic = client_id, ack_topic, status_topic
        self.gateway = gateway
        self.on_message, self.on_ready, self.on_lost = on_message, on_ready, on_lost
        self.username, self.password = username, password
        self.transport: asyncio.Transport | None = None
        self.ready = False
        self.protocol_errors = 0
        self._parser = wire.Parser()
        self._next_id = 0

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        will = (self.status_topic, encode_status(self.gateway, "offline"))
        transport.write(wire.connect(self.client_id, keepalive=KEEPALIVE_S, clean=False,
                                     username=self.username, password=self.password, will=will))

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._parser.feed(data)
        except wire.WireError:
            self.protocol_errors += 1
            self.close()
            return
        for p in packets:
            self._handle(p)

    def _handle(self, p: wire.Packet) -> None:
        assert self.transport is not None
        if p.kind == wire.PUBLISH:
            msg = wire.read_publish(p)
            if msg.packet_id is not None:
                self.transport.write(wire.puback(msg.packet_id))
            self.on_message(msg.topic, msg.payload)
        elif p.kind == wire.CONNACK:
            if len(p.body) < 2 or p.body[1] != 0:
                self.protocol_errors += 1
                self.close()
                return
            self.transport.write(wire.subscribe(self._packet_id(), self.ack_topic, 1))
        elif p.kind == wire.SUBACK:
            self.ready = True
            self.transport.write(wire.publish(self.status_topic,
                                              encode_status(self.gateway, "online"),
                                              packet_id=self._packet_id(), retain=True))
            self.on_ready()

    def publish(self, topic: str, payload: bytes) -> bool:
        if not self.ready or self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(wire.publish(topic, payload, packet_id=self._packet_id()))
        return True

    def ping(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(wire.PINGREQ_BYTES)

    def close(self, *, graceful: bool = True) -> None:
        """``graceful``: DISCONNECT first (no last will); otherwise the link just drops."""
        if self.transport is not None and not self.transport.is_closing():
            if graceful:
                self.transport.write(wire.DISCONNECT_BYTES)
                self.transport.close()
            else:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        was = self.transport is not None
        self.ready = False
        self.transport = None
        if was:
            self.on_lost()
