"""From an unstuffed frame to wire bytes and back: the checksum and the byte stuffing.

``seal`` is what a sender does last (store the checksum, stuff the body);
``unseal`` undoes the stuffing. The encoder, the poller (which writes a
parameter into a command) and the simulator (which echoes it in a reply) all
use these, so the rules live in one place.
"""

from __future__ import annotations

from edge_agent.decoding.errors import LocalProtocolError
from edge_agent.decoding.profile import ChecksumSpec, Framing
from edge_agent.decoding.vocabulary import resolve

__all__ = ["seal", "unseal"]


def seal(framing: Framing, checksum: ChecksumSpec | None, frame: bytes) -> bytes:
    """``frame`` (unstuffed, markers in place) with its checksum stored, stuffed for the wire."""
    out = bytearray(frame)
    if checksum is not None:
        stored = resolve(checksum.offset, len(out))
        out[stored : stored + checksum.type.size] = checksum.type.pack(checksum.compute(bytes(out)))
    if framing.escape is None:
        return bytes(out)
    head, tail = len(framing.start), len(out) - len(framing.end)
    return bytes(out[:head]) + framing.escape.stuff(bytes(out[head:tail])) + bytes(out[tail:])


def unseal(framing: Framing, wire: bytes) -> bytes:
    """The unstuffed frame behind ``wire`` (one whole frame, markers included)."""
    escape = framing.escape
    if escape is None:
        return wire
    head, tail = len(framing.start), len(wire) - len(framing.end)
    body, out, index = wire[head:tail], bytearray(wire[:head]), 0
    while index < len(body):
        value = body[index]
        if value == escape.byte:
            if index + 1 >= len(body) or body[index + 1] ^ escape.xor not in escape.escaped:
                raise LocalProtocolError(f"invalid escape sequence at byte {head + index}")
            value = body[index + 1] ^ escape.xor
            index += 1
        out.append(value)
        index += 1
    return bytes(out + wire[tail:])
