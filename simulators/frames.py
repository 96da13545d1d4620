"""Build frames from a firmware profile: the decoder's inverse, for simulators and tests.

``encode_frame(profile, values)`` writes the start marker, the length field, each
field (unset fields are 0), the checksum and the end marker, then byte-stuffs the
body if the profile says so. Because it reads only the profile, a simulator for
any sensor model is the profile plus a source of values.

The encoder does not enforce ``valid`` ranges: a simulator must be able to send
the out-of-range frames the decoder is supposed to reject.
"""

from __future__ import annotations

from collections.abc import Mapping

from edge_agent.decoding import LocalProtocolError, Profile
from edge_agent.decoding.profile import resolve

__all__ = ["encode_frame"]


def encode_frame(
    profile: Profile, values: Mapping[str, float], *, length: int | None = None
) -> bytes:
    """One frame as the sensor would send it.

    Args:
        profile: the sensor model's profile.
        values: field name to value in the field's unit; missing fields are 0.
        length: total (unstuffed) frame length, for profiles with a length field;
            defaults to the profile's ``min_length``.

    Raises:
        LocalProtocolError: an unknown field name, a length the profile does not
            allow, or a value the field's type cannot hold after scaling.
    """
    framing = profile.framing
    unknown = set(values) - {spec.name for spec in profile.fields}
    if unknown:
        raise LocalProtocolError(f"{profile.model} has no field(s) {', '.join(sorted(unknown))}")
    total = framing.min_length if length is None else length
    if not framing.min_length <= total <= framing.max_length:
        raise LocalProtocolError(
            f"{profile.model} frames are {framing.min_length}..{framing.max_length} bytes,"
            f" not {total}"
        )
    frame = bytearray(total)
    frame[: len(framing.start)] = framing.start
    if framing.length_field is not None:
        lf = framing.length_field
        frame[lf.offset : lf.offset + lf.type.size] = lf.type.pack(total - lf.add)
    for spec in profile.fields:
        try:
            raw = spec.to_raw(values.get(spec.name, 0))
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise LocalProtocolError(f"{spec.name} = {values.get(spec.name)!r}: {exc}") from None
        if not spec.type.min <= raw <= spec.type.max:
            raise LocalProtocolError(
                f"{spec.name} = {values.get(spec.name)} is {raw} raw, outside"
                f" {spec.type.name} ({spec.type.min}..{spec.type.max})"
            )
        frame[spec.offset : spec.offset + spec.type.size] = spec.type.pack(raw)
    if framing.end:
        frame[total - len(framing.end) :] = framing.end
    checksum = profile.checksum
    stored = resolve(checksum.offset, total)
    frame[stored : stored + checksum.type.size] = checksum.type.pack(checksum.compute(bytes(frame)))
    if framing.escape is None:
        return bytes(frame)
    head, tail = len(framing.start), total - len(framing.end)
    return bytes(frame[:head]) + framing.escape.stuff(bytes(frame[head:tail])) + bytes(frame[tail:])
