"""A Modbus RTU slave for a ``modbus_rtu`` profile, built on pymodbus's own simulator.

The register map comes from the profile; the slave is pymodbus's: requests are
parsed by ``FramerRTU`` (server side), answered from a ``SimDevice`` datastore
by the request PDU's own ``datastore_update`` (so a read outside the map gets
pymodbus's exception response, as from a real device), and encoded by
``FramerRTU.buildFrame``. Requests for another slave address are ignored, as on
a shared RS-485 bus.

Each poll of the gateway reads the map's blocks in order; the slave takes new
values when the first block is read and reports them as a reading when the
last one is answered. Same interface as ``FrameEmulator`` (``receive``/``due``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from edge_agent.decoding import Profile
from edge_agent.modbus.decoder import request_pdu
from edge_agent.modbus.regmap import BIT_TABLES
from simulators.emulator import Emission
from simulators.frames import quantize

__all__ = ["ModbusSlave", "encode_replies"]

Values = Mapping[str, float | None]  # None: the field's not_available value is sent
_TABLES = ("coil", "discrete", "holding", "input")
_WRITE_FUNCTION = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


class ModbusSlave:
    """Answers Modbus RTU reads of a profile's register map with live values."""

    def __init__(self, profile: Profile, values: Callable[[], Values], *, slave: int | None = None):
        if profile.modbus is None:
            raise ValueError(f"{profile.model} is not a modbus_rtu profile")
        self.profile = profile
        self.map = profile.modbus
        self.values = values
        self.slave = self.map.slave if slave is None else slave
        self._framer = FramerRTU(DecodePDU(is_server=True))
        self._loop = asyncio.new_event_loop()
        self._spans = self._table_spans()
        self._core = SimCore(SimDevice(self.slave, simdata=self._simdata()))
        self._runtime = self._core.devices[self.slave]
        self._buffer = b""
        self._pending: dict[str, int | float | bool] | None = None
        self.awake = True

    def close(self) -> None:
        self._loop.close()

    # -- the datastore -----------------------------------------------------------------

    def _table_spans(self) -> dict[str, tuple[int, int]]:
        spans: dict[str, tuple[int, int]] = {}
        for read in self.map.reads:
            low, high = spans.get(read.table, (read.address, read.address + read.count))
            spans[read.table] = (min(low, read.address), max(high, read.address + read.count))
        return spans

    def _simdata(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        blocks: list[list[SimData]] = []
        for table in _TABLES:
            bits = table in BIT_TABLES
            kind = DataType.BITS if bits else DataType.REGISTERS
            if table not in self._spans:  # pymodbus wants every table; one unused cell
                blocks.append([SimData(0, values=[False] * 16 if bits else 0, datatype=kind)])
                continue
            low, high = self._spans[table]
            count = high - low
            if bits:
                values: list[bool] | list[int] = [False] * (count + (-count) % 16)
            else:
                values = [0] * count
            blocks.append([SimData(low, values=values, datatype=kind)])
        return blocks[0], blocks[1], blocks[2], blocks[3]

    def _store(self, values: Mapping[str, int | float | bool | None]) -> None:
        registers: dict[str, list[Any]] = {}
        for table, (low, high) in self._spans.items():
            registers[table] = [False] * (high - low) if table in BIT_TABLES else [0] * (
                high - low
            )
        for spec in self.profile.frames[0].fields:
            table, address = spec.table or "", spec.address or 0
            cells = registers[table]
            at = address - self._spans[table][0]
            if table in BIT_TABLES:
                cells[at] = bool(values.get(spec.name, False))
                continue
            value = values.get(spec.name, 0)
            raw = min(spec.not_available) if value is None else spec.to_raw(value)
            if spec.mask is not None:  # masked fields share their register: set only their bits
                current = bytes(b for cell in cells[at : at + spec.type.size // 2]
                                for b in int(cell).to_bytes(2, "big"))
                raw = spec.place(int(spec.type.unpack(current, 0)), int(raw))
            self._put(cells, at, spec.type.pack(raw))
        for table, address, kind, equals in self.map.identity:
            self._put(registers[table], address - self._spans[table][0], kind.pack(equals))
        for table, cells in registers.items():
            low = self._spans[table][0]
            result = self._loop.run_until_complete(
                self._runtime.async_setValues(_WRITE_FUNCTION[table], low, cells)
            )
            assert result is None, f"pymodbus refused to store {table}: {result}"

    @staticmethod
    def _put(cells: list[Any], at: int, data: bytes) -> None:
        for word in range(len(data) // 2):
            cells[at + word] = int.from_bytes(data[2 * word : 2 * word + 2], "big")

    # -- the wire ---------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[Emission]:
        """Answer every complete request in ``data`` (buffered across calls)."""
        del now
        self._buffer = (self._buffer + data)[-1024:]
        out: list[Emission] = []
        while self._buffer:
            try:
                used, pdu = self._framer.handleFrame(self._buffer, 0, 0)
            except ModbusException:
                self._buffer = b""
                break
            self._buffer = self._buffer[used:]
            if pdu is None:
                if not used:
                    break
                continue
            if pdu.dev_id == self.slave and self.awake:
                out.append(self._answer(pdu))
        return out

    def _answer(self, request: ModbusPDU) -> Emission:
        index = self._index(request)
        if index == 0:
            reading: dict[str, int | float | bool | None] = {
                spec.name: None if value is None else quantize(spec, value)
                for spec in self.profile.frames[0].fields
                for value in [self.values().get(spec.name, 0)]
            }
            self._store(reading)
            self._pending = {k: v for k, v in reading.items() if v is not None}  # as decoded
        # pymodbus's own server hands its SimCore to datastore_update the same way
        update = request.datastore_update(self._core, self.slave)  # type: ignore[arg-type]
        response = self._loop.run_until_complete(update)
        response.dev_id = self.slave
        response.transaction_id = request.transaction_id
        data = bytes(self._framer.buildFrame(response))
        last = index == len(self.map.reads) - 1
        if last and self._pending is not None and not response.isError():
            values, self._pending = self._pending, None
            return Emission(data, values)
        return Emission(data)

    def _index(self, request: ModbusPDU) -> int | None:
        for index, read in enumerate(self.map.reads):
            same = (read.function, read.address, read.count)
            if same == (request.function_code, request.address, request.count):
                return index
        return None

    def due(self, now: float) -> list[Emission]:
        """A slave never speaks first."""
        del now
        return []


def encode_replies(profile: Profile, values: Values, *, slave: int | None = None) -> list[bytes]:
    """The slave's answers to one poll carrying ``values`` (one RTU frame per read)."""
    device = ModbusSlave(profile, lambda: values, slave=slave)
    try:
        framer = FramerRTU(DecodePDU(is_server=False))
        out = []
        for read in device.map.reads:
            request = bytes(framer.buildFrame(request_pdu(read, device.slave)))
            [answer] = device.receive(request, 0.0)
            out.append(answer.data)
        return out
    finally:
        device.close()
