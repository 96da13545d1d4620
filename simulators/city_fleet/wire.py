"""The few MQTT 3.1.1 packets a simulated gateway needs, sans-IO: bytes out, packets in.

A gateway connects, subscribes to its ack topic, publishes batches at QoS 1,
and answers the collector's QoS 1 acks with a PUBACK. paho costs a thread or
an event-loop adapter and several objects per client; thousands of gateways
in one process need only these packets (MQTT 3.1.1, OASIS standard, section 3).
``Parser`` takes whatever the socket gave and returns whole packets; a packet
it cannot read raises ``WireError`` (the connection is then closed).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
# The largest packet a gateway takes in: an ack names one batch's seqs (at most
# 5,000 ranges, payload.MAX_ACK_RANGES), well under 1 MiB.
MAX_INCOMING_PACKET = 1024 * 1024
# Remaining length is at most four 7-bit digits (MQTT 3.1.1, 2.2.3).
_MAX_LENGTH_DIGITS = 4


class WireError(ValueError):
    """The broker sent bytes this client cannot read."""


@dataclass(frozen=True, slots=True)
class Packet:
    kind: int
    flags: int
    body: bytes


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        digit, n = n % 128, n // 128
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(s: str) -> bytes:
    data = s.encode()
    return struct.pack("!H", len(data)) + data


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _length(len(body)) + body


def connect(client_id: str, *, keepalive: int, clean: bool, username: str | None = None,
            password: str | None = None,
            will: tuple[str, bytes] | None = None) -> bytes:
    """CONNECT, protocol level 4; a will is sent at QoS 1, retained."""
    flags = 0x02 if clean else 0
    payload = _text(client_id)
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20  # will, QoS 1, retain
        payload += _text(will[0]) + struct.pack("!H", len(will[1])) + will[1]
    if username is not None:
        flags |= 0x80
        payload += _text(username)
    if password is not None:
        flags |= 0x40
        payload += _text(password)
    return _packet(CONNECT, 0, _text("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
                   + payload)


def subscribe(packet_id: int, topic: str, qos: int = 1) -> bytes:
    return _packet(SUBSCRIBE, 0x2, struct.pack("!H", packet_id) + _text(topic) + bytes([qos]))


def publish(topic: str, payload: bytes, *, packet_id: int | None, retain: bool = False,
            dup: bool = False) -> bytes:
    """QoS 1 with a packet id, QoS 0 without."""
    flags = (0x02 if packet_id is not None else 0) | (0x01 if retain else 0) | (0x08 if dup
                                                                                 else 0)
    head = _text(topic) + (struct.pack("!H", packet_id) if packet_id is not None else b"")
    return _packet(PUBLISH, flags, head + payload)


def puback(packet_id: int) -> bytes:
    return _packet(PUBACK, 0, struct.pack("!H", packet_id))


PINGREQ_BYTES = _packet(PINGREQ, 0, b"")
DISCONNECT_BYTES = _packet(DISCONNECT, 0, b"")


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int | None


def read_publish(packet: Packet) -> Publish:
    body = packet.body
    if len(body) < 2:
        raise WireError("PUBLISH too short")
    (n,) = struct.unpack_from("!H", body)
    qos = (packet.flags >> 1) & 3
    try:
        topic = body[2:2 + n].decode()
    except UnicodeDecodeError:
        raise WireError("PUBLISH topic is not UTF-8") from None
    at = 2 + n
    packet_id = None
    if qos:
        if len(body) < at + 2:
            raise WireError("PUBLISH without its packet id")
        (packet_id,) = struct.unpack_from("!H", body, at)
        at += 2
    return Publish(topic, body[at:], qos, packet_id)


def packet_id_of(packet: Packet) -> int:
    if len(packet.body) < 2:
        raise WireError("packet without its packet id")
    return int(struct.unpack_from("!H", packet.body)[0])


class Parser:
    """Feed bytes with ``feed``; returns the whole packets they complete."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        out: list[Packet] = []
        buf = self._buf
        at = 0
        while len(buf) - at >= 2:
            length, mult, i = 0, 1, at + 1
            while True:
                if i >= len(buf):
                    length = -1
                    break
                digit = buf[i]
                length += (digit & 0x7F) * mult
                mult *= 128
                i += 1
                if not digit & 0x80:
                    break
                if i - at - 1 >= _MAX_LENGTH_DIGITS:
                    raise WireError("remaining length longer than four bytes")
            if length > MAX_INCOMING_PACKET:
                raise WireError(f"packet of {length} bytes > {MAX_INCOMING_PACKET}")
            if length < 0 or len(buf) - i < length:
                break
            out.append(Packet(buf[at] >> 4, buf[at] & 0x0F, bytes(buf[i:i + length])))
            at = i + length
        if at:
            del buf[:at]
        return out
