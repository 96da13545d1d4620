"""One value in a frame (``FieldSpec``): where it sits, and how its raw number becomes a value.

The raw number read off the wire goes through, in order: the bit ``mask``
(shifted down to bit 0), the ``not_available`` check (the device says it has
no value: the field is left out of the reading), then ``scale`` and ``add``.
A field using none of ``mask``, ``not_available`` and ``add`` is *plain*, and
the decoder takes a shorter path for it (``decode``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from edge_agent.decoding.vocabulary import ValueType

__all__ = ["FieldSpec"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One value in a frame: value = raw * ``scale`` + ``add``, flagged if outside ``valid``.

    Binary frames place a field at ``offset`` with a ``type``; text frames find
    it by ``key`` (key=value lines) or ``column`` (CSV lines), with an optional
    unit ``suffix`` after the number and ``decimals`` the device prints. Modbus
    fields sit at ``address`` in a register ``table``. ``measurement`` is where
    the value is stored (the frame's or the profile's unless the field says).

    ``mask`` keeps only those bits of an unsigned integer (shifted down, so a
    mask 0x0F00 gives 0..15); ``not_available`` lists raw values (after the
    mask, before scale and add) that mean "no value": the field is left out of
    that reading and counted, the rest of the reading is kept.
    """

    name: str
    offset: int
    type: ValueType
    scale: int | float
    unit: str
    valid: tuple[float, float] | None
    measurement: str = ""
    key: str | None = None
    column: int | None = None
    suffix: str = ""
    decimals: int | None = None
    table: str | None = None
    address: int | None = None
    add: int | float = 0
    mask: int | None = None
    not_available: frozenset[int] = frozenset()
    _scale: Decimal = field(init=False, repr=False, compare=False)
    _divisor: int = field(init=False, repr=False, compare=False)
    _add: Decimal = field(init=False, repr=False, compare=False)
    _shift: int = field(init=False, repr=False, compare=False)
    plain: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Decimal keeps "1236 * 0.1" at 123.6 instead of 123.60000000000001, so
        # the value stored is the one a person reads off the datasheet. When the
        # scale is 1/n for a whole n, raw / n is the same correctly rounded
        # number and much faster, so the decoder uses that.
        object.__setattr__(self, "_scale", Decimal(repr(self.scale)))
        divisor = 0
        if isinstance(self.scale, float) and 0 < abs(self.scale) < 1:
            inverse = Decimal(1) / self._scale
            if inverse == inverse.to_integral_value():
                divisor = int(inverse)
        object.__setattr__(self, "_divisor", divisor)
        object.__setattr__(self, "_add", Decimal(repr(self.add)))
        shift = (self.mask & -self.mask).bit_length() - 1 if self.mask else 0
        object.__setattr__(self, "_shift", shift)
        # No mask, no not-available value, nothing added: ``decode`` gives the value.
        plain = self.mask is None and not self.not_available and not self.add
        object.__setattr__(self, "plain", plain)

    @property
    def is_text(self) -> bool:
        return self.key is not None or self.column is not None

    def scaled(self, raw: int | float) -> int | float:
        if isinstance(raw, float):
            return raw * self.scale
        if isinstance(raw, bool) or isinstance(self.scale, int):
            return raw if self.scale == 1 else raw * self.scale
        if self._divisor:
            return raw / self._divisor
        return float(raw * self._scale)

    def from_raw(self, raw: int | float) -> int | float:
        """The value of a raw number (after the mask): raw * scale + add."""
        if not self.add:
            return self.scaled(raw)
        if isinstance(raw, float):
            return raw * self.scale + self.add
        if isinstance(self.scale, int) and isinstance(self.add, int):
            return raw * self.scale + self.add
        return float(Decimal(raw) * self._scale + self._add)

    def value(self, raw: int | float) -> int | float | None:
        """The value of a raw number as unpacked; ``None`` when it says "not available"."""
        if self.mask is not None:
            raw = (int(raw) & self.mask) >> self._shift
        if raw in self.not_available:
            return None
        return self.from_raw(raw)

    def decode(self, frame: bytes) -> int | float:
        """A plain field's value in ``frame`` (see ``plain``; ``read`` for any field)."""
        return self.scaled(self.type.unpack(frame, self.offset))

    def read(self, frame: bytes) -> int | float | None:
        """The field's value in ``frame``, or ``None`` when the device says it has none."""
        return self.value(self.type.unpack(frame, self.offset))

    def to_raw(self, value: float) -> int | float:
        """The number to store (before any mask shift) so ``from_raw`` gives back ``value``.

        Integers are rounded to the nearest raw number.
        """
        if self.type.is_float:
            return (value - self.add) / self.scale
        if self.type.is_bool:
            return bool(value)
        return round((Decimal(repr(value)) - self._add) / self._scale)

    def place(self, word: int, raw: int) -> int:
        """``word`` with this field's bits set to ``raw`` (a masked field shares its word)."""
        if self.mask is None:
            return raw
        return (word & ~self.mask) | ((raw << self._shift) & self.mask)

    @property
    def raw_max(self) -> int | float:
        """The largest raw number the field can carry (its mask's width, or its type's)."""
        if self.mask is not None:
            return self.mask >> self._shift
        return self.type.max

    @property
    def raw_min(self) -> int | float:
        return 0 if self.mask is not None else self.type.min

    def check(self, value: int | float) -> str | None:
        """Why ``value`` is not an ordinary reading, or ``None`` when it is.

        Two answers: not a finite number (``impossible``: never stored), or
        outside ``valid``, the datasheet's range: kept, and flagged (the
        readings a saturated sensor gives in smoke are the ones that matter).
        """
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name} is {value}, not a finite number"
        if self.valid is not None and not self.valid[0] <= value <= self.valid[1]:
            return f"{self.name} = {value} outside valid [{self.valid[0]}, {self.valid[1]}]"
        return None

    def impossible(self, value: int | float) -> str | None:
        """Why ``value`` cannot be a reading at all (NaN, infinity), or ``None``."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name} is {value}, not a finite number"
        return None
