"""From an unstuffed frame to wire bytes and back: the checksum and the byte stuffing.

``seal`` is what a sender does last (store the checksum, stuff the body);
``unseal`` undoes the stuffing of one whole frame, and ``unstuff`` is the rule
both it and the decoder (which unstuffs a frame as its bytes arrive) follow.
The encoder, the poller (which writes a parameter into a command), the
simulator (which echoes it in a reply) and the decoder all use these, so the
rules live in one place.
"""

from __future__ import annotations

from edge_agent.decoding.errors import LocalProtocolError
from edge_agent.decoding.profile import ChecksumSpec, Escape, Framing

__all__ = ["BadEscapeError", "seal", "unseal", "unstuff"]


class BadEscapeError(LocalProtocolError):
    """Stuffed bytes hold an escape byte followed by a byte that is not an escaped one.

    ``at`` is the index of the escape byte in the data given to ``unstuff``.
    """

    def __init__(self, at: int) -> None:
        self.at = at
        super().__init__(f"invalid escape sequence at byte {at}")


def seal(framing: Framing, checksum: ChecksumSpec | None, frame: bytes) -> bytes:
    """``frame`` (unstuffed, markers in place) with its checksum stored, stuffed for the wire."""
    out = bytearray(frame)
    if checksum is not None:
        stored = checksum.span(len(out))[2]
        out[stored : stored + checksum.type.size] = checksum.type.pack(checksum.compute(bytes(out)))
    if framing.escape is None:
        return bytes(out)
    head, tail = len(framing.start), len(out) - len(framing.end)
    return bytes(out[:head]) + framing.escape.stuff(bytes(out[head:tail])) + bytes(out[tail:])


def unstuff(
    escape: Escape, data: bytes | bytearray, index: int, stop: int, *, out: bytearray, count: int
) -> int:
    """Append the unstuffed bytes of ``data[index:stop]`` to ``out`` until it holds ``count``.

    Returns the index reached: ``stop`` when the data ran out first, or the
    escape byte's index when the data ends between it and the byte it escapes.
    Raises ``BadEscapeError`` on an escape byte followed by a byte not escaped.
    """
    marker, xor, escaped = escape.byte, escape.xor, escape.escaped
    while len(out) < count and index < stop:
        value = data[index]
        if value == marker:
            if index + 1 >= stop:
                return index
            value = data[index + 1] ^ xor
            if value not in escaped:
                raise BadEscapeError(index)
            index += 1
        out.append(value)
        index += 1
    return index


def unseal(framing: Framing, wire: bytes) -> bytes:
    """The unstuffed frame behind ``wire`` (one whole frame, markers included)."""
    escape = framing.escape
    if escape is None:
        return wire
    head, tail = len(framing.start), len(wire) - len(framing.end)
    out = bytearray(wire[:head])
    reached = unstuff(escape, wire, head, tail, out=out, count=len(wire))
    if reached < tail:  # an escape byte with nothing after it in the body
        raise BadEscapeError(reached)
    return bytes(out + wire[tail:])
