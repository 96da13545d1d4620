"""Frame kinds made ready to run: one decode function per kind.

A ``Plan`` is a ``FrameSpec`` made ready to run: which frames it fits (length,
match bytes), how its fields become values, and where those values go. A
binary kind's fields are unpacked, scaled and range-checked one after another
(``FieldSpec.decode`` and ``check``); a text kind's are found by key or
column. No code is generated: docs/profiles.md ("Speed") has the figures that
decided it.

A reading's numbers are floats (booleans stay booleans), whatever their type on
the wire: InfluxDB fixes a field's type at its first write, and a PMS5003's
whole ug/m3 and an SDS011's tenths share the field pm2_5_ugm3.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from edge_agent.decoding.events import Reason
from edge_agent.decoding.profile import FieldSpec, FrameSpec, Framing, Profile

__all__ = ["Outcome", "Plan"]

Fields = dict[str, int | float]
# fields (or None), why not and the detail, the fields not available, the flagged fields
Outcome = tuple[Fields | None, Reason | None, str, tuple[str, ...], tuple[str, ...]]
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


class Plan:
    """One frame kind, ready: ``decode(frame)`` gives the fields, or why not."""

    __slots__ = ("decode", "frame", "groups", "length", "match", "name", "reading", "single")

    def __init__(self, frame: FrameSpec, profile: Profile, framing: Framing) -> None:
        self.frame = frame
        self.name = frame.name
        self.reading = frame.is_reading
        self.length = frame.length
        self.match = frame.match
        head, tail = len(framing.start), len(framing.end)
        if frame.format == "binary":
            plain = all(spec.plain for spec in frame.fields)
            make = _binary if plain else _binary_with_rules
            self.decode: Callable[[bytes], Outcome] = make(frame.fields, frame.is_reading)
        else:
            self.decode = _text(frame, head, tail)
        # measurement -> field names, in profile order; the first group is the main one
        groups: dict[str, list[str]] = {}
        for spec in frame.fields:
            groups.setdefault(spec.measurement or profile.measurement, []).append(spec.name)
        self.groups = tuple((m, tuple(names)) for m, names in groups.items())
        self.single = self.groups[0][0] if len(self.groups) == 1 else None


def _binary(specs: tuple[FieldSpec, ...], as_float: bool) -> Callable[[bytes], Outcome]:
    """A decode function for binary fields: each field unpacked, scaled and checked in turn."""

    def decode(frame: bytes) -> Outcome:
        fields: Fields = {}
        flagged: tuple[str, ...] = ()
        for spec in specs:
            value = spec.decode(frame)
            if as_float and not isinstance(value, bool):
                value = float(value)
            if spec.check(value) is not None:
                why = spec.impossible(value)
                if why is not None:
                    return None, Reason.BAD_VALUE, why, (), ()
                flagged += (spec.name,)
            fields[spec.name] = value
        return fields, None, "", (), flagged

    return decode


def _binary_with_rules(specs: tuple[FieldSpec, ...], as_float: bool) -> Callable[[bytes], Outcome]:
    """As ``_binary``, for fields with a mask, a not-available value or an added offset."""

    def decode(frame: bytes) -> Outcome:
        fields: Fields = {}
        absent: list[str] = []
        flagged: tuple[str, ...] = ()
        for spec in specs:
            value = spec.read(frame)
            if value is None:
                absent.append(spec.name)
                continue
            if as_float and not isinstance(value, bool):
                value = float(value)
            if spec.check(value) is not None:
                why = spec.impossible(value)
                if why is not None:
                    return None, Reason.BAD_VALUE, why, (), ()
                flagged += (spec.name,)
            fields[spec.name] = value
        return fields, None, "", tuple(absent), flagged

    return decode


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
        return (result if spec.scale == 1 and not spec.add else spec.from_raw(result)), None

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
        flagged: tuple[str, ...] = ()
        for spec, found_text in zip(specs, texts, strict=True):
            number, problem = value(spec, found_text)
            if problem is not None or number is None:
                return None, Reason.BAD_VALUE, problem or "", (), ()
            if spec.check(number) is not None:  # text never parses to NaN (_NUMBER)
                flagged += (spec.name,)
            fields[spec.name] = number
        return fields, None, "", (), flagged

    return decode
