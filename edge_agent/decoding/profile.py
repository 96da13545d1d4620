"""What a firmware profile says, as frozen values.

A profile (``firmware_profiles/<model>.yaml``, read by ``loader.py``) describes
one sensor model's serial settings, framing, checksum and fields. The decoder
and the encoder interpret it; neither names a model. The tables here are the
vocabulary a profile may use: ``VALUE_TYPES`` (how a number is laid out in a
frame) and ``UNITS`` (which unit a field may carry, and the name suffix that
unit demands, so that every InfluxDB field name says its unit).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from edge_agent.decoding.checksums import ChecksumAlgorithm

__all__ = [
    "MAX_FRAME_BYTES",
    "UNITS",
    "VALUE_TYPES",
    "ChecksumSpec",
    "Escape",
    "FieldSpec",
    "Framing",
    "LengthField",
    "Profile",
    "SerialSettings",
    "ValueType",
    "resolve",
]

# The largest frame any profile may declare (max_length), in unstuffed bytes.
# Precedents: a Modbus RTU ADU is at most 256 bytes ("MODBUS over Serial Line
# Specification and Implementation Guide V1.02", section 2.5.1.1); a Sensirion
# SHDLC frame carries at most 255 data bytes plus 7 framing bytes (SPS30
# datasheet, section 5.3). Plantower frames are 32 bytes, Nova SDS011 frames 10.
# The decoder's buffer holds at most one frame (twice this when byte-stuffed)
# plus one read, so this constant also bounds its memory.
MAX_FRAME_BYTES = 1024


@dataclass(frozen=True, slots=True)
class ValueType:
    """How one number is laid out in a frame: ``u16be`` and friends."""

    name: str
    format: str
    is_float: bool
    size: int = field(init=False)
    min: float = field(init=False)
    max: float = field(init=False)

    def __post_init__(self) -> None:
        size = struct.calcsize(self.format)
        object.__setattr__(self, "size", size)
        if self.is_float:
            high = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]  # largest finite float32
            low = -high
        elif self.format[-1].islower():  # struct: lower case letters are signed
            low, high = -(2 ** (8 * size - 1)), 2 ** (8 * size - 1) - 1
        else:
            low, high = 0, 2 ** (8 * size) - 1
        object.__setattr__(self, "min", low)
        object.__setattr__(self, "max", high)

    def unpack(self, data: bytes, offset: int) -> int | float:
        value: int | float = struct.unpack_from(self.format, data, offset)[0]
        return value

    def pack(self, value: int | float) -> bytes:
        return struct.pack(self.format, value)


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
        )
    }
)

# Unit (as written in a profile) -> the suffix a field name carrying it must end with.
# "1" is dimensionless (status codes, flags) and imposes no suffix.
UNITS: Mapping[str, str] = MappingProxyType(
    {
        "ug/m3": "_ugm3",
        "mg/m3": "_mgm3",
        "1/0.1L": "_per_0_1l",
        "1/cm3": "_per_cm3",
        "um": "_um",
        "degC": "_c",
        "%RH": "_pct_rh",
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


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Port settings; ``parity`` is one of none, even, odd, mark, space."""

    baudrate: int
    bytesize: int
    parity: str
    stopbits: float


@dataclass(frozen=True, slots=True)
class LengthField:
    """A length carried in the frame: total frame length = value + ``add``."""

    offset: int
    type: ValueType
    add: int


@dataclass(frozen=True, slots=True)
class Escape:
    """Byte stuffing (HDLC style): a byte in ``escaped`` is sent as ``byte``, ``b ^ xor``.

    Stuffing applies to everything between the start and the end marker; offsets,
    lengths and checksums in a profile always refer to the unstuffed frame.
    """

    byte: int
    xor: int
    escaped: frozenset[int]

    def stuff(self, data: bytes) -> bytes:
        out = bytearray()
        for value in data:
            if value in self.escaped:
                out += bytes((self.byte, value ^ self.xor))
            else:
                out.append(value)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class Framing:
    """Where a frame starts, how long it is and how it ends.

    Exactly one of ``length`` (fixed size) and ``length_field`` is set. With a
    fixed size, ``min_length == max_length == length``.
    """

    start: bytes
    end: bytes
    length: int | None
    length_field: LengthField | None
    min_length: int
    max_length: int
    escape: Escape | None

    @property
    def max_raw_length(self) -> int:
        """The most bytes one frame can occupy on the wire (stuffing can double the body)."""
        if self.escape is None:
            return self.max_length
        markers = len(self.start) + len(self.end)
        return markers + 2 * (self.max_length - markers)


@dataclass(frozen=True, slots=True)
class ChecksumSpec:
    """Checksum ``algorithm`` over frame bytes [start, end), stored at ``offset`` as ``type``."""

    algorithm: ChecksumAlgorithm
    start: int
    end: int
    offset: int
    type: ValueType

    def compute(self, frame: bytes) -> int:
        length = len(frame)
        return self.algorithm.compute(
            frame[resolve(self.start, length) : resolve(self.end, length)]
        )

    def stored(self, frame: bytes) -> int:
        return int(self.type.unpack(frame, resolve(self.offset, len(frame))))


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One reading in a frame: value = raw * ``scale``, valid if within ``valid`` (inclusive)."""

    name: str
    offset: int
    type: ValueType
    scale: int | float
    unit: str
    valid: tuple[float, float] | None
    _scale: Decimal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Decimal keeps "1236 * 0.1" at 123.6 instead of 123.60000000000001, so
        # the value stored is the one a person reads off the datasheet.
        object.__setattr__(self, "_scale", Decimal(repr(self.scale)))

    def decode(self, frame: bytes) -> int | float:
        raw = self.type.unpack(frame, self.offset)
        if isinstance(raw, float):
            return raw * self.scale
        if isinstance(self.scale, int):
            return raw * self.scale
        return float(raw * self._scale)

    def to_raw(self, value: float) -> int | float:
        """The number to store so that ``decode`` gives back ``value`` (rounded for integers)."""
        if self.type.is_float:
            return value / self.scale
        return round(Decimal(repr(value)) / self._scale)

    def check(self, value: int | float) -> str | None:
        """Why ``value`` is not acceptable, or ``None`` when it is."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name} is {value}, not a finite number"
        if self.valid is not None and not self.valid[0] <= value <= self.valid[1]:
            return f"{self.name} = {value} outside valid [{self.valid[0]}, {self.valid[1]}]"
        return None


@dataclass(frozen=True, slots=True)
class Profile:
    """A sensor model's whole wire description, as loaded from its YAML file."""

    model: str
    vendor: str
    datasheet: str
    measurement: str
    serial: SerialSettings
    framing: Framing
    checksum: ChecksumSpec
    fields: tuple[FieldSpec, ...]
    source: str = ""
