"""Checksum algorithms, looked up by the name a profile gives.

A profile says ``checksum: {algorithm: sum16, ...}``; the decoder and the
encoder both take the function from ``CHECKSUMS``. Adding an algorithm is one
function and one table row; nothing else names an algorithm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["CHECKSUMS", "ChecksumAlgorithm"]


@dataclass(frozen=True, slots=True)
class ChecksumAlgorithm:
    """One row of the registry.

    Attributes:
        name: the name profiles use.
        size: bytes the result occupies in a frame (the storage type must match).
        compute: covered bytes in, checksum value out (0 <= value < 256**size).
        description: one line for error messages and docs.
    """

    name: str
    size: int
    compute: Callable[[bytes], int]
    description: str


def sum16(data: bytes) -> int:
    """Sum of all bytes, low 16 bits (Plantower PMS family)."""
    return sum(data) & 0xFFFF


def sum8(data: bytes) -> int:
    """Sum of all bytes, low 8 bits (Nova SDS011, over the data bytes only)."""
    return sum(data) & 0xFF


def shdlc(data: bytes) -> int:
    """Sum of all bytes, low 8 bits, inverted (Sensirion SHDLC, e.g. SPS30)."""
    return (sum(data) & 0xFF) ^ 0xFF


def neg_sum8(data: bytes) -> int:
    """Sum of all bytes, negated, low 8 bits: ``(256 - sum % 256) % 256``.

    Winsen (ZH03B question-and-answer mode, MH-Z19B: bytes 1..7, stored in
    byte 8) and Honeywell HPMA115 passive mode ("(65536 - sum) mod 256" over
    head, length, command and data, which is the same number): the covered bytes
    plus the check byte sum to 0 mod 256.
    """
    return -sum(data) & 0xFF


def _crc16_modbus_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC16_MODBUS_TABLE = _crc16_modbus_table()


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: reflected polynomial 0xA001, initial value 0xFFFF.

    Modbus RTU sends the low byte first, so profiles store it as ``u16le``.
    Check value (CRC catalogue): ``crc16_modbus(b"123456789") == 0x4B37``.
    """
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC16_MODBUS_TABLE[(crc ^ byte) & 0xFF]
    return crc


CHECKSUMS: Mapping[str, ChecksumAlgorithm] = MappingProxyType(
    {
        algorithm.name: algorithm
        for algorithm in (
            ChecksumAlgorithm("sum16", 2, sum16, "16-bit sum of the covered bytes"),
            ChecksumAlgorithm("sum8", 1, sum8, "8-bit sum of the covered bytes"),
            ChecksumAlgorithm("shdlc", 1, shdlc, "inverted 8-bit sum (Sensirion SHDLC)"),
            ChecksumAlgorithm(
                "neg_sum8", 1, neg_sum8, "negated 8-bit sum, (256 - sum % 256) % 256 (Winsen,"
                " Honeywell)"
            ),
            ChecksumAlgorithm("crc16_modbus", 2, crc16_modbus, "CRC-16/MODBUS (poly 0xA001)"),
        )
    }
)
