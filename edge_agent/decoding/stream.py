"""The sans-IO contract every decoder keeps: buffer bytes, hand out events, count them.

``FrameDecoder`` (framed profiles) and ``ModbusDecoder`` (Modbus RTU) differ
only in how ``_next()`` finds the next event in ``_buffer`` from
``_position``; the buffer bound, the end of the stream and the statistics are
this one class's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from edge_agent.decoding.errors import LocalProtocolError
from edge_agent.decoding.events import Decoded, Event, FrameRejected, Reply, Signal, Skipped
from edge_agent.decoding.profile import Profile

__all__ = ["DecoderStats", "StreamDecoder"]


@dataclass(slots=True)
class DecoderStats:
    """What one decoder has seen; the reader publishes these per port.

    Attributes:
        bytes_received: every byte fed through ``receive_data()``.
        frames_ok: ``Decoded`` events.
        replies: ``Reply`` events.
        rejected: ``FrameRejected`` events by reason code.
        bytes_skipped: bytes reported in ``Skipped`` events.
        fields_not_available: fields left out of readings because the device
            sent their ``not_available`` value.
        readings_out_of_range: ``Decoded`` events with a field outside its
            ``valid`` (datasheet) range, kept and flagged.
    """

    bytes_received: int = 0
    frames_ok: int = 0
    replies: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bytes_skipped: int = 0
    fields_not_available: int = 0
    readings_out_of_range: int = 0

    @property
    def frames_rejected(self) -> int:
        return sum(self.rejected.values())

    def count(self, event: Event | Signal) -> None:
        """The one place an event is counted (``next_event`` and ``events`` both call it)."""
        if isinstance(event, Decoded):
            self.frames_ok += 1
            notes = event.notes
            if notes is not None:
                self.fields_not_available += len(notes.absent)
                self.readings_out_of_range += bool(notes.flagged)
        elif isinstance(event, Skipped):
            self.bytes_skipped += event.count
        elif isinstance(event, FrameRejected):
            self.rejected[str(event.reason)] += 1
        elif isinstance(event, Reply):
            self.replies += 1


class StreamDecoder:
    """Holds at most ``buffer_limit`` undecided bytes plus one read: ``receive_data()``
    refuses more until ``next_event()`` has drained it."""

    profile: Profile

    def __init__(self, buffer_limit: int) -> None:
        self.stats = DecoderStats()
        self.buffer_limit = buffer_limit
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
        self.stats.count(event)
        return event

    def events(self) -> Iterator[Event]:
        """Every event available now, until ``NEED_DATA`` or ``END_OF_STREAM``."""
        while not isinstance(event := self.next_event(), Signal):
            yield event

    def _next(self) -> Event | Signal:
        raise NotImplementedError
