"""What the frame decoder says about the bytes it was fed.

Every byte of the stream ends up in exactly one place: inside the ``raw`` of a
``Decoded`` or a ``Reply``, inside a ``Skipped`` count, or as the first byte of a
``FrameRejected`` (a rejected frame consumes only its first byte, because the
decoder resyncs from the byte after it, so a good frame hidden in the rejected
bytes is still found).
Offsets are absolute: bytes since the decoder was created.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edge_agent.decoding.errors import LocalProtocolError

__all__ = [
    "END_OF_STREAM",
    "NEED_DATA",
    "Decoded",
    "Event",
    "FieldNotes",
    "FrameRejected",
    "Reason",
    "Reply",
    "Signal",
    "Skipped",
]


class Signal(enum.Enum):
    """Sentinels returned by ``next_event()`` when there is no event to give."""

    NEED_DATA = "NEED_DATA"
    """Feed more bytes with ``receive_data()``."""
    END_OF_STREAM = "END_OF_STREAM"
    """``receive_data(b"")`` was called and every event has been returned."""

    def __repr__(self) -> str:
        return self.value


NEED_DATA = Signal.NEED_DATA
END_OF_STREAM = Signal.END_OF_STREAM


class Reason(enum.StrEnum):
    """Why a frame that began with a start marker was rejected (``FrameRejected.reason``)."""

    BAD_LENGTH = "bad_length"
    """The length field gives a total outside the profile's min_length..max_length."""
    BAD_ESCAPE = "bad_escape"
    """A byte-stuffed frame holds an escape byte followed by a byte it may not escape."""
    MISSING_END = "missing_end"
    """The bytes where the end marker belongs are something else."""
    BAD_CHECKSUM = "bad_checksum"
    """The checksum computed over the frame differs from the one stored in it."""
    TRUNCATED = "truncated"
    """The stream ended in the middle of the frame."""
    UNKNOWN_FRAME = "unknown_frame"
    """The frame is intact but matches none of the profile's frame kinds."""
    BAD_VALUE = "bad_value"
    """A text frame lacks a field or a field's text is not a number in the expected unit, or a
    float field holds NaN or infinity. (A value outside ``valid`` is no reason: it is kept and
    flagged, ``Decoded.flagged``.)"""
    MODBUS_EXCEPTION = "modbus_exception"
    """A Modbus slave answered with an exception response (illegal address, busy, ...)."""
    UNEXPECTED_REPLY = "unexpected_reply"
    """An intact reply that answers no request we made (other slave, function or size)."""
    WRONG_DEVICE = "wrong_device"
    """An identity register (model code) says the device is not this profile's model."""
    NOT_AVAILABLE = "not_available"
    """The frame is intact but every field in it holds its ``not_available`` value."""


class Event:
    """Base class of the four things a decoder can report."""

    __slots__ = ()
    offset: int  # every event says where in the stream it begins


@dataclass(frozen=True, slots=True)
class FieldNotes:
    """What a reading says about some of its fields (one value, so a plain reading pays nothing).

    Attributes:
        absent: fields the device sent as "not available" (``not_available``).
        flagged: fields outside their ``valid`` (datasheet) range, kept.
    """

    absent: tuple[str, ...] = ()
    flagged: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decoded(Event):
    """A frame that passed every check.

    Attributes:
        measurement: the InfluxDB measurement of ``fields``.
        fields: field name (unit as suffix) to scaled value, in profile order.
        offset: absolute stream offset of the frame's first byte.
        raw: the frame exactly as received (still byte-stuffed, if the profile stuffs).
        frame: the profile's name for this kind of frame (``data`` by default).
        more: (measurement, fields) for values the profile sends to other
            measurements (a PM sensor that also reports temperature).
        notes: which fields are absent or flagged (``absent``, ``flagged``);
            ``None``, the common case, when none is.
    """

    measurement: str
    fields: dict[str, int | float]
    offset: int
    raw: bytes
    frame: str = "data"
    more: tuple[tuple[str, dict[str, int | float]], ...] = ()
    notes: FieldNotes | None = None

    @property
    def absent(self) -> tuple[str, ...]:
        """Fields the frame said it has no value for: left out of ``fields`` and ``more``."""
        return self.notes.absent if self.notes is not None else ()

    @property
    def flagged(self) -> tuple[str, ...]:
        """Fields outside the profile's ``valid`` (datasheet) range: kept, marked for filtering."""
        return self.notes.flagged if self.notes is not None else ()

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise LocalProtocolError(f"offset must be >= 0, got {self.offset}")

    @property
    def readings(self) -> tuple[tuple[str, dict[str, int | float]], ...]:
        """Every (measurement, fields) this frame holds."""
        return ((self.measurement, self.fields), *self.more)

    @property
    def all_fields(self) -> dict[str, int | float]:
        merged = dict(self.fields)
        for _, fields in self.more:
            merged.update(fields)
        return merged


@dataclass(frozen=True, slots=True)
class Reply(Event):
    """An intact frame that is not a reading: a device's answer to a command.

    Attributes:
        offset: absolute stream offset of the frame's first byte.
        frame: the profile's name for this kind of frame.
        fields: the values it carries (command echoed, state, ...), not stored.
        raw: the frame exactly as received.
    """

    offset: int
    frame: str
    fields: dict[str, int | float]
    raw: bytes

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise LocalProtocolError(f"offset must be >= 0, got {self.offset}")


@dataclass(frozen=True, slots=True)
class FrameRejected(Event):
    """A frame that began with a start marker and then failed a check.

    Attributes:
        offset: absolute stream offset of the start marker.
        reason: a ``Reason`` code, stable for metrics and tests.
        raw: the bytes examined before the verdict (only the first one is consumed).
        detail: a short human-readable explanation, e.g. the two checksums.
    """

    offset: int
    reason: Reason
    raw: bytes
    detail: str = ""

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise LocalProtocolError(f"offset must be >= 0, got {self.offset}")
        if not self.raw:
            raise LocalProtocolError("a rejected frame holds at least its first byte")


@dataclass(frozen=True, slots=True)
class Skipped(Event):
    """Bytes discarded while hunting for a start marker.

    Attributes:
        offset: absolute stream offset of the first discarded byte.
        count: how many bytes were discarded (at least 1).
    """

    offset: int
    count: int

    def __post_init__(self) -> None:
        if self.offset < 0 or self.count < 1:
            raise LocalProtocolError(
                f"need offset >= 0 and count >= 1, got {self.offset}, {self.count}"
            )
