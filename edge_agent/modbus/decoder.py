"""Modbus RTU replies in, the same events as the frame decoder out; pymodbus does Modbus.

Sans-IO, with the frame decoder's contract (``receive_data``, ``next_event``,
``events``, ``stats``; every byte accounted for once; a bad frame consumes only
its first byte). What a Modbus frame is comes from pymodbus, not from us: the
request PDUs and their RTU encoding (``FramerRTU.buildFrame``), which function
codes exist and how long their replies are (``DecodePDU.lookupPduClass``,
``calculateRtuFrameSize``), the CRC (``FramerRTU.check_CRC``), and decoding a
reply into registers, bits or an exception (``DecodePDU.decode``).

We keep the hunting loop, because pymodbus's own (``FramerRTU.decode``) drops
the whole buffer on a CRC error, and with it any good reply behind a bad one.
The profile's register map turns replies into readings: one ``Decoded`` per
poll, when the reply to its last request arrives; replies to earlier requests
of the poll are ``Reply`` events named ``read0``, ``read1``, ...
"""

from __future__ import annotations

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
)

from edge_agent.decoding import (
    END_OF_STREAM,
    NEED_DATA,
    Decoded,
    Event,
    FieldNotes,
    FieldSpec,
    FrameRejected,
    LocalProtocolError,
    Profile,
    Reason,
    Reply,
    Signal,
    Skipped,
)
from edge_agent.decoding.stream import StreamDecoder
from edge_agent.modbus.regmap import ModbusRead, span

__all__ = ["MAX_ADU", "ModbusDecoder", "request_pdu"]

# "The maximum size of a MODBUS RTU frame is 256 bytes" (MODBUS over Serial
# Line V1.02, section 2.5.1.1): address, 253 bytes of PDU, CRC.
MAX_ADU = 256
_REQUESTS: dict[int, type[ModbusPDU]] = {
    1: ReadCoilsRequest,
    2: ReadDiscreteInputsRequest,
    3: ReadHoldingRegistersRequest,
    4: ReadInputRegistersRequest,
}
_EXCEPTIONS = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    8: "memory parity error", 10: "gateway path unavailable", 11: "gateway target failed",
}


def request_pdu(read: ModbusRead, slave: int) -> ModbusPDU:
    """The pymodbus request for one read of the register map."""
    return _REQUESTS[read.function](address=read.address, count=read.count, dev_id=slave)


class ModbusDecoder(StreamDecoder):
    """Cuts one slave's replies out of a byte stream and turns each poll into a reading."""

    def __init__(self, profile: Profile, slave: int | None = None) -> None:
        if profile.modbus is None:
            raise LocalProtocolError(f"{profile.model} is not a modbus_rtu profile")
        self.profile = profile
        self.map = profile.modbus
        self.slave = profile.modbus.slave if slave is None else slave
        if not 1 <= self.slave <= 247:
            raise LocalProtocolError(f"slave address must be 1..247, got {self.slave}")
        super().__init__(MAX_ADU)
        self._framer = FramerRTU(DecodePDU(is_server=False))
        self._functions = {read.function for read in self.map.reads}
        self._sizes = {(r.function, r.reply_bytes) for r in self.map.reads}
        self._fields = profile.frames[0].fields
        self._expected: int | None = None
        self._blocks: dict[int, bytes | list[bool]] = {}

    # -- requests --------------------------------------------------------------

    def request(self, index: int) -> bytes:
        """The RTU frame asking for read ``index`` of the map; replies are matched to it."""
        self._expected = index
        if index == 0:
            self._blocks = {}
        return bytes(self._framer.buildFrame(request_pdu(self.map.reads[index], self.slave)))

    # -- hunting -----------------------------------------------------------------

    def _candidate(self, index: int) -> bool | None:
        """Whether a reply from our slave may start at ``index`` (``None``: need a byte more)."""
        buffer = self._buffer
        if buffer[index] != self.slave:
            return False
        if index + 1 >= len(buffer):
            return None
        return buffer[index + 1] & 0x7F in self._functions

    def _next(self) -> Event | Signal:
        buffer, position = self._buffer, self._position
        if position >= len(buffer):
            return END_OF_STREAM if self._ended else NEED_DATA
        index = position
        while index < len(buffer):
            candidate = self._candidate(index)
            if candidate is None and not self._ended:
                break
            if candidate:
                break
            index += 1
        if index > position:
            return self._skip(index - position)
        if index >= len(buffer) - 1 and not self._ended:
            return NEED_DATA
        event = self._frame()
        if event is not None:
            return event
        if not self._ended:
            return NEED_DATA
        return self._reject(Reason.TRUNCATED, len(buffer) - position, "the stream ended inside it")

    def _skip(self, count: int) -> Skipped:
        event = Skipped(self.offset, count)
        self._position += count
        return event

    def _reject(self, reason: Reason, raw_length: int, detail: str) -> FrameRejected:
        raw = bytes(self._buffer[self._position : self._position + max(1, raw_length)])
        event = FrameRejected(self.offset, reason, raw, detail)
        self._position += 1
        return event

    def _frame(self) -> Event | None:  # noqa: PLR0911  (one return per verdict reads best)
        position, buffer = self._position, self._buffer
        head = bytes(buffer[position : position + 3])
        function = head[1]
        pdu_class = self._framer.decoder.lookupPduClass(head)
        if pdu_class is None:
            return self._reject(Reason.UNEXPECTED_REPLY, 2, f"function {function} unknown")
        if not function & 0x80:
            if len(head) < 3:
                return None
            if (function, head[2]) not in self._sizes:
                wanted = sorted(size for f, size in self._sizes if f == function)
                return self._reject(
                    Reason.BAD_LENGTH, 3, f"byte count {head[2]}, expected one of {wanted}"
                )
        size = pdu_class.calculateRtuFrameSize(bytes(buffer[position:]))
        if not size or len(buffer) - position < size:
            return None
        frame = bytes(buffer[position : position + size])
        crc = int.from_bytes(frame[-2:], "big")  # pymodbus compares the bytes as sent
        if not FramerRTU.check_CRC(frame[:-2], crc):
            computed = FramerRTU.compute_CRC(frame[:-2])
            return self._reject(
                Reason.BAD_CHECKSUM, size,
                f"crc16_modbus computed {computed:04X} (as sent), frame says {crc:04X}",
            )
        pdu = self._framer.decoder.decode(frame[1:-2])
        if pdu is None:
            return self._reject(Reason.BAD_LENGTH, size, "pymodbus cannot decode the reply")
        if isinstance(pdu, ExceptionResponse):
            code = pdu.exception_code
            return self._reject(
                Reason.MODBUS_EXCEPTION, size,
                f"function {function & 0x7F}: exception {code} ({_EXCEPTIONS.get(code, '?')})",
            )
        return self._accept(pdu, frame)

    def _read_for(self, function: int, byte_count: int) -> int | None:
        reads = self.map.reads
        if self._expected is not None:
            read = reads[self._expected]
            if read.function == function and read.reply_bytes == byte_count:
                return self._expected
        for index, read in enumerate(reads):
            if read.function == function and read.reply_bytes == byte_count:
                return index
        return None

    def _accept(self, pdu: ModbusPDU, frame: bytes) -> Event:
        index = self._read_for(frame[1], frame[2])
        if index is None:  # pragma: no cover - sizes were checked before the CRC
            return self._reject(Reason.UNEXPECTED_REPLY, len(frame), "answers no read")
        read = self.map.reads[index]
        if read.bits:
            block: bytes | list[bool] = [bool(bit) for bit in pdu.bits[: read.count]]
        else:
            block = b"".join(r.to_bytes(2, "big") for r in pdu.registers)
        if index == 0:
            self._blocks = {}
        self._blocks[index] = block
        self._expected = (index + 1) % len(self.map.reads)
        last = len(self.map.reads) - 1
        if index < last or len(self._blocks) < len(self.map.reads):
            return self._consume(Reply(self.offset, f"read{index}", {}, frame))
        blocks, self._blocks = self._blocks, {}
        problem = self._identity(blocks)
        if problem is not None:
            return self._reject(Reason.WRONG_DEVICE, len(frame), problem)
        return self._reading(blocks, frame)

    def _reading(self, blocks: dict[int, bytes | list[bool]], frame: bytes) -> Event:
        """The poll's reading from every read's reply; ``frame`` is the last reply."""
        fields: dict[str, int | float] = {}
        absent: list[str] = []
        flagged: list[str] = []
        for spec in self._fields:
            value = self._value(blocks, spec.table or "", spec.address or 0, spec)
            if value is None:
                absent.append(spec.name)
                continue
            if spec.check(value) is not None:
                why = spec.impossible(value)
                if why is not None:
                    return self._reject(Reason.BAD_VALUE, len(frame), why)
                flagged.append(spec.name)
            fields[spec.name] = value
        if not fields:
            return self._reject(
                Reason.NOT_AVAILABLE, len(frame),
                f"every field is not available: {', '.join(absent)}",
            )
        groups: dict[str, dict[str, int | float]] = {}
        for spec in self._fields:
            if spec.name in fields:
                groups.setdefault(spec.measurement or self.profile.measurement, {})[spec.name] = (
                    fields[spec.name]
                )
        (measurement, main), *more = groups.items()
        return self._consume(Decoded(
            measurement, main, self.offset, frame, "data", tuple(more),
            FieldNotes(tuple(absent), tuple(flagged)) if absent or flagged else None,
        ))

    def _consume(self, event: Decoded | Reply) -> Event:
        self._position += len(event.raw)
        return event

    def _locate(self, table: str, address: int, width: int) -> tuple[int, int]:
        found = self.map.locate(table, address, width)
        if found is None:  # the loader checks this
            raise LocalProtocolError(f"{table} {address} is in no read")
        return found

    def _value(
        self, blocks: dict[int, bytes | list[bool]], table: str, address: int, spec: FieldSpec
    ) -> int | float | None:
        index, at = self._locate(table, address, span(table, spec.type))
        block = blocks[index]
        if isinstance(block, list):
            return block[at]
        if spec.plain:
            return float(spec.scaled(spec.type.unpack(block, 2 * at)))  # one type per field
        value = spec.value(spec.type.unpack(block, 2 * at))
        return None if value is None else float(value)

    def _identity(self, blocks: dict[int, bytes | list[bool]]) -> str | None:
        for table, address, kind, equals in self.map.identity:
            index, at = self._locate(table, address, span(table, kind))
            block = blocks[index]
            assert isinstance(block, bytes)
            value = kind.unpack(block, 2 * at)
            if value != equals:
                return (
                    f"{table} register {address} holds 0x{int(value):04X},"
                    f" expected 0x{equals:04X}"
                )
        return None
