"""Load firmware profiles from YAML, checking every key before any port opens.

An installer or a new engineer writes these files by hand, so every mistake is
reported as ``file:line: key.path: expected ..., got ...``. The YAML is composed
(not just loaded) to keep each node's line; duplicate keys and unknown keys are
errors, and so is any layout where two things claim the same frame byte.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from edge_agent.decoding._nodes import At
from edge_agent.decoding.checksums import CHECKSUMS
from edge_agent.decoding.errors import ProfileError
from edge_agent.decoding.profile import (
    MAX_FRAME_BYTES,
    UNITS,
    VALUE_TYPES,
    ChecksumSpec,
    Escape,
    FieldSpec,
    Framing,
    LengthField,
    Profile,
    SerialSettings,
    resolve,
)

__all__ = ["load_profile", "load_profiles", "parse_profile"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_MODEL = re.compile(r"[a-z0-9][a-z0-9_]*")
_PARITIES = ("none", "even", "odd", "mark", "space")
_INTEGER_TYPES = {name: t for name, t in VALUE_TYPES.items() if not t.is_float}
_UNSIGNED_TYPES = {name: t for name, t in _INTEGER_TYPES.items() if t.min == 0}

# key -> what is expected there (used for "missing" and "unknown key" messages)
_TOP_KEYS = {
    "model": "the model name, equal to the file name without .yaml",
    "vendor": "the manufacturer's name",
    "datasheet": "the datasheet title and version",
    "measurement": "the InfluxDB measurement name",
    "serial": "a mapping: baudrate, bytesize, parity, stopbits",
    "framing": "a mapping: start, length or length_field, ...",
    "checksum": "a mapping: algorithm, start, end, offset, type",
    "fields": "a list of fields",
}
_SERIAL_KEYS = {
    "baudrate": "bits per second, e.g. 9600",
    "bytesize": "data bits: 5, 6, 7 or 8",
    "parity": f"one of {', '.join(_PARITIES)}",
    "stopbits": "1, 1.5 or 2",
}
_FRAMING_KEYS = {
    "start": 'the start marker as a quoted hex string, e.g. "42 4D"',
    "end": 'the end marker as a quoted hex string, e.g. "AB"',
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
_CHECKSUM_KEYS = {
    "algorithm": f"one of {', '.join(CHECKSUMS)}",
    "start": "the first covered byte offset (negative counts from the frame end)",
    "end": "the offset just past the last covered byte (negative counts from the end)",
    "offset": "where the checksum is stored (negative counts from the end)",
    "type": "an unsigned integer type as wide as the algorithm's result",
}
_FIELD_KEYS = {
    "name": "a lower_snake_case name ending in its unit's suffix",
    "offset": "the byte offset in the (unstuffed) frame",
    "type": f"one of {', '.join(VALUE_TYPES)}",
    "scale": "a non-zero multiplier from raw value to unit (default 1)",
    "unit": f"one of {', '.join(UNITS)}",
    "valid": "[min, max], inclusive, in the field's unit",
}


def load_profile(path: str | Path) -> Profile:
    """Read and check one profile; its ``model`` must equal the file name's stem."""
    path = Path(path)
    return parse_profile(path.read_text(encoding="utf-8"), str(path), model=path.stem)


def load_profiles(directory: str | Path) -> dict[str, Profile]:
    """Every ``*.yaml`` profile in ``directory``, keyed by model."""
    return {p.model: p for p in map(load_profile, sorted(Path(directory).glob("*.yaml")))}


def parse_profile(text: str, source: str = "<string>", model: str | None = None) -> Profile:
    """Check a profile given as YAML text; ``source`` names it in error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ProfileError(source, line, "", f"not valid YAML: {exc.problem}") from None
    if node is None:
        raise ProfileError(source, 1, "", "expected a mapping of profile keys, got an empty file")
    top = At(source, node, "").keys(_TOP_KEYS, required=_TOP_KEYS)
    name = top["model"].text("a lower_snake_case model name", _MODEL)
    if model is not None and name != model:
        raise top["model"].expected(f"{model!r} (the file name without .yaml)")
    framing = _framing(top["framing"])
    checksum = _checksum(top["checksum"])
    fields = tuple(_field(at) for at in top["fields"].items("a non-empty list of fields"))
    _check_names(top["fields"], fields)
    framing = _check_layout(top["framing"], framing, checksum, fields, top)
    return Profile(
        model=name,
        vendor=top["vendor"].text("the vendor's name"),
        datasheet=top["datasheet"].text("the datasheet title and version"),
        measurement=top["measurement"].text("a lower_snake_case measurement name", _NAME),
        serial=_serial(top["serial"]),
        framing=framing,
        checksum=checksum,
        fields=fields,
        source=source,
    )


def _serial(at: At) -> SerialSettings:
    keys = at.keys(_SERIAL_KEYS, required=_SERIAL_KEYS)
    stopbits = keys["stopbits"].number(_SERIAL_KEYS["stopbits"])
    if stopbits not in (1, 1.5, 2):
        raise keys["stopbits"].expected(_SERIAL_KEYS["stopbits"])
    return SerialSettings(
        baudrate=keys["baudrate"].integer("a positive baud rate, e.g. 9600", 1, 4_000_000),
        bytesize=keys["bytesize"].integer(_SERIAL_KEYS["bytesize"], 5, 8),
        parity=keys["parity"].choice({p: p for p in _PARITIES}),
        stopbits=stopbits,
    )


def _framing(at: At) -> Framing:
    keys = at.keys(_FRAMING_KEYS, required=("start",))
    start = keys["start"].hex_bytes("the start marker")
    end = keys["end"].hex_bytes("the end marker") if "end" in keys else b""
    length = length_field = None
    if ("length" in keys) == ("length_field" in keys):
        raise at.error("expected exactly one of length (fixed size) or length_field")
    if "length" in keys:
        length = keys["length"].integer(f"a frame length 1..{MAX_FRAME_BYTES}", 1, MAX_FRAME_BYTES)
        for key in ("min_length", "max_length"):
            if key in keys:
                raise keys[key].error("not allowed with a fixed length; the length implies it")
        low = high = length
    else:
        lf = keys["length_field"].keys(_LENGTH_FIELD_KEYS, required=_LENGTH_FIELD_KEYS)
        length_field = LengthField(
            offset=lf["offset"].integer("a byte offset >= 0", 0),
            type=lf["type"].choice(_UNSIGNED_TYPES, f"one of {', '.join(_UNSIGNED_TYPES)}"),
            add=lf["add"].integer("an integer"),
        )
        if "max_length" not in keys:
            raise at.missing("max_length", f"{_FRAMING_KEYS['max_length']}, with a length field")
        high = keys["max_length"].integer(f"a length 1..{MAX_FRAME_BYTES}", 1, MAX_FRAME_BYTES)
        low = 0  # filled in by _check_layout
        if "min_length" in keys:
            low = keys["min_length"].integer(f"a length 1..{high} (max_length)", 1, high)
    escape = _escape(keys["escape"], start, end) if "escape" in keys else None
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


def _checksum(at: At) -> ChecksumSpec:
    keys = at.keys(_CHECKSUM_KEYS, required=_CHECKSUM_KEYS)
    algorithm = keys["algorithm"].choice(CHECKSUMS)
    wanted = {n: t for n, t in _UNSIGNED_TYPES.items() if t.size == algorithm.size}
    return ChecksumSpec(
        algorithm=algorithm,
        start=keys["start"].integer("a byte offset"),
        end=keys["end"].integer("a byte offset"),
        offset=keys["offset"].integer("a byte offset"),
        type=keys["type"].choice(wanted, f"one of {', '.join(wanted)} ({algorithm.name} width)"),
    )


def _field(at: At) -> FieldSpec:
    keys = at.keys(_FIELD_KEYS, required=("name", "offset", "type", "unit"))
    name = keys["name"].text("a lower_snake_case name", _NAME)
    unit = keys["unit"].choice(UNITS, _FIELD_KEYS["unit"])
    if not name.endswith(unit):
        raise keys["name"].expected(f"a name ending in {unit!r} for unit {keys['unit'].value()}")
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
    return FieldSpec(
        name=name,
        offset=keys["offset"].integer("a byte offset >= 0", 0),
        type=keys["type"].choice(VALUE_TYPES, _FIELD_KEYS["type"]),
        scale=scale,
        unit=unit,
        valid=valid,
    )


def _check_names(at: At, fields: tuple[FieldSpec, ...]) -> None:
    seen: set[str] = set()
    for index, spec in enumerate(fields):
        if spec.name in seen:
            item = at.items("fields")[index]
            raise item.keys(_FIELD_KEYS, ())["name"].expected("a name not used by another field")
        seen.add(spec.name)


_Region = tuple[str, int, int, At]  # what, first byte, one past the last byte, where declared


def _check_layout(
    framing_at: At,
    framing: Framing,
    checksum: ChecksumSpec,
    fields: tuple[FieldSpec, ...],
    top: dict[str, At],
) -> Framing:
    """Check that no two things claim one byte, at the shortest and the longest frame.

    Head items (start marker, length field, fields) sit at fixed offsets and tail
    items (negative offsets, the end marker) move with the length, so a layout
    that fits at both bounds fits at every length in between.
    """
    framing_keys = framing_at.keys(_FRAMING_KEYS, ())
    checksum_keys = top["checksum"].keys(_CHECKSUM_KEYS, ())
    ats = {f"framing.{key}": at for key, at in framing_keys.items()}
    ats.update({f"checksum.{key}": at for key, at in checksum_keys.items()})
    for index, item in enumerate(top["fields"].items("fields")):
        ats[f"fields[{index}]"] = item.keys(_FIELD_KEYS, ())["offset"]
    low, high = framing.min_length, framing.max_length
    if low == 0:  # a length field without min_length: the shortest frame the layout allows
        low = next(
            (
                n
                for n in range(1, high + 1)
                if not _layout_problem(n, framing, checksum, fields, ats)
            ),
            high,
        )
    for length in (low, high):
        problem = _layout_problem(length, framing, checksum, fields, ats)
        if problem is not None:
            raise problem[0].error(problem[1])
    return Framing(
        framing.start, framing.end, framing.length, framing.length_field, low, high, framing.escape
    )


def _layout_problem(
    length: int,
    framing: Framing,
    checksum: ChecksumSpec,
    fields: tuple[FieldSpec, ...],
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
    stored = resolve(checksum.offset, length)
    regions.append(("checksum", stored, stored + checksum.type.size, ats["checksum.offset"]))
    if framing.end:
        regions.append(("end marker", length - len(framing.end), length, ats["framing.end"]))
    for index, spec in enumerate(fields):
        end = spec.offset + spec.type.size
        regions.append((f"field {spec.name}", spec.offset, end, ats[f"fields[{index}]"]))
    for number, (what, first, stop, at) in enumerate(regions):
        if first < 0 or stop > length:
            return at, f"expected {what} (bytes {first}..{stop - 1}) inside a {length}-byte frame"
        for other, other_first, other_stop, _ in regions[:number]:
            both_fields = what.startswith("field") and other.startswith("field")
            if first < other_stop and other_first < stop and not both_fields:
                return at, (
                    f"expected {what} (bytes {first}..{stop - 1}) not to overlap {other}"
                    f" (bytes {other_first}..{other_stop - 1}) in a {length}-byte frame"
                )
    first, stop = resolve(checksum.start, length), resolve(checksum.end, length)
    if not 0 <= first < stop <= length or (first < stored + checksum.type.size and stored < stop):
        return ats["checksum.start"], (
            f"expected a covered range inside a {length}-byte frame that leaves out the stored"
            f" checksum (bytes {stored}..{stored + checksum.type.size - 1}), got [{first}, {stop})"
        )
    return None
