"""One decoder per port, whatever the protocol: the factory the reader, probe and decode share.

Both decoders have the same sans-IO face (``StreamDecoder``): ``receive_data``,
``next_event``, ``events``, ``stats``, ``offset`` and ``buffer_limit``. The
frame decoder serves every ``frames`` profile; the Modbus decoder (pymodbus
underneath, imported only when a Modbus profile is used) serves ``modbus_rtu``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from edge_agent.decoding import DecoderStats, Event, FrameDecoder, Profile, Signal

__all__ = ["StreamDecoder", "make_decoder"]


class StreamDecoder(Protocol):
    """What the serial reader needs from a decoder."""

    profile: Profile
    stats: DecoderStats
    buffer_limit: int

    @property
    def offset(self) -> int: ...

    def receive_data(self, data: bytes | bytearray | memoryview) -> None: ...

    def next_event(self) -> Event | Signal: ...

    def events(self) -> Iterator[Event]: ...


def make_decoder(profile: Profile, *, slave: int | None = None) -> StreamDecoder:
    """The decoder for ``profile``; ``slave`` overrides a Modbus profile's slave address."""
    if profile.protocol == "modbus_rtu":
        from edge_agent.modbus import ModbusDecoder  # noqa: PLC0415  (pymodbus only when needed)

        return ModbusDecoder(profile, slave)
    return FrameDecoder(profile)
