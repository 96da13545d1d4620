"""Modbus RTU slaves described by a profile's register map; the protocol is pymodbus's.

``ModbusDecoder`` has the frame decoder's sans-IO contract, so the serial
reader, the poller, ``probe`` and ``decode`` treat a Modbus sensor like any
other. pymodbus is imported only here (and by the simulator's slave), so a
gateway without Modbus sensors never loads it.
"""

from edge_agent.modbus.decoder import MAX_ADU, ModbusDecoder, request_pdu

__all__ = ["MAX_ADU", "ModbusDecoder", "request_pdu"]
