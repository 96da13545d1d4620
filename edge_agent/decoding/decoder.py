"""The frame decoder: bytes in, ``Decoded`` / ``Reply`` / ``FrameRejected`` / ``Skipped`` out.

Sans-IO in the manner of h11: ``receive_data()`` only buffers, ``next_event()``
does the work and returns one event or a ``Signal``. No I/O, no clock, no
threads; the serial reader owns the port and feeds whatever it read.

How a stream is cut into frames (the whole algorithm, in order):

1. Hunt: find the first start marker of any of the profile's layouts from the
   current position (most profiles have one layout; no layout's marker begins
   another's, the loader checks). Bytes before it are reported as one
   ``Skipped``. Trailing bytes that could be the first part of a marker are
   kept until more data (or the end) decides. The rest follows the layout whose
   marker was found: its length rule, its checksum, its frame kinds.
2. Length: a fixed ``length``, the length field's value plus ``add``, or (text
   lines) up to the first end marker. A total the profile does not allow is
   rejected as soon as it is known, so a corrupted length never makes the
   decoder wait for a frame that will not come.
3. Wait until the whole frame is buffered (``NEED_DATA``), then check, in order:
   end marker, checksum, which frame kind it is (length and ``match`` bytes),
   and each field (text that is a number in its unit, the ``valid`` range). A
   field whose raw value says "not available" is left out of the reading
   (``Decoded.absent``); a reading left with no field at all is rejected.
4. A frame that passes is ``Decoded`` (a reading) or a ``Reply`` (an answer to a
   command) and is consumed. A frame that fails is ``FrameRejected`` and only its
   first byte is consumed: hunting restarts at the next byte, so a good frame
   that began inside the bad one is still found.
5. After ``receive_data(b"")`` a partial frame is ``FrameRejected`` as ``truncated``
   and the remaining bytes are hunted through the same way.

Each frame kind is made ready once as a ``Plan`` (``_plans``): its decode
function, the frames it fits and where its values go. Reading values are
floats (booleans stay booleans).
"""

from __future__ import annotations

import struct
from typing import Any

from edge_agent.decoding._plans import Plan
from edge_agent.decoding.errors import LocalProtocolError
from edge_agent.decoding.events import (
    END_OF_STREAM,
    NEED_DATA,
    Decoded,
    Event,
    FieldNotes,
    FrameRejected,
    Reason,
    Reply,
    Signal,
    Skipped,
)
from edge_agent.decoding.profile import Layout, Profile
from edge_agent.decoding.stream import StreamDecoder
from edge_agent.decoding.wire import BadEscapeError, unstuff

__all__ = ["FrameDecoder"]



_Shape = tuple[int, int, int, Any, Any, tuple[Plan, ...]]


class _Cut:
    """One layout made ready: its start marker, length rule, checksum and frame kinds."""

    __slots__ = (
        "allowed", "checksum", "delimited", "end", "framing", "length_at", "plans", "shapes",
        "start", "stuffed",
    )

    def __init__(self, layout: Layout, profile: Profile) -> None:
        self.framing = framing = layout.framing
        self.checksum = layout.checksum
        self.start = framing.start
        self.plans = tuple(
            Plan(frame, profile, framing) for frame in profile.frames if frame.layout == layout.name
        )
        lf = framing.length_field
        self.length_at = (
            None if lf is None or lf.type.order is not None
            else (struct.Struct(lf.type.format).unpack_from, lf.offset, lf.offset + lf.type.size,
                  lf.add)
        )
        self.shapes: dict[int, _Shape] = {}
        self.delimited = framing.delimited
        self.stuffed = framing.escape is not None
        self.allowed = framing.allowed
        self.end = framing.end

    def shape(self, size: int) -> _Shape:
        """For ``size``-byte frames: the checksum's slice, place and functions, the kinds."""
        checksum = self.checksum
        plans = tuple(p for p in self.plans if p.length is None or p.length == size)
        if checksum is None:
            shape: _Shape = (0, 0, 0, None, None, plans)
        else:
            shape = (*checksum.span(size), checksum.algorithm.compute,
                     struct.Struct(checksum.type.format).unpack_from, plans)
        self.shapes[size] = shape
        return shape


class FrameDecoder(StreamDecoder):
    """Cuts one sensor's byte stream into frames, as its profile describes.

    ``buffer_limit`` is the longest frame the profile allows on the wire (see
    ``MAX_FRAME_BYTES``).
    """

    def __init__(self, profile: Profile) -> None:
        if profile.framing is None:
            raise LocalProtocolError(
                f"{profile.model} is a {profile.protocol} profile; use edge_agent.modbus for it"
            )
        layouts = profile.all_layouts
        super().__init__(max(layout.framing.max_raw_length for layout in layouts))
        self.profile = profile
        self._cuts = tuple(_Cut(layout, profile) for layout in layouts)
        self._cut = self._cuts[0] if len(self._cuts) == 1 else None  # the common case

    # -- the algorithm -------------------------------------------------------

    def _next(self) -> Event | Signal:
        buffer, position = self._buffer, self._position
        if position >= len(buffer):
            return END_OF_STREAM if self._ended else NEED_DATA
        cut = self._cut
        if cut is not None:
            found = buffer.find(cut.start, position)
        else:
            found, cut = self._hunt(position)
        if found < 0:
            count = len(buffer) - position - (0 if self._ended else self._marker_prefix())
            return self._skip(count) if count > 0 else NEED_DATA
        if found > position:
            return self._skip(found - position)
        event = self._frame_at(found, cut)
        if event is not None:
            return event
        if not self._ended:
            return NEED_DATA
        return self._reject(Reason.TRUNCATED, len(buffer) - found, "the stream ended inside it")

    def _hunt(self, position: int) -> tuple[int, _Cut]:
        """The first start marker of any layout from ``position`` (-1 if none), and its layout."""
        buffer = self._buffer
        found, chosen = -1, self._cuts[0]
        for cut in self._cuts:
            stop = found + len(cut.start) - 1 if found >= 0 else len(buffer)
            at = buffer.find(cut.start, position, stop)
            if at >= 0:
                found, chosen = at, cut
        return found, chosen

    def _marker_prefix(self) -> int:
        """How many trailing bytes could be the beginning of a start marker."""
        tail = self._buffer[self._position :]
        most = 0
        for cut in self._cuts:
            start = cut.start
            for size in range(min(len(start) - 1, len(tail)), most, -1):
                if tail.endswith(start[:size]):
                    most = size
                    break
        return most

    def _skip(self, count: int) -> Skipped:
        event = Skipped(self.offset, count)
        self._position += count
        return event

    def _reject(self, reason: Reason, raw_length: int, detail: str) -> FrameRejected:
        raw = bytes(self._buffer[self._position : self._position + raw_length])
        event = FrameRejected(self.offset, reason, raw, detail)
        self._position += 1  # resync from the byte after this false or broken start
        return event

    def _frame_at(self, position: int, cut: _Cut) -> Event | None:  # noqa: PLR0911
        """Decide the frame starting at ``position``; ``None`` if more bytes are needed."""
        if cut.delimited:
            return self._line_at(position, cut)
        if not cut.stuffed:  # the common case, without copies: read the buffer in place
            framing = cut.framing
            buffer = self._buffer
            available = len(buffer) - position
            length_at = cut.length_at
            if length_at is None and framing.length_field is None:
                total = framing.max_length
            elif length_at is not None:
                unpack, offset, header, add = length_at
                if available < header:
                    return None
                total = unpack(buffer, position + offset)[0] + add
                if total not in cut.allowed:
                    return self._bad_length(total, header, cut)
            else:
                return self._frame_at_slow(position, cut)
            if available < total:
                return None
            return self._check(bytes(buffer[position : position + total]), total, cut)
        return self._frame_at_slow(position, cut)

    def _bad_length(self, total: int, raw_length: int, cut: _Cut) -> FrameRejected:
        allowed = cut.allowed
        expected = (
            f"{allowed.start}..{allowed.stop - 1}"
            if isinstance(allowed, range)
            else ", ".join(map(str, sorted(allowed)))
        )
        return self._reject(
            Reason.BAD_LENGTH, raw_length, f"length field gives {total} bytes, expected {expected}"
        )

    def _frame_at_slow(self, position: int, cut: _Cut) -> Event | None:
        framing = cut.framing
        try:
            if framing.length_field is None:
                total = framing.max_length
            else:
                lf = framing.length_field
                header = self._take(position, lf.offset + lf.type.size, cut)
                if header is None:
                    return None
                total = int(lf.type.unpack(header[0], lf.offset)) + lf.add
                if total not in cut.allowed:
                    return self._bad_length(total, header[1], cut)
            taken = self._take(position, total, cut)
        except BadEscapeError as exc:  # the raw size read: through the bad pair
            return self._reject(Reason.BAD_ESCAPE, exc.at + 2 - position, "invalid escape sequence")
        if taken is None:
            return None
        return self._check(*taken, cut)

    def _line_at(self, position: int, cut: _Cut) -> Event | None:
        framing, buffer = cut.framing, self._buffer
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
        return self._check(bytes(buffer[position : position + total]), total, cut)

    def _check(self, frame: bytes, raw_length: int, cut: _Cut) -> Event:  # noqa: PLR0911
        shape = cut.shapes.get(len(frame)) or cut.shape(len(frame))
        first, stop, stored_at, compute, unpack, plans = shape
        end = cut.end
        if end and not frame.endswith(end):
            detail = f"expected {end.hex(' ')}, got {frame[-len(end) :].hex(' ')}"
            return self._reject(Reason.MISSING_END, raw_length, detail)
        if compute is not None:
            computed, stored = compute(frame[first:stop]), unpack(frame, stored_at)[0]
            if computed != stored:
                return self._reject(
                    Reason.BAD_CHECKSUM, raw_length, _sums(cut, computed, stored)
                )
        for plan in plans:
            match = plan.match
            if match is None or frame[match[0] : match[0] + len(match[1])] == match[1]:
                break
        else:
            return self._reject(Reason.UNKNOWN_FRAME, raw_length, "no frame kind matches it")
        fields, reason, detail, absent, flagged = plan.decode(frame)
        if fields is None:
            return self._reject(reason or Reason.BAD_VALUE, raw_length, detail)
        if absent and plan.reading and not fields:
            detail = f"every field is not available: {', '.join(absent)}"
            return self._reject(Reason.NOT_AVAILABLE, raw_length, detail)
        position = self._position
        raw = bytes(self._buffer[position : position + raw_length]) if cut.stuffed else frame
        offset = self._base + position
        self._position = position + raw_length
        if not plan.reading:
            return Reply(offset, plan.name, fields, raw)
        if plan.single is not None and not absent and not flagged:  # the common case
            return Decoded(plan.single, fields, offset, raw, plan.name)
        return _decoded(plan, fields, offset, raw, absent=absent, flagged=flagged)

    def _take(self, position: int, count: int, cut: _Cut) -> tuple[bytes, int] | None:
        """The first ``count`` unstuffed bytes of the frame at ``position``, and their raw size.

        ``None`` when the buffer does not hold them yet. Raises ``BadEscapeError``
        on an invalid escape sequence.
        """
        buffer, framing = self._buffer, cut.framing
        escape = framing.escape
        if escape is None:
            if len(buffer) - position < count:
                return None
            return bytes(buffer[position : position + count]), count
        head = len(framing.start)  # markers are sent as they are; the body is stuffed
        frame = bytearray(buffer[position : position + min(head, count)])
        index = unstuff(escape, buffer, position + len(frame), len(buffer), out=frame, count=count)
        if len(frame) < count:
            return None
        return bytes(frame), index - position


def _decoded(
    plan: Plan, fields: dict[str, int | float], offset: int, raw: bytes,
    *, absent: tuple[str, ...], flagged: tuple[str, ...],
) -> Decoded:
    """A reading split by measurement; a measurement whose every field is absent is left out."""
    if not absent:
        split = tuple((m, {name: fields[name] for name in names}) for m, names in plan.groups)
    else:
        split = tuple(
            (m, values) for m, names in plan.groups
            if (values := {name: fields[name] for name in names if name in fields})
        )
    notes = FieldNotes(absent, flagged) if absent or flagged else None
    return Decoded(split[0][0], split[0][1], offset, raw, plan.name, split[1:], notes)


def _sums(cut: _Cut, computed: int, stored: int) -> str:
    checksum = cut.checksum
    assert checksum is not None
    digits = 2 * checksum.type.size
    return (
        f"{checksum.algorithm.name} computed 0x{computed:0{digits}X},"
        f" frame says 0x{stored:0{digits}X}"
    )
