"""Frame kinds compiled for speed: one generated decode function per kind.

A ``Plan`` is a ``FrameSpec`` made ready to run: which frames it fits (length,
match bytes), how its fields become values, and where those values go. For
binary kinds the decode function is generated once from the profile, in the
manner of ``dataclasses`` and ``attrs``: one ``struct.unpack_from`` for all
fields (when their byte order is one and they do not overlap), each value
scaled and range-checked inline, and the dict built as a literal. The source
is made only from checked profile data (field names match ``[a-z][a-z0-9_]*``;
numbers are written with ``repr``), and the generic slow path produces the
error messages, so a profile cannot change what the code does, only how fast.

A reading's numbers are floats (booleans stay booleans), whatever their type on
the wire: InfluxDB fixes a field's type at its first write, and a PMS5003's
whole ug/m3 and an SDS011's tenths share the field pm2_5_ugm3.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from typing import Any

from edge_agent.decoding.events import Reason
from edge_agent.decoding.profile import FieldSpec, FrameSpec, Profile

__all__ = ["Outcome", "Plan"]

Fields = dict[str, int | float]
Outcome = tuple[Fields | None, Reason | None, str]  # fields, or why not and the detail
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


class Plan:
    """One frame kind, compiled: ``decode(frame)`` gives the fields, or why not."""

    __slots__ = ("decode", "frame", "groups", "length", "match", "name", "reading", "single")

    def __init__(self, frame: FrameSpec, profile: Profile) -> None:
        self.frame = frame
        self.name = frame.name
        self.reading = frame.is_reading
        self.length = frame.length
        self.match = frame.match
        head = len(profile.framing.start) if profile.framing else 0
        tail = len(profile.framing.end) if profile.framing else 0
        if frame.format == "binary":
            self.decode: Callable[[bytes], Outcome] = compile_binary(frame.fields,
                                                                     frame.is_reading)
        else:
            self.decode = _text(frame, head, tail)
        # measurement -> field names, in profile order; the first group is the main one
        groups: dict[str, list[str]] = {}
        for spec in frame.fields:
            groups.setdefault(spec.measurement or profile.measurement, []).append(spec.name)
        self.groups = tuple((m, tuple(names)) for m, names in groups.items())
        self.single = self.groups[0][0] if len(self.groups) == 1 else None


def _layout(specs: tuple[FieldSpec, ...]) -> tuple[struct.Struct, int, list[int]] | None:
    """One struct for every field (and the order it unpacks them in), if the layout allows."""
    if not specs or any(spec.type.order is not None for spec in specs):
        return None
    orders = {spec.type.format[0] for spec in specs if spec.type.size > 1}
    if len(orders) > 1:
        return None
    ordered = sorted(range(len(specs)), key=lambda i: specs[i].offset)
    fmt, position = "", specs[ordered[0]].offset
    for index in ordered:
        spec = specs[index]
        if spec.offset < position:
            return None  # overlapping fields
        fmt += f"{spec.offset - position}x" if spec.offset > position else ""
        fmt += spec.type.format[1:]
        position = spec.offset + spec.type.size
    return struct.Struct((orders.pop() if orders else ">") + fmt), specs[ordered[0]].offset, ordered


def _value_expression(index: int, spec: FieldSpec, as_float: bool, env: dict[str, Any]) -> str:
    """How raw value ``x<index>`` becomes the field's value, as Python source."""
    raw = f"x{index}"
    if spec.type.is_bool:
        return raw
    if spec.type.is_float:
        return raw if spec.scale == 1 else f"{raw} * {float(spec.scale)!r}"
    if isinstance(spec.scale, int):
        if spec.scale == 1:
            return f"({raw} + 0.0)" if as_float else raw
        return f"({raw} * {spec.scale!r}" + (" + 0.0)" if as_float else ")")
    if spec._divisor:
        return f"{raw} / {spec._divisor!r}"
    env[f"scale{index}"] = spec.scaled  # Decimal: exact decimal scaling
    return f"scale{index}({raw})"


def compile_binary(specs: tuple[FieldSpec, ...], as_float: bool) -> Callable[[bytes], Outcome]:
    """A decode function for binary fields, generated once per frame kind."""
    env: dict[str, Any] = {"specs": specs, "OUT_OF_RANGE": Reason.OUT_OF_RANGE, "inf": math.inf}
    lines = ["def decode(frame):"]
    layout = _layout(specs)
    if layout is not None:
        compiled, first, ordered = layout
        env["unpack"] = compiled.unpack_from
        targets = "".join(f"x{index}, " for index in ordered)
        lines.append(f"    ({targets}) = unpack(frame, {first})")
    else:
        for index, spec in enumerate(specs):
            env[f"unpack{index}"] = spec.type.unpack
            lines.append(f"    x{index} = unpack{index}(frame, {spec.offset})")
    for index, spec in enumerate(specs):
        assert _NAME.fullmatch(spec.name), spec.name  # the loader's rule; source stays data
        lines.append(f"    v{index} = {_value_expression(index, spec, as_float, env)}")
        if spec.valid is not None:
            low, high = (float(bound) for bound in spec.valid)
            check = f"not {low!r} <= v{index} <= {high!r}"
            lines.append(f"    if {check}: return fail({index}, v{index})")
        elif spec.type.is_float:  # NaN and infinities are never a reading
            lines.append(f"    if not -inf < v{index} < inf: return fail({index}, v{index})")
    items = ", ".join(f"{spec.name!r}: v{index}" for index, spec in enumerate(specs))
    lines.append(f"    return {{{items}}}, None, ''")

    def fail(index: int, value: int | float) -> Outcome:
        spec = specs[index]
        return None, Reason.OUT_OF_RANGE, spec.check(value) or f"{spec.name} = {value}"

    env["fail"] = fail
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), f"<decode {len(specs)} fields>", "exec"), env, namespace)
    decode: Callable[[bytes], Outcome] = namespace["decode"]
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
