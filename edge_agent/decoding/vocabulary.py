"""The words a firmware profile may use, and what each one means.

``VALUE_TYPES`` says how a number is laid out in a frame (``ValueType``),
``UNITS`` which unit a field may carry and the name suffix that unit demands
(so every InfluxDB field name says its unit), ``COMMAND_ROLES`` what a command
may do to a device, and ``resolve`` how a profile offset (negative counts from
the end) becomes an index into a frame. The profile's structure (profile.py),
its loader and the decoder use these tables; nothing here names a model.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["COMMAND_ROLES", "UNITS", "VALUE_TYPES", "ValueType", "resolve"]

# What a command does to a device; the poller sends them and the simulator obeys
# them by these names, so a profile can only use these (see docs/profiles.md).
COMMAND_ROLES: Mapping[str, str] = MappingProxyType(
    {
        "wake": "leave sleep; readings restart after the warm-up",
        "sleep": "fan and laser off until wake",
        "active": "send readings on the device's own schedule",
        "passive": "send a reading only when queried",
        "query": "ask for one reading now",
        "start": "start measuring (devices that idle until told)",
        "stop": "stop measuring",
        "period": "set the device's own working period (a parameter)",
        "identify": "a harmless command every unit answers (used by probe)",
    }
)


@dataclass(frozen=True, slots=True)
class ValueType:
    """How one number is laid out in a frame: ``u16be`` and friends.

    ``order`` permutes the bytes before unpacking: the Modbus word-swapped
    ("CDAB") 32-bit types send the low 16-bit word first, each word big-endian.
    """

    name: str
    format: str
    is_float: bool
    order: tuple[int, ...] | None = None
    size: int = field(init=False)
    min: float = field(init=False)
    max: float = field(init=False)

    def __post_init__(self) -> None:
        size = struct.calcsize(self.format)
        object.__setattr__(self, "size", size)
        if self.is_float:
            high = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]  # largest finite float32
            low = -high
        elif self.format[-1] == "?":
            low, high = 0, 1
        elif self.format[-1].islower():  # struct: lower case letters are signed
            low, high = -(2 ** (8 * size - 1)), 2 ** (8 * size - 1) - 1
        else:
            low, high = 0, 2 ** (8 * size) - 1
        object.__setattr__(self, "min", low)
        object.__setattr__(self, "max", high)

    @property
    def is_bool(self) -> bool:
        return self.format[-1] == "?"

    def unpack(self, data: bytes, offset: int) -> int | float:
        if self.order is not None:
            data = bytes(data[offset + i] for i in self.order)
            offset = 0
        value: int | float = struct.unpack_from(self.format, data, offset)[0]
        return value

    def pack(self, value: int | float) -> bytes:
        data = struct.pack(self.format, value)
        if self.order is None:
            return data
        out = bytearray(self.size)
        for position, source in enumerate(self.order):
            out[source] = data[position]
        return bytes(out)


_CDAB = (2, 3, 0, 1)

VALUE_TYPES: Mapping[str, ValueType] = MappingProxyType(
    {
        value_type.name: value_type
        for value_type in (
            ValueType("u8", ">B", is_float=False),
            ValueType("s8", ">b", is_float=False),
            ValueType("u16be", ">H", is_float=False),
            ValueType("u16le", "<H", is_float=False),
            ValueType("s16be", ">h", is_float=False),
            ValueType("s16le", "<h", is_float=False),
            ValueType("u32be", ">I", is_float=False),
            ValueType("u32le", "<I", is_float=False),
            ValueType("s32be", ">i", is_float=False),
            ValueType("s32le", "<i", is_float=False),
            ValueType("float32be", ">f", is_float=True),
            ValueType("float32le", "<f", is_float=True),
            ValueType("u32cdab", ">I", is_float=False, order=_CDAB),
            ValueType("s32cdab", ">i", is_float=False, order=_CDAB),
            ValueType("float32cdab", ">f", is_float=True, order=_CDAB),
            ValueType("bool", ">?", is_float=False),
        )
    }
)

# Unit (as written in a profile) -> the suffix a field name carrying it must end with.
# "1" is dimensionless (status codes, flags) and imposes no suffix. Relative
# humidity is stored as humidity_pct (the schema's name), so %RH takes "_pct".
UNITS: Mapping[str, str] = MappingProxyType(
    {
        "ug/m3": "_ugm3",
        "mg/m3": "_mgm3",
        "1/0.1L": "_per_0_1l",
        "1/cm3": "_per_cm3",
        "um": "_um",
        "degC": "_c",
        "%RH": "_pct",
        "%": "_pct",
        "hPa": "_hpa",
        "ppm": "_ppm",
        "ppb": "_ppb",
        "dB(A)": "_dba",
        "V": "_v",
        "mA": "_ma",
        "m/s2": "_ms2",
        "s": "_s",
        "1": "",
    }
)


def resolve(position: int, length: int) -> int:
    """A profile offset (negative counts from the end) as an index into a ``length``-byte frame."""
    return position if position >= 0 else length + position
