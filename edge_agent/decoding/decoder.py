"""The frame decoder: bytes in, ``Decoded`` / ``Rejected`` / ``Skipped`` out.

Sans-IO in the manner of h11: ``receive_data()`` only buffers, ``next_event()``
does the work and returns one event or a ``Signal``. No I/O, no clock, no
threads; the serial reader owns the port and feeds whatever it read.

How a stream is cut into frames (the whole algorithm, in order):

1. Hunt: find the profile's start marker from the current position. Bytes before
   it are reported as one ``Skipped``. Trailing bytes that could be the first
   part of a marker are kept until more data (or the end) decides.
2. Length: a fixed ``length``, or the length field's value plus ``add``. A total
   outside ``min_length..max_length`` is rejected as soon as the field arrives,
   so a corrupted length never makes the decoder wait for a frame that will not
   come.
3. Wait until the whole frame is buffered (``NEED_DATA``), then check, in order:
   end marker, checksum, each field's ``valid`` range.
4. A frame that passes is ``Decoded`` and consumed. A frame that fails is
   ``Rejected`` and only its first byte is consumed: hunting restarts at the next
   byte, so a good frame that began inside the bad one is still found.
5. After ``receive_data(b"")`` a partial frame is ``Rejected`` as ``truncated``
   and the remaining bytes are hunted through the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from edge_agent.decoding.errors import LocalProtocolError
from edge_agent.decoding.events import (
    END_OF_STREAM,
    NEED_DATA,
    Decoded,
    Event,
    Reason,
    Rejected,
    Signal,
    Skipped,
)
from edge_agent.decoding.profile import Profile

__all__ = ["DecoderStats", "FrameDecoder"]


@dataclass(slots=True)
class DecoderStats:
    """What one decoder has seen; the reader publishes these per port.

    Attributes:
        bytes_received: every byte fed through ``receive_data()``.
        frames_ok: ``Decoded`` events.
        rejected: ``Rejected`` events by reason code.
        bytes_skipped: bytes reported in ``Skipped`` events.
    """

    bytes_received: int = 0
    frames_ok: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bytes_skipped: int = 0

    @property
    def frames_rejected(self) -> int:
        return sum(self.rejected.values())


class _BadEscapeError(Exception):
    """Internal: a byte-stuffed frame holds an invalid escape sequence."""


class FrameDecoder:
    """Cuts one sensor's byte stream into frames, as its profile describes.

    The buffer holds at most ``buffer_limit`` undecided bytes (the longest frame
    the profile allows on the wire, see ``MAX_FRAME_BYTES``) plus one read:
    ``receive_data()`` refuses more until ``next_event()`` has drained it.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.stats = DecoderStats()
        self.buffer_limit = profile.framing.max_raw_length
        self._buffer = bytearray()
        self._position = 0  # index in _buffer of the first unconsumed byte
        self._base = 0  # absolute stream offset of _buffer[0]
        self._ended = False

    @property
    def offset(self) -> int:
        """Absolute stream offset of the first byte not yet accounted for by an event."""
        return self._base + self._position

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes read from the port; ``b""`` means the stream has ended."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise LocalProtocolError(f"receive_data() takes bytes, got {type(data).__name__}")
        if self._ended:
            if data:
                raise LocalProtocolError("receive_data() after the end of the stream")
            return
        if not data:
            self._ended = True
            return
        if len(self._buffer) - self._position >= self.buffer_limit:
            raise LocalProtocolError(
                f"{len(self._buffer) - self._position} undecided bytes buffered (limit"
                f" {self.buffer_limit}); call next_event() until NEED_DATA before feeding more"
            )
        del self._buffer[: self._position]
        self._base += self._position
        self._position = 0
        self._buffer += data
        self.stats.bytes_received += len(data)

    def next_event(self) -> Event | Signal:
        """The next event, or ``NEED_DATA`` / ``END_OF_STREAM`` when there is none."""
        event = self._next()
        if isinstance(event, Decoded):
            self.stats.frames_ok += 1
        elif isinstance(event, Rejected):
            self.stats.rejected[str(event.reason)] += 1
        elif isinstance(event, Skipped):
            self.stats.bytes_skipped += event.count
        return event

    def events(self) -> Iterator[Event]:
        """Every event available now, until ``NEED_DATA`` or ``END_OF_STREAM``."""
        while not isinstance(event := self.next_event(), Signal):
            yield event

    # -- the algorithm -------------------------------------------------------

    def _next(self) -> Event | Signal:
        buffer, position, start = self._buffer, self._position, self.profile.framing.start
        if position >= len(buffer):
            return END_OF_STREAM if self._ended else NEED_DATA
        found = buffer.find(start, position)
        if found < 0:
            count = len(buffer) - position - (0 if self._ended else self._marker_prefix())
            return self._skip(count) if count > 0 else NEED_DATA
        if found > position:
            return self._skip(found - position)
        event = self._frame_at(found)
        if event is not None:
            return event
        if not self._ended:
            return NEED_DATA
        return self._reject(Reason.TRUNCATED, len(buffer) - found, "the stream ended inside it")

    def _marker_prefix(self) -> int:
        """How many trailing bytes could be the beginning of a start marker."""
        start, tail = self.profile.framing.start, self._buffer[self._position :]
        for size in range(min(len(start) - 1, len(tail)), 0, -1):
            if tail.endswith(start[:size]):
                return size
        return 0

    def _skip(self, count: int) -> Skipped:
        event = Skipped(self.offset, count)
        self._position += count
        return event

    def _reject(self, reason: Reason, raw_length: int, detail: str) -> Rejected:
        raw = bytes(self._buffer[self._position : self._position + raw_length])
        event = Rejected(self.offset, reason, raw, detail)
        self._position += 1  # resync from the byte after this false or broken start
        return event

    def _frame_at(self, position: int) -> Event | None:
        """Decide the frame starting at ``position``; ``None`` if more bytes are needed."""
        framing = self.profile.framing
        try:
            if framing.length_field is None:
                total = framing.max_length
            else:
                lf = framing.length_field
                header = self._take(position, lf.offset + lf.type.size)
                if header is None:
                    return None
                total = int(lf.type.unpack(header[0], lf.offset)) + lf.add
                if not framing.min_length <= total <= framing.max_length:
                    return self._reject(
                        Reason.BAD_LENGTH,
                        header[1],
                        f"length field gives {total} bytes, expected"
                        f" {framing.min_length}..{framing.max_length}",
                    )
            taken = self._take(position, total)
        except _BadEscapeError as exc:
            return self._reject(Reason.BAD_ESCAPE, int(str(exc)), "invalid escape sequence")
        if taken is None:
            return None
        return self._check(*taken)

    def _check(self, frame: bytes, raw_length: int) -> Event:
        profile = self.profile
        end = profile.framing.end
        if end and not frame.endswith(end):
            return self._reject(
                Reason.MISSING_END,
                raw_length,
                f"expected {end.hex(' ')}, got {frame[-len(end) :].hex(' ')}",
            )
        computed, stored = profile.checksum.compute(frame), profile.checksum.stored(frame)
        if computed != stored:
            digits = 2 * profile.checksum.type.size
            return self._reject(
                Reason.BAD_CHECKSUM,
                raw_length,
                f"{profile.checksum.algorithm.name} computed 0x{computed:0{digits}X},"
                f" frame says 0x{stored:0{digits}X}",
            )
        fields: dict[str, int | float] = {}
        for spec in profile.fields:
            value = spec.decode(frame)
            problem = spec.check(value)
            if problem is not None:
                return self._reject(Reason.OUT_OF_RANGE, raw_length, problem)
            fields[spec.name] = value
        raw = bytes(self._buffer[self._position : self._position + raw_length])
        event = Decoded(profile.measurement, fields, self.offset, raw)
        self._position += raw_length
        return event

    def _take(self, position: int, count: int) -> tuple[bytes, int] | None:
        """The first ``count`` unstuffed bytes of the frame at ``position``, and their raw size.

        ``None`` when the buffer does not hold them yet. Raises ``_BadEscapeError``
        (with the raw size read so far) on an invalid escape sequence.
        """
        buffer, framing = self._buffer, self.profile.framing
        escape = framing.escape
        if escape is None:
            if len(buffer) - position < count:
                return None
            return bytes(buffer[position : position + count]), count
        head = len(framing.start)  # markers are sent as they are; the body is stuffed
        frame = bytearray(buffer[position : position + min(head, count)])
        index = position + len(frame)
        while len(frame) < count:
            if index >= len(buffer):
                return None
            value = buffer[index]
            if value == escape.byte:
                if index + 1 >= len(buffer):
                    return None
                value = buffer[index + 1] ^ escape.xor
                if value not in escape.escaped:
                    raise _BadEscapeError(index + 2 - position)
                index += 1
            frame.append(value)
            index += 1
        return bytes(frame), index - position
