"""Loader, part 1: framing, checksum, frame kinds and their fields, key by key.

Every check raises ``ProfileError`` through ``At`` with file:line, key path and
what was expected. How the parts fit together in a frame (lengths, no byte
claimed twice) is checked afterwards, in ``_layout``.
"""

from __future__ import annotations

import re

import yaml

from edge_agent.decoding._nodes import At
from edge_agent.decoding.checksums import CHECKSUMS
from edge_agent.decoding.profile import (
    DEFAULT_LAYOUT,
    MAX_FRAME_BYTES,
    ChecksumSpec,
    Escape,
    FieldSpec,
    FrameSpec,
    Framing,
    LengthField,
)
from edge_agent.decoding.vocabulary import UNITS, VALUE_TYPES, ValueType

NAME = re.compile(r"[a-z][a-z0-9_]*")
INTEGER_TYPES = {name: t for name, t in VALUE_TYPES.items() if not t.is_float and not t.is_bool}
UNSIGNED_TYPES = {name: t for name, t in INTEGER_TYPES.items() if t.min == 0}
FORMATS = ("binary", "key_value", "csv")
KINDS = ("reading", "reply")

FRAMING_KEYS = {
    "start": 'the start marker as a quoted hex string, e.g. "42 4D"',
    "start_text": 'the start marker as text, e.g. "0R2,"',
    "end": 'the end marker as a quoted hex string, e.g. "AB"',
    "end_text": 'the end marker as text, e.g. "\\r\\n"',
    "length": "the fixed frame length in bytes",
    "length_field": "a mapping: offset, type, add",
    "min_length": "the shortest total frame length accepted",
    "max_length": "the longest total frame length accepted",
    "escape": "a mapping: byte, xor, escaped",
}
_LENGTH_FIELD_KEYS = {
    "offset": "the byte offset of the length field",
    "type": "an unsigned integer type",
    "add": "the constant added to the field's value to give the total frame length",
}
_ESCAPE_KEYS = {
    "byte": 'the escape byte as a quoted hex string, e.g. "7D"',
    "xor": 'the value escaped bytes are XORed with, e.g. "20"',
    "escaped": 'the bytes that must be escaped, e.g. "7E 7D 11 13"',
}
CHECKSUM_KEYS = {
    "algorithm": f"one of {', '.join(CHECKSUMS)}",
    "start": "the first covered byte offset (negative counts from the frame end)",
    "end": "the offset just past the last covered byte (negative counts from the end)",
    "offset": "where the checksum is stored (negative counts from the end)",
    "type": "an unsigned integer type as wide as the algorithm's result",
}
CHECKSUM_NONE = "none"  # the frame carries no checksum: said, never assumed
_UNIT = f"one of {', '.join(UNITS)}"
FIELD_KEYS = {
    "name": "a lower_snake_case name ending in its unit's suffix",
    "offset": "the byte offset in the (unstuffed) frame",
    "type": f"one of {', '.join(VALUE_TYPES)}",
    "scale": "a non-zero multiplier from raw value to unit (default 1)",
    "add": "a number added after scaling, e.g. -40 (default 0)",
    "mask": "the bits of the value to keep, adjacent, e.g. 0x0F00 (shifted down to bit 0)",
    "not_available": "a raw value, or a list of them, meaning the device has no value",
    "unit": _UNIT,
    "valid": "[min, max], inclusive, in the field's unit",
    "measurement": "the InfluxDB measurement for this field (default: the frame's)",
}
TEXT_FIELD_KEYS = {
    "name": FIELD_KEYS["name"],
    "key": "the key before the assign sign in key=value text, e.g. Ta",
    "column": "the 0-based column in a CSV line",
    "suffix": "the unit text the device prints right after the number, e.g. C",
    "decimals": "the digits the device prints after the decimal point",
    "scale": FIELD_KEYS["scale"],
    "add": FIELD_KEYS["add"],
    "unit": _UNIT,
    "valid": FIELD_KEYS["valid"],
    "measurement": FIELD_KEYS["measurement"],
}
FRAME_KEYS = {
    "name": "a lower_snake_case name for this kind of frame",
    "kind": f"one of {', '.join(KINDS)}",
    "match": "a mapping: offset and bytes (or text) that identify this kind",
    "length": "this kind's total frame length in bytes",
    "format": f"one of {', '.join(FORMATS)}",
    "measurement": "the InfluxDB measurement for this kind's fields",
    "template": "hex bytes the simulator starts a frame from (reserved bytes, ids)",
    "separator": "text formats: what separates items, e.g. ','",
    "assign": "key_value format: what separates key and value, e.g. '='",
    "fields": "a list of fields",
    "layout": "the name of the layout (under layouts) its frames are cut by (default: framing)",
}
LAYOUT_KEYS = {
    "framing": "a mapping: start, length or length_field, ... (as the top-level framing)",
    "checksum": f"a mapping: algorithm, start, end, offset, type; or {CHECKSUM_NONE}",
}
_MATCH_KEYS = {
    "offset": "the byte offset of the identifying bytes",
    "bytes": 'the identifying bytes as a quoted hex string, e.g. "C0"',
    "text": "the identifying bytes as text",
}


def _marker(keys: dict[str, At], name: str) -> bytes:
    hex_at, text_at = keys.get(name), keys.get(f"{name}_text")
    if hex_at is not None and text_at is not None:
        raise text_at.error(f"expected either {name} or {name}_text, not both")
    if hex_at is not None:
        return hex_at.hex_bytes(f"the {name} marker")
    if text_at is not None:
        return text_at.text(f"the {name} marker as text").encode("latin-1")
    return b""


def framing(at: At) -> Framing:
    """The framing mapping; min/max lengths are settled later by ``settle_lengths``."""
    keys = at.keys(FRAMING_KEYS, required=())
    start = _marker(keys, "start")
    if not start:
        raise at.missing("start", FRAMING_KEYS["start"])
    end = _marker(keys, "end")
    length = length_field = None
    if "length" in keys and "length_field" in keys:
        raise at.error("expected exactly one of length (fixed size) or length_field")
    low, high = 0, 0
    if "length" in keys:
        length = keys["length"].integer(f"a frame length 1..{MAX_FRAME_BYTES}", 1, MAX_FRAME_BYTES)
        for key in ("min_length", "max_length"):
            if key in keys:
                raise keys[key].error("not allowed with a fixed length; the length implies it")
        low = high = length
    else:
        if "length_field" in keys:
            lf = keys["length_field"].keys(_LENGTH_FIELD_KEYS, required=_LENGTH_FIELD_KEYS)
            length_field = LengthField(
                offset=lf["offset"].integer("a byte offset >= 0", 0),
                type=lf["type"].choice(UNSIGNED_TYPES, f"one of {', '.join(UNSIGNED_TYPES)}"),
                add=lf["add"].integer("an integer"),
            )
        elif not end:
            raise at.error(
                "expected one of length (fixed size), length_field, or an end marker"
                " (frames that end at it)"
            )
        if "max_length" in keys:
            high = keys["max_length"].integer(f"a length 1..{MAX_FRAME_BYTES}", 1, MAX_FRAME_BYTES)
        if "min_length" in keys:
            limit = high or MAX_FRAME_BYTES
            low = keys["min_length"].integer(f"a length 1..{limit} (max_length)", 1, limit)
    escape = _escape(keys["escape"], start, end) if "escape" in keys else None
    if escape is not None and length is None and length_field is None:
        raise keys["escape"].error("not allowed on frames that end at their end marker")
    return Framing(start, end, length, length_field, low, high, escape)


def _escape(at: At, start: bytes, end: bytes) -> Escape:
    keys = at.keys(_ESCAPE_KEYS, required=_ESCAPE_KEYS)
    byte = keys["byte"].hex_bytes("one escape byte")
    xor = keys["xor"].hex_bytes("one xor byte")
    escaped = frozenset(keys["escaped"].hex_bytes("the escaped bytes"))
    if len(byte) != 1 or len(xor) != 1 or xor == b"\x00":
        raise at.error("expected byte and xor to be one byte each, xor non-zero")
    must = {byte[0], start[0], *end[:1]}
    if not must <= escaped or any(b ^ xor[0] in escaped for b in escaped):
        raise keys["escaped"].expected(
            "bytes that include the escape byte and the markers' first bytes, none of"
            " which XORs into another escaped byte"
        )
    return Escape(byte[0], xor[0], escaped)


def checksum_or_none(at: At) -> ChecksumSpec | None:
    """A checksum mapping, or ``none``: a frame without one (explicit, never the default)."""
    if at.value() == CHECKSUM_NONE:
        return None
    if not isinstance(at.node, yaml.MappingNode):
        raise at.expected(f"a mapping with keys {', '.join(CHECKSUM_KEYS)}, or {CHECKSUM_NONE}")
    return checksum(at)


def checksum(at: At) -> ChecksumSpec:
    keys = at.keys(CHECKSUM_KEYS, required=CHECKSUM_KEYS)
    algorithm = keys["algorithm"].choice(CHECKSUMS)
    wanted = {n: t for n, t in UNSIGNED_TYPES.items() if t.size == algorithm.size}
    return ChecksumSpec(
        algorithm=algorithm,
        start=keys["start"].integer("a byte offset"),
        end=keys["end"].integer("a byte offset"),
        offset=keys["offset"].integer("a byte offset"),
        type=keys["type"].choice(wanted, f"one of {', '.join(wanted)} ({algorithm.name} width)"),
    )


def _common_field(keys: dict[str, At]) -> tuple[str, str, int | float, tuple[float, float] | None]:
    """name, unit, scale and valid range: the keys every kind of field shares."""
    name = keys["name"].text("a lower_snake_case name", NAME)
    unit = keys["unit"].choice({u: u for u in UNITS}, FIELD_KEYS["unit"])
    if not name.endswith(UNITS[unit]):
        raise keys["name"].expected(
            f"a name ending in {UNITS[unit]!r} for unit {keys['unit'].value()}"
        )
    scale = keys["scale"].number("a non-zero number") if "scale" in keys else 1
    if scale == 0:
        raise keys["scale"].expected("a non-zero number")
    valid = None
    if "valid" in keys:
        bounds = keys["valid"].items("[min, max]")
        if len(bounds) != 2:
            raise keys["valid"].expected("[min, max]: two numbers")
        low, high = (bound.number("a number") for bound in bounds)
        if low > high:
            raise keys["valid"].expected("[min, max] with min <= max")
        valid = (low, high)
    return name, unit, scale, valid


def added(keys: dict[str, At]) -> int | float:
    return keys["add"].number("a number added after scaling, e.g. -40") if "add" in keys else 0


def raw_rules(keys: dict[str, At], value_type: ValueType) -> tuple[int | None, frozenset[int]]:
    """A field's ``mask`` and ``not_available`` raw values, checked against its type."""
    mask = None
    if "mask" in keys:
        if value_type.is_float or value_type.is_bool or value_type.min < 0:
            raise keys["mask"].error(
                f"a mask needs an unsigned integer type ({', '.join(UNSIGNED_TYPES)}),"
                f" not {value_type.name}"
            )
        top = int(value_type.max)
        mask = keys["mask"].integer(f"a mask within {value_type.name} (1..0x{top:X})", 1, top)
        bits = mask >> ((mask & -mask).bit_length() - 1)
        if bits & (bits + 1):
            raise keys["mask"].expected("a mask of adjacent bits, e.g. 0x0F00 (split fields)")
    missing: frozenset[int] = frozenset()
    if "not_available" in keys:
        at = keys["not_available"]
        if value_type.is_float or value_type.is_bool:
            raise at.error(
                f"not_available needs an integer type (the raw value sent), not {value_type.name}"
            )
        low, high = (0, mask >> ((mask & -mask).bit_length() - 1)) if mask else (
            int(value_type.min), int(value_type.max))
        what = f"raw values {low}..{high} ({'the mask' if mask else value_type.name})"
        items = at.items(f"a raw value or a list of {what}") if isinstance(
            at.node, yaml.SequenceNode) else [at]
        missing = frozenset(item.integer(what, low, high) for item in items)
    return mask, missing


def binary_field(at: At, measurement: str) -> FieldSpec:
    keys = at.keys(FIELD_KEYS, required=("name", "offset", "type", "unit"))
    name, unit, scale, valid = _common_field(keys)
    value_type = keys["type"].choice(VALUE_TYPES, FIELD_KEYS["type"])
    mask, missing = raw_rules(keys, value_type)
    return FieldSpec(
        name=name,
        offset=keys["offset"].integer("a byte offset >= 0", 0),
        type=value_type,
        scale=scale,
        unit=unit,
        valid=valid,
        measurement=_measurement(keys, measurement),
        add=added(keys),
        mask=mask,
        not_available=missing,
    )


def text_field(at: At, measurement: str, frame_format: str) -> FieldSpec:
    keys = at.keys(TEXT_FIELD_KEYS, required=("name", "unit"))
    name, unit, scale, valid = _common_field(keys)
    wanted = "key" if frame_format == "key_value" else "column"
    other = "column" if wanted == "key" else "key"
    if other in keys:
        raise keys[other].error(f"not allowed in {frame_format} frames; give {wanted}")
    if wanted not in keys:
        raise at.missing(wanted, TEXT_FIELD_KEYS[wanted])
    decimals = keys["decimals"].integer("0..6 digits", 0, 6) if "decimals" in keys else None
    return FieldSpec(
        name=name,
        offset=0,
        type=VALUE_TYPES["float32be"],
        scale=scale,
        unit=unit,
        valid=valid,
        measurement=_measurement(keys, measurement),
        key=keys["key"].text("a key") if "key" in keys else None,
        column=keys["column"].integer("a column >= 0", 0) if "column" in keys else None,
        suffix=keys["suffix"].text("the unit text") if "suffix" in keys else "",
        decimals=decimals,
        add=added(keys),
    )


def _measurement(keys: dict[str, At], default: str) -> str:
    if "measurement" in keys:
        return keys["measurement"].text("a lower_snake_case measurement name", NAME)
    return default


def check_names(items: list[At], names: list[str], what: str) -> None:
    seen: set[str] = set()
    for item, name in zip(items, names, strict=True):
        if name in seen:
            raise item.child("name").expected(f"a name not used by another {what}")
        seen.add(name)


def fields_list(at: At, measurement: str, frame_format: str) -> tuple[FieldSpec, ...]:
    items = at.items("a non-empty list of fields")
    if frame_format == "binary":
        specs = tuple(binary_field(item, measurement) for item in items)
    else:
        specs = tuple(text_field(item, measurement, frame_format) for item in items)
    check_names(items, [spec.name for spec in specs], "field")
    return specs


def frame_kinds(
    at: At, measurement: str, layouts: tuple[str, ...] = (DEFAULT_LAYOUT,)
) -> tuple[FrameSpec, ...]:
    """The frame kinds; ``layouts`` are the layout names a kind may give."""
    items = at.items("a non-empty list of frame kinds")
    frames = []
    for item in items:
        keys = item.keys(FRAME_KEYS, required=("name",))
        name = keys["name"].text("a lower_snake_case name", NAME)
        kind = keys["kind"].choice({k: k for k in KINDS}) if "kind" in keys else "reading"
        frame_format = (
            keys["format"].choice({f: f for f in FORMATS}) if "format" in keys else "binary"
        )
        own = _measurement(keys, measurement)
        layout = DEFAULT_LAYOUT
        if "layout" in keys:
            named = [name for name in layouts if name != DEFAULT_LAYOUT]
            if not named:
                raise keys["layout"].error("there are no layouts; declare them under layouts")
            layout = keys["layout"].choice(
                {name: name for name in named}, f"one of {', '.join(named)} (under layouts)"
            )
        fields: tuple[FieldSpec, ...] = ()
        if "fields" in keys:
            fields = fields_list(keys["fields"], own, frame_format)
        elif kind == "reading":
            raise item.missing("fields", "the values a reading carries")
        match = None
        if "match" in keys:
            m = keys["match"].keys(_MATCH_KEYS, required=("offset",))
            if ("bytes" in m) == ("text" in m):
                raise keys["match"].error("expected exactly one of bytes or text")
            data = (
                m["bytes"].hex_bytes("the identifying bytes")
                if "bytes" in m
                else m["text"].text("the identifying text").encode("latin-1")
            )
            match = (m["offset"].integer("a byte offset >= 0", 0), data)
        frames.append(
            FrameSpec(
                name=name,
                kind=kind,
                match=match,
                length=(
                    keys["length"].integer(f"a length 1..{MAX_FRAME_BYTES}", 1, MAX_FRAME_BYTES)
                    if "length" in keys
                    else None
                ),
                format=frame_format,
                fields=fields,
                template=keys["template"].hex_bytes("the template") if "template" in keys else None,
                separator=keys["separator"].text("a separator") if "separator" in keys else ",",
                assign=keys["assign"].text("an assign sign") if "assign" in keys else "=",
                layout=layout,
            )
        )
    check_names(items, [frame.name for frame in frames], "frame kind")
    for index, frame in enumerate(frames):
        later = [f for f in frames[index + 1 :] if f.layout == frame.layout]
        if frame.match is None and frame.length is None and later:
            raise items[index].child("name").error(
                "a frame kind without match or length takes every frame, so it must be the last"
                + (f" of layout {frame.layout}" if frame.layout != DEFAULT_LAYOUT else "")
            )
    return tuple(frames)
