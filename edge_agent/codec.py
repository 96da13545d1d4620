"""One decoder per port, whatever the protocol: the factory the reader, probe and decode share.

Both decoders are ``StreamDecoder``s (edge_agent/decoding/stream.py): ``receive_data``,
``next_event``, ``events``, ``stats``, ``offset`` and ``buffer_limit``. The
frame decoder serves every ``frames`` profile; the Modbus decoder (pymodbus
underneath, imported only when a Modbus profile is used) serves ``modbus_rtu``.
"""

from __future__ import annotations

from edge_agent.decoding import FrameDecoder, Profile, StreamDecoder

__all__ = ["StreamDecoder", "make_decoder"]


def make_decoder(profile: Profile, *, slave: int | None = None) -> StreamDecoder:
    """The decoder for ``profile``; ``slave`` overrides a Modbus profile's slave address."""
    if profile.protocol == "modbus_rtu":
        from edge_agent.modbus.decoder import ModbusDecoder  # noqa: PLC0415  (pymodbus only when needed)

        return ModbusDecoder(profile, slave)
    return FrameDecoder(profile)
