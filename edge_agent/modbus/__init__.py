"""Modbus RTU slaves described by a profile's register map; the protocol is pymodbus's.

All of the agent's Modbus code is in this package: the register map
(``regmap``: reads, where a value sits in them), the ``modbus:`` section of a
profile (``loader``, called by edge_agent.decoding's profile loader) and the
decoder (``decoder.ModbusDecoder``), which has the frame decoder's sans-IO
contract, so the serial reader, the poller, ``probe`` and ``decode`` treat a
Modbus sensor like any other. Only ``decoder`` imports pymodbus (as does the
simulator's slave), and nothing here imports it for the package: profiles
load without it, and a gateway without Modbus sensors never loads it.
"""
