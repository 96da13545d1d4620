"""A Modbus RTU slave's register map: the reads each poll sends, and where a value sits in them.

Plain data and arithmetic on it, shared by the profile loader (loader.py),
the decoder (decoder.py) and the simulated slave; no Modbus protocol code
and no pymodbus here, so profiles load, and are checked, without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_agent.decoding.vocabulary import ValueType

# Table name -> (read function code, largest count per request). Limits: MODBUS
# Application Protocol Specification V1.1b3, sections 6.1-6.4 (2000 bits, 125 registers).
TABLES = {
    "coil": (1, 2000),
    "discrete": (2, 2000),
    "holding": (3, 125),
    "input": (4, 125),
}
BIT_TABLES = ("coil", "discrete")


def span(table: str, kind: ValueType) -> int:
    """How many addresses a value of ``kind`` takes in ``table``: one bit, or its registers."""
    return 1 if table in BIT_TABLES else kind.size // 2


@dataclass(frozen=True, slots=True)
class ModbusRead:
    """One read request per poll: ``count`` registers or bits of ``table`` from ``address``."""

    function: int
    table: str
    address: int
    count: int

    @property
    def bits(self) -> bool:
        """Coils or discrete inputs (packed 8 to a byte), not registers."""
        return self.table in BIT_TABLES

    @property
    def reply_bytes(self) -> int:
        """Data bytes in a normal reply: 2 per register, 8 bits per byte."""
        return (self.count + 7) // 8 if self.bits else 2 * self.count

    def covers(self, table: str, address: int, width: int) -> bool:
        """Whether this read returns ``width`` addresses of ``table`` from ``address``."""
        return (self.table == table and self.address <= address
                and address + width <= self.address + self.count)


@dataclass(frozen=True, slots=True)
class ModbusMap:
    """A Modbus RTU slave's register map: what to read each poll, and who it must be.

    ``identity`` holds (table, address, type, value): a register (e.g. a model
    code) whose value tells this device from another at the same address.
    """

    slave: int
    reads: tuple[ModbusRead, ...]
    identity: tuple[tuple[str, int, ValueType, int], ...]

    def locate(self, table: str, address: int, width: int) -> tuple[int, int] | None:
        """(read index, position in its reply) of ``width`` addresses from ``address``."""
        for index, read in enumerate(self.reads):
            if read.covers(table, address, width):
                return index, address - read.address
        return None
