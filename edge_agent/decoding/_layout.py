"""Loader, part 2: the byte layout of a frame, once its parts are read (``_frames``).

``settle_lengths`` fills in the lengths a frame may have from its kinds;
``check_layout`` makes sure no two things (markers, length field, checksum,
fields, match bytes) claim one byte of a frame, at every length a frame kind
can have. Every problem raises ``ProfileError`` through ``At``, pointing at the
key that declared the offending part.
"""

from __future__ import annotations

from edge_agent.decoding._frames import CHECKSUM_KEYS, FIELD_KEYS, FRAME_KEYS, FRAMING_KEYS
from edge_agent.decoding._nodes import At
from edge_agent.decoding.profile import ChecksumSpec, FieldSpec, FrameSpec, Framing

__all__ = ["check_layout", "settle_lengths"]

_Region = tuple[str, int, int, At]  # what, first byte, one past the last byte, where declared


def settle_lengths(
    framing_at: At, framing: Framing, frames: tuple[FrameSpec, ...], frames_at: list[At]
) -> Framing:
    """Fill in min/max lengths and the set of lengths from the frame kinds."""
    low, high = framing.min_length, framing.max_length
    declared = [frame.length for frame in frames]
    lengths = None
    if framing.length is not None:
        for frame, at in zip(frames, frames_at, strict=True):
            if frame.length is not None and frame.length != framing.length:
                raise at.keys(FRAME_KEYS, ())["length"].expected(
                    f"{framing.length} (the fixed framing length) or no length"
                )
    elif all(length is not None for length in declared):
        lengths = frozenset(length for length in declared if length is not None)
        low, high = low or min(lengths), high or max(lengths)
    if not high:
        raise framing_at.missing(
            "max_length", f"{FRAMING_KEYS['max_length']}, with a length field or an end marker"
        )
    for frame, at in zip(frames, frames_at, strict=True):
        if frame.length is not None and not low <= frame.length <= high:
            raise at.keys(FRAME_KEYS, ())["length"].expected(
                f"a length within min_length..max_length ({low}..{high})"
            )
    return Framing(
        framing.start, framing.end, framing.length, framing.length_field, low, high,
        framing.escape, lengths,
    )


def check_layout(
    framing_at: At,
    framing: Framing,
    checksum_spec: ChecksumSpec | None,
    checksum_at: At | None,
    *,
    frames: tuple[FrameSpec, ...],
    frame_ats: list[At],
    fields_path: str,
) -> Framing:
    """Check that no two things claim one byte, for each frame kind at each of its lengths.

    Head items (start marker, length field, fields) sit at fixed offsets and tail
    items (negative offsets, the end marker) move with the length, so a layout
    that fits at both bounds fits at every length in between. ``fields_path`` is
    ``fields`` (one frame kind) or ``frames`` (several), for error messages.
    """
    framing_keys = framing_at.keys(FRAMING_KEYS, ())
    ats = {f"framing.{key.removesuffix('_text')}": at for key, at in framing_keys.items()}
    if checksum_at is not None:
        ats.update({f"checksum.{k}": at for k, at in checksum_at.keys(CHECKSUM_KEYS, ()).items()})
    low, high = framing.min_length, framing.max_length
    for frame, frame_at in zip(frames, frame_ats, strict=True):
        if frame.format != "binary":
            continue
        field_items = _field_items(frame_at, fields_path) if frame.fields else []
        for index, item in enumerate(field_items):
            ats[f"fields[{index}]"] = item.keys(FIELD_KEYS, ())["offset"]
        described = frame.match is not None or frame.template is not None
        frame_keys = frame_at.keys(FRAME_KEYS, ()) if fields_path == "frames" and described else {}
        if "match" in frame_keys:
            ats["match"] = frame_keys["match"]
        if frame.length is not None:
            bounds: tuple[int, ...] = (frame.length,)
        elif low == 0:  # a length field without min_length: the shortest length the layout allows
            first = next(
                (n for n in range(1, high + 1)
                 if not _layout_problem(n, framing, checksum_spec, frame, ats)),
                high,
            )
            low = first
            bounds = (low, high)
        else:
            bounds = (low, high)
        for length in bounds:
            problem = _layout_problem(length, framing, checksum_spec, frame, ats)
            if problem is not None:
                raise problem[0].error(problem[1])
        if frame.template is not None and len(frame.template) not in bounds:
            raise frame_keys["template"].expected(
                f"{' or '.join(map(str, sorted(set(bounds))))} bytes (the frame's length)"
            )
    return Framing(
        framing.start, framing.end, framing.length, framing.length_field, low, high,
        framing.escape, framing.lengths,
    )


def _field_items(frame_at: At, fields_path: str) -> list[At]:
    if fields_path == "fields":
        return frame_at.items("fields")
    keys = frame_at.keys(FRAME_KEYS, ())
    return keys["fields"].items("fields") if "fields" in keys else []


def _layout_problem(
    length: int,
    framing: Framing,
    checksum_spec: ChecksumSpec | None,
    frame: FrameSpec,
    ats: dict[str, At],
) -> tuple[At, str] | None:
    """What is wrong with a frame of ``length`` bytes under this layout, if anything."""
    regions: list[_Region] = [("start marker", 0, len(framing.start), ats["framing.start"])]
    if framing.length_field is not None:
        lf = framing.length_field
        at = ats["framing.length_field"]
        regions.append(("length field", lf.offset, lf.offset + lf.type.size, at))
        if not 0 <= length - lf.add <= lf.type.max:
            return at, (
                f"expected add to give a length value {lf.type.name} can hold; a {length}-byte"
                f" frame would need {length - lf.add}"
            )
    stored = 0
    if checksum_spec is not None:
        stored = checksum_spec.span(length)[2]
        regions.append(
            ("checksum", stored, stored + checksum_spec.type.size, ats["checksum.offset"])
        )
    if framing.end:
        regions.append(("end marker", length - len(framing.end), length, ats["framing.end"]))
    fields = {f"field {spec.name}": spec for spec in frame.fields}
    for index, spec in enumerate(frame.fields):
        end = spec.offset + spec.type.size
        regions.append((f"field {spec.name}", spec.offset, end, ats[f"fields[{index}]"]))
    for number, (what, first, stop, at) in enumerate(regions):
        if first < 0 or stop > length:
            return at, f"expected {what} (bytes {first}..{stop - 1}) inside a {length}-byte frame"
        for other, other_first, other_stop, _ in regions[:number]:
            if first < other_stop and other_first < stop and not _share(
                fields.get(what), fields.get(other)
            ):
                return at, (
                    f"expected {what} (bytes {first}..{stop - 1}) not to overlap {other}"
                    f" (bytes {other_first}..{other_stop - 1}) in a {length}-byte frame"
                    + _mask_hint(fields.get(what), fields.get(other))
                )
    if frame.match is not None and frame.match[0] + len(frame.match[1]) > length:
        return ats["match"], f"expected the match bytes inside a {length}-byte frame"
    if checksum_spec is not None:
        first, stop, _ = checksum_spec.span(length)
        size = checksum_spec.type.size
        if not 0 <= first < stop <= length or (first < stored + size and stored < stop):
            return ats["checksum.start"], (
                f"expected a covered range inside a {length}-byte frame that leaves out the"
                f" stored checksum (bytes {stored}..{stored + size - 1}), got [{first}, {stop})"
            )
    return None


def _share(one: FieldSpec | None, other: FieldSpec | None) -> bool:
    """Two fields may share bytes only as disjoint masks of one word (same offset and type)."""
    return (
        one is not None and other is not None
        and one.mask is not None and other.mask is not None
        and one.offset == other.offset and one.type == other.type
        and not one.mask & other.mask
    )


def _mask_hint(one: FieldSpec | None, other: FieldSpec | None) -> str:
    if one is None or other is None or one.mask is None or other.mask is None:
        return ""
    if one.offset != other.offset or one.type != other.type:
        return " (masked fields share a word only at the same offset and type)"
    return f" (masks 0x{one.mask:X} and 0x{other.mask:X} share bits)"
