"""Build frames from a firmware profile: the decoder's inverse, for simulators and tests.

``encode_frame(profile, values)`` writes the start marker, the length field, the
kind's match bytes, each field (unset fields are 0), the end marker and the
checksum, then byte-stuffs the body if the profile says so. Text kinds become
one line: ``0R2,Ta=23.6C,Ua=14.2P`` and the like. Because it reads only the
profile, a simulator for any sensor model is the profile plus a source of values.

The encoder does not enforce ``valid`` ranges: a simulator must be able to send
the out-of-range frames the decoder is supposed to reject. ``quantize`` gives
the value a field can carry (what the decoder will read back), so a simulator
can log exactly what it sent.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from edge_agent.decoding import FieldSpec, FrameSpec, LocalProtocolError, Profile, seal

__all__ = ["encode_frame", "frame_spec", "quantize"]


def frame_spec(profile: Profile, frame: str | None = None) -> FrameSpec:
    """The named frame kind, or the profile's first reading kind."""
    if frame is None:
        readings = profile.reading_frames
        if not readings:
            raise LocalProtocolError(f"{profile.model} has no reading frames")
        return readings[0]
    try:
        return profile.frame(frame)
    except KeyError:
        raise LocalProtocolError(f"{profile.model} has no frame kind {frame!r}") from None


def quantize(spec: FieldSpec, value: float) -> int | float | bool:
    """``value`` as the field carries it: what decoding the encoded frame gives back."""
    if spec.type.is_bool:
        return bool(value)
    if spec.is_text:
        if spec.decimals is None:
            return float(value)
        return float(f"{value:.{spec.decimals}f}")
    raw = spec.to_raw(value)
    if spec.type.is_float:
        single: float = struct.unpack(">f", struct.pack(">f", raw))[0]
        return spec.from_raw(single)
    if spec.add or not isinstance(spec.scale, int):
        return float(spec.from_raw(int(raw)))
    return int(raw) * spec.scale


def _format(spec: FieldSpec, value: float | None) -> str:
    if value is None:
        raise LocalProtocolError(f"{spec.name}: text fields have no not_available value")
    text = f"{value:.{spec.decimals}f}" if spec.decimals is not None else repr(float(value))
    return text + spec.suffix


def encode_frame(
    profile: Profile,
    values: Mapping[str, float | None],
    *,
    length: int | None = None,
    frame: str | None = None,
) -> bytes:
    """One frame as the sensor would send it.

    Args:
        profile: the sensor model's profile.
        values: field name to value in the field's unit; missing fields are 0;
            ``None`` sends the field's (first) ``not_available`` raw value.
        length: total (unstuffed) frame length, for kinds without a fixed one;
            defaults to the kind's length (or template's, or the profile's
            ``min_length``).
        frame: the frame kind's name; by default the first reading kind.

    Raises:
        LocalProtocolError: an unknown field name, a length the profile does not
            allow, or a value the field's type cannot hold after scaling.
    """
    kind = frame_spec(profile, frame)
    if profile.framing is None:
        raise LocalProtocolError(f"{profile.model} is {profile.protocol}: see simulators.modbus")
    layout = profile.layout_of(kind)
    framing = layout.framing
    unknown = set(values) - {spec.name for spec in kind.fields}
    if unknown:
        raise LocalProtocolError(f"{profile.model} has no field(s) {', '.join(sorted(unknown))}")
    if kind.format != "binary":
        return _encode_text(profile, kind, values)
    total = length or kind.length or (len(kind.template) if kind.template else framing.min_length)
    allowed = (
        {kind.length} if kind.length is not None else set(range(framing.min_length,
                                                              framing.max_length + 1))
    )
    if total not in allowed or not framing.accepts(total):
        low, high = (kind.length, kind.length) if kind.length else (
            framing.min_length, framing.max_length)
        raise LocalProtocolError(
            f"{profile.model} {kind.name} frames are {low}..{high} bytes, not {total}"
        )
    data = bytearray(kind.template if kind.template and len(kind.template) == total else total)
    data[: len(framing.start)] = framing.start
    if framing.length_field is not None:
        lf = framing.length_field
        data[lf.offset : lf.offset + lf.type.size] = lf.type.pack(total - lf.add)
    if kind.match is not None:
        offset, match = kind.match
        data[offset : offset + len(match)] = match
    for spec in kind.fields:
        _put(data, spec, values.get(spec.name, 0))
    if framing.end:
        data[total - len(framing.end) :] = framing.end
    return seal(framing, layout.checksum, bytes(data))


def _put(data: bytearray, spec: FieldSpec, value: float | None) -> None:
    """Store one field's raw number; ``None`` stores its (first) ``not_available`` value."""
    if value is None:
        if not spec.not_available:
            raise LocalProtocolError(f"{spec.name} has no not_available value to send")
        raw: int | float = min(spec.not_available)
    else:
        try:
            raw = spec.to_raw(value)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise LocalProtocolError(f"{spec.name} = {value!r}: {exc}") from None
        if not spec.raw_min <= raw <= spec.raw_max:
            raise LocalProtocolError(
                f"{spec.name} = {value} is {raw} raw, outside"
                f" {spec.type.name} ({spec.raw_min}..{spec.raw_max})"
            )
    if spec.mask is not None:  # masked fields share their word: set only their bits
        raw = spec.place(int(spec.type.unpack(bytes(data), spec.offset)), int(raw))
    data[spec.offset : spec.offset + spec.type.size] = spec.type.pack(raw)


def _encode_text(
    profile: Profile, kind: FrameSpec, values: Mapping[str, float | None]
) -> bytes:
    assert profile.framing is not None
    head = profile.framing.start
    if kind.match is not None and kind.match[0] >= len(head):
        raise LocalProtocolError(f"{kind.name}: text kinds match on their start marker only")
    if kind.format == "key_value":
        items = [
            f"{spec.key}{kind.assign}{_format(spec, values.get(spec.name, 0))}"
            for spec in kind.fields
        ]
    else:
        columns = max(spec.column or 0 for spec in kind.fields) + 1
        cells = [""] * columns
        for spec in kind.fields:
            cells[spec.column or 0] = _format(spec, values.get(spec.name, 0))
        items = cells
    line = head + kind.separator.join(items).encode("latin-1") + profile.framing.end
    if len(line) > profile.framing.max_length:
        raise LocalProtocolError(f"{len(line)}-byte line, longer than max_length")
    return line
