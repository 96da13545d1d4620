"""InfluxDB line protocol, sans-IO: points in, bytes out.

Shared by the 1.x and 2.x writers (the format is the same). Escaping follows
the InfluxDB reference: measurement escapes comma and space; tag keys, tag
values and field keys escape comma, equals and space; string field values
escape double quote and backslash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FieldValue = int | float | bool | str


@dataclass(frozen=True, slots=True)
class Point:
    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def line(self) -> str:
        return format_point(self)


_MEAS = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_STR = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n"})


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.translate(_STR) + '"'


def format_point(p: Point) -> str:
    """One line; tags sorted (InfluxDB's own advice for write speed), empty tag values left out."""
    parts = [p.measurement.translate(_MEAS)]
    for key in sorted(p.tags):
        value = p.tags[key]
        if value.endswith("\\"):
            # Line protocol has no escape for it: the backslash would escape the
            # separator after it. Ingest refuses such values; this is the backstop.
            raise ValueError(f"tag {key}={value!r}: a tag value cannot end in a backslash")
        if value:
            parts.append(f"{key.translate(_KEY)}={value.translate(_KEY)}")
    fields = ",".join(f"{k.translate(_KEY)}={_field(v)}" for k, v in p.fields.items())
    return f"{','.join(parts)} {fields} {p.time_ns}"


def encode(points: list[Point]) -> bytes:
    return ("\n".join(format_point(p) for p in points) + "\n").encode()
