"""The frame decoder: bytes in, ``Decoded`` / ``Reply`` / ``Rejected`` / ``Skipped`` out.

Sans-IO in the manner of h11: ``receive_data()`` only buffers, ``next_event()``
does the work and returns one event or a ``Signal``. No I/O, no clock, no
threads; the serial reader owns the port and feeds whatever it read.

How a stream is cut into frames (the whole algorithm, in order):

1. Hunt: find the profile's start marker from the current position. Bytes before
   it are reported as one ``Skipped``. Trailing bytes that could be the first
   part of a marker are kept until more data (or the end) decides.
2. Length: a fixed ``length``, the length field's value plus ``add``, or (text
   lines) up to the first end marker. A total the profile does not allow is
   rejected as soon as it is known, so a corrupted length never makes the
   decoder wait for a frame that will not come.
3. Wait until the whole frame is buffered (``NEED_DATA``), then check, in order:
   end marker, checksum, which frame kind it is (length and ``match`` bytes),
   and each field (text that is a number in its unit, the ``valid`` range).
4. A frame that passes is ``Decoded`` (a reading) or a ``Reply`` (an answer to a
   command) and is consumed. A frame that fails is ``Rejected`` and only its
   first byte is consumed: hunting restarts at the next byte, so a good frame
   that began inside the bad one is still found.
5. After ``receive_data(b"")`` a partial frame is ``Rejected`` as ``truncated``
   and the remaining bytes are hunted through the same way.

Each frame kind is compiled once into a ``_Plan``: one ``struct.Struct`` for all
its binary fields when their layout allows, and the range checks as a list, so
a frame costs a few C calls rather than one Python call per field.

A reading's numbers are floats (booleans stay booleans), whatever their type on
the wire: InfluxDB fixes a field's type at its first write, and a PMS5003's
whole ug/m3 and an SDS011's tenths share the field pm2_5_ugm3.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from edge_agent.decoding.errors import LocalProtocolError
from edge_agent.decoding.events import (
    END_OF_STREAM,
    NEED_DATA,
    Decoded,
    Event,
    Reason,
    Rejected,
    Reply,
    Signal,
    Skipped,
)
from edge_agent.decoding.profile import FieldSpec, FrameSpec, Profile

__all__ = ["DecoderStats", "FrameDecoder"]

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
Fields = dict[str, int | float]
Outcome = tuple[Fields | None, Reason | None, str]  # fields, or why not and the detail


@dataclass(slots=True)
class DecoderStats:
    """What one decoder has seen; the reader publishes these per port.

    Attributes:
        bytes_received: every byte fed through ``receive_data()``.
        frames_ok: ``Decoded`` events.
        replies: ``Reply`` events.
        rejected: ``Rejected`` events by reason code.
        bytes_skipped: bytes reported in ``Skipped`` events.
    """

    bytes_received: int = 0
    frames_ok: int = 0
    replies: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bytes_skipped: int = 0

    @property
    def frames_rejected(self) -> int:
        return sum(self.rejected.values())


class _BadEscapeError(Exception):
    """Internal: a byte-stuffed frame holds an invalid escape sequence."""


class _Plan:
    """One frame kind, compiled: ``decode(frame)`` gives the fields, or why not."""

    __slots__ = ("decode", "frame", "groups", "length", "match")

    def __init__(self, frame: FrameSpec, profile: Profile) -> None:
        self.frame = frame
        self.length = frame.length
        self.match = frame.match
        start = len(profile.framing.start) if profile.framing else 0
        end = len(profile.framing.end) if profile.framing else 0
        if frame.format == "binary":
            self.decode: Callable[[bytes], Outcome] = _binary(frame.fields, frame.is_reading)
        else:
            self.decode = _text(frame, start, end)
        # measurement -> field names, in profile order; the first group is the main one
        groups: dict[str, list[str]] = {}
        for spec in frame.fields:
            groups.setdefault(spec.measurement or profile.measurement, []).append(spec.name)
        self.groups = tuple((m, tuple(names)) for m, names in groups.items())

    def fits(self, frame: bytes) -> bool:
        if self.length is not None and len(frame) != self.length:
            return False
        if self.match is not None:
            offset, data = self.match
            return frame[offset : offset + len(data)] == data
        return True


def _binary(specs: tuple[FieldSpec, ...], as_float: bool) -> Callable[[bytes], Outcome]:
    names = tuple(spec.name for spec in specs)
    bools = {index for index, spec in enumerate(specs) if spec.type.is_bool}
    unpack = _one_struct(specs)
    scalers = [None if _identity(spec) else spec.scaled for spec in specs]
    checked = [
        (index, spec) for index, spec in enumerate(specs)
        if spec.valid is not None or spec.type.is_float
    ]
    plain = all(scaler is None for scaler in scalers)

    def decode(frame: bytes) -> Outcome:
        if unpack is not None:
            values = unpack(frame)
        else:
            values = tuple(spec.type.unpack(frame, spec.offset) for spec in specs)
        if not plain:
            values = tuple(v if s is None else s(v) for v, s in zip(values, scalers, strict=True))
        if as_float:
            if bools:
                values = tuple(v if i in bools else float(v) for i, v in enumerate(values))
            else:
                values = tuple(map(float, values))
        for index, spec in checked:
            problem = spec.check(values[index])
            if problem is not None:
                return None, Reason.OUT_OF_RANGE, problem
        return dict(zip(names, values, strict=True)), None, ""

    return decode


def _identity(spec: FieldSpec) -> bool:
    return spec.scale == 1 and isinstance(spec.scale, int) and not spec.type.is_float


def _one_struct(specs: tuple[FieldSpec, ...]) -> Callable[[bytes], tuple[int | float, ...]] | None:
    """A single ``unpack_from`` for all fields, if they share a byte order and do not overlap."""
    if not specs or any(spec.type.order is not None for spec in specs):
        return None
    orders = {spec.type.format[0] for spec in specs if spec.type.size > 1}
    if len(orders) > 1:
        return None
    ordered = sorted(enumerate(specs), key=lambda item: item[1].offset)
    fmt, position = "", ordered[0][1].offset
    for _, spec in ordered:
        if spec.offset < position:
            return None  # overlapping fields
        fmt += f"{spec.offset - position}x" if spec.offset > position else ""
        fmt += spec.type.format[1:]
        position = spec.offset + spec.type.size
    compiled = struct.Struct((orders.pop() if orders else ">") + fmt)
    first = ordered[0][1].offset
    positions = [index for index, _ in ordered]
    if positions == list(range(len(specs))):
        return lambda frame: compiled.unpack_from(frame, first)
    back = [positions.index(i) for i in range(len(specs))]

    def reorder(frame: bytes) -> tuple[int | float, ...]:
        values = compiled.unpack_from(frame, first)
        return tuple(values[i] for i in back)

    return reorder


def _text(frame: FrameSpec, head: int, tail: int) -> Callable[[bytes], Outcome]:
    specs = frame.fields

    def value(spec: FieldSpec, text: str | None) -> tuple[int | float | None, str | None]:
        label = spec.key if spec.key is not None else f"column {spec.column}"
        if text is None:
            return None, f"{spec.name}: {label} is missing"
        number = text.strip()
        if spec.suffix:
            if not number.endswith(spec.suffix):
                wanted = f"a number then {spec.suffix!r}"
                return None, f"{spec.name}: {label} = {text!r}, expected {wanted}"
            number = number[: -len(spec.suffix)]
        if not _NUMBER.fullmatch(number):
            return None, f"{spec.name}: {label} = {text!r} is not a number"
        result = float(number)
        return (result if spec.scale == 1 else spec.scaled(result)), None

    def decode(data: bytes) -> Outcome:
        body = data[head : len(data) - tail].decode("latin-1")
        items = body.split(frame.separator)
        if frame.format == "key_value":
            found: dict[str, str] = {}
            for item in items:
                key, sign, text = item.partition(frame.assign)
                if sign:
                    found.setdefault(key.strip(), text)
            texts: list[str | None] = [found.get(spec.key or "") for spec in specs]
        else:
            texts = [
                items[spec.column] if spec.column is not None and spec.column < len(items) else None
                for spec in specs
            ]
        fields: Fields = {}
        for spec, found_text in zip(specs, texts, strict=True):
            number, problem = value(spec, found_text)
            if problem is not None or number is None:
                return None, Reason.BAD_VALUE, problem or ""
            problem = spec.check(number)
            if problem is not None:
                return None, Reason.OUT_OF_RANGE, problem
            fields[spec.name] = number
        return fields, None, ""

    return decode


class FrameDecoder:
    """Cuts one sensor's byte stream into frames, as its profile describes.

    The buffer holds at most ``buffer_limit`` undecided bytes (the longest frame
    the profile allows on the wire, see ``MAX_FRAME_BYTES``) plus one read:
    ``receive_data()`` refuses more until ``next_event()`` has drained it.
    """

    def __init__(self, profile: Profile) -> None:
        if profile.framing is None:
            raise LocalProtocolError(
                f"{profile.model} is a {profile.protocol} profile; use edge_agent.modbus for it"
            )
        self.profile = profile
        self.stats = DecoderStats()
        self.buffer_limit = profile.framing.max_raw_length
        self._framing = profile.framing
        self._plans = tuple(_Plan(frame, profile) for frame in profile.frames)
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
        elif isinstance(event, Skipped):
            self.stats.bytes_skipped += event.count
        elif isinstance(event, Rejected):
            self.stats.rejected[str(event.reason)] += 1
        elif isinstance(event, Reply):
            self.stats.replies += 1
        return event

    def events(self) -> Iterator[Event]:
        """Every event available now, until ``NEED_DATA`` or ``END_OF_STREAM``."""
        while not isinstance(event := self.next_event(), Signal):
            yield event

    # -- the algorithm -------------------------------------------------------

    def _next(self) -> Event | Signal:
        buffer, position, start = self._buffer, self._position, self._framing.start
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
        start, tail = self._framing.start, self._buffer[self._position :]
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
        framing = self._framing
        if framing.delimited:
            return self._line_at(position)
        try:
            if framing.length_field is None:
                total = framing.max_length
            else:
                lf = framing.length_field
                header = self._take(position, lf.offset + lf.type.size)
                if header is None:
                    return None
                total = int(lf.type.unpack(header[0], lf.offset)) + lf.add
                if not framing.accepts(total):
                    allowed = (
                        ", ".join(map(str, sorted(framing.lengths)))
                        if framing.lengths is not None
                        else f"{framing.min_length}..{framing.max_length}"
                    )
                    return self._reject(
                        Reason.BAD_LENGTH,
                        header[1],
                        f"length field gives {total} bytes, expected {allowed}",
                    )
            taken = self._take(position, total)
        except _BadEscapeError as exc:
            return self._reject(Reason.BAD_ESCAPE, int(str(exc)), "invalid escape sequence")
        if taken is None:
            return None
        return self._check(*taken)

    def _line_at(self, position: int) -> Event | None:
        framing, buffer = self._framing, self._buffer
        end = buffer.find(framing.end, position + len(framing.start))
        limit = framing.max_length
        if end < 0:
            if len(buffer) - position >= limit:
                return self._reject(
                    Reason.BAD_LENGTH, limit, f"no end marker within {limit} bytes"
                )
            return None
        total = end + len(framing.end) - position
        if total > limit:
            return self._reject(Reason.BAD_LENGTH, total, f"{total} bytes, longer than {limit}")
        return self._check(bytes(buffer[position : position + total]), total)

    def _damage(self, frame: bytes) -> tuple[Reason, str] | None:
        """Why an intact-length frame is damaged (end marker, checksum), if it is."""
        end = self._framing.end
        if end and not frame.endswith(end):
            return Reason.MISSING_END, f"expected {end.hex(' ')}, got {frame[-len(end) :].hex(' ')}"
        checksum = self.profile.checksum
        if checksum is not None:
            computed, stored = checksum.compute(frame), checksum.stored(frame)
            if computed != stored:
                digits = 2 * checksum.type.size
                return Reason.BAD_CHECKSUM, (
                    f"{checksum.algorithm.name} computed 0x{computed:0{digits}X},"
                    f" frame says 0x{stored:0{digits}X}"
                )
        return None

    def _check(self, frame: bytes, raw_length: int) -> Event:
        damage = self._damage(frame)
        if damage is not None:
            return self._reject(damage[0], raw_length, damage[1])
        for plan in self._plans:
            if plan.fits(frame):
                break
        else:
            return self._reject(Reason.UNKNOWN_FRAME, raw_length, "no frame kind matches it")
        fields, reason, detail = plan.decode(frame)
        if fields is None:
            return self._reject(reason or Reason.BAD_VALUE, raw_length, detail)
        raw = bytes(self._buffer[self._position : self._position + raw_length])
        offset = self.offset
        self._position += raw_length
        if not plan.frame.is_reading:
            return Reply(offset, plan.frame.name, fields, raw)
        groups = plan.groups
        if len(groups) == 1:
            return Decoded(groups[0][0], fields, offset, raw, plan.frame.name)
        split = tuple((m, {name: fields[name] for name in names}) for m, names in groups)
        return Decoded(split[0][0], split[0][1], offset, raw, plan.frame.name, split[1:])

    def _take(self, position: int, count: int) -> tuple[bytes, int] | None:
        """The first ``count`` unstuffed bytes of the frame at ``position``, and their raw size.

        ``None`` when the buffer does not hold them yet. Raises ``_BadEscapeError``
        (with the raw size read so far) on an invalid escape sequence.
        """
        buffer, framing = self._buffer, self._framing
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
