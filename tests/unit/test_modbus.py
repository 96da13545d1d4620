"""ModbusDecoder (pymodbus underneath) against frames from the Modbus literature, not our slave."""

from __future__ import annotations

import struct

import pytest

from edge_agent.decoding import (
    Decoded,
    FrameRejected,
    LocalProtocolError,
    ProfileError,
    Reason,
    Reply,
    Skipped,
    parse_profile,
)
from edge_agent.decoding.checksums import crc16_modbus
from edge_agent.modbus.decoder import ModbusDecoder

# The read-holding-registers exchange worked through on simplymodbus.ca:
# request 11 03 00 6B 00 03 76 87, answer 11 03 06 AE41 5652 4340 49AD.
SIMPLY = parse_profile(
    """
model: simply
vendor: any Modbus RTU slave
datasheet: simplymodbus.ca, function 03
measurement: demo
protocol: modbus_rtu
serial: {baudrate: 9600, bytesize: 8, parity: even, stopbits: 1}
modbus:
  slave: 0x11
  reads: [{table: holding, address: 0x6B, count: 3}]
fields:
  - {name: register_107, table: holding, address: 0x6B, type: u16be, unit: "1"}
  - {name: register_108, table: holding, address: 0x6C, type: u16be, unit: "1"}
  - {name: register_109, table: holding, address: 0x6D, type: u16be, unit: "1"}
""",
    "simply (inline)",
)
REQUEST = bytes.fromhex("11 03 00 6B 00 03 76 87")
ANSWER = bytes.fromhex("11 03 06 AE 41 56 52 43 40 49 AD")


def feed(decoder: ModbusDecoder, *reads: bytes) -> list[object]:
    events: list[object] = []
    for data in [*reads, b""]:
        decoder.receive_data(data)
        events.extend(decoder.events())
    return events


def rtu(hex_text: str) -> bytes:
    data = bytes.fromhex(hex_text)
    return data + crc16_modbus(data).to_bytes(2, "little")


def test_request_is_the_documented_one() -> None:
    assert ModbusDecoder(SIMPLY).request(0) == REQUEST


def test_answer_decodes_to_the_documented_registers() -> None:
    [event] = feed(ModbusDecoder(SIMPLY), ANSWER)
    assert isinstance(event, Decoded)
    assert event.fields == {"register_107": 0xAE41, "register_108": 0x5652, "register_109": 0x4340}
    assert event.raw == ANSWER


def test_answer_one_byte_at_a_time_behind_garbage() -> None:
    garbage = bytes.fromhex("00 FF 11 7F 55")  # 11 7F: our slave, but no function we read
    events = feed(ModbusDecoder(SIMPLY), *[bytes([b]) for b in garbage + ANSWER])
    assert [type(e) for e in events][-1] is Decoded
    assert sum(e.count for e in events if isinstance(e, Skipped)) == len(garbage)


def test_crc_byte_swapped_is_rejected_and_a_good_answer_behind_it_is_kept() -> None:
    swapped = ANSWER[:-2] + ANSWER[:-3:-1]
    events = feed(ModbusDecoder(SIMPLY), swapped + ANSWER)
    assert isinstance(events[0], FrameRejected) and events[0].reason == Reason.BAD_CHECKSUM
    assert isinstance(events[-1], Decoded) and events[-1].offset == len(swapped)


def test_exception_response_names_the_exception() -> None:
    [rejected, skipped] = feed(ModbusDecoder(SIMPLY), rtu("11 83 02"))
    assert isinstance(rejected, FrameRejected) and rejected.reason == Reason.MODBUS_EXCEPTION
    assert rejected.detail == "function 3: exception 2 (illegal data address)"
    assert skipped == Skipped(1, 4)


def test_another_slaves_answer_is_skipped() -> None:
    other = bytes([0x12]) + ANSWER[1:-2]
    other += crc16_modbus(other).to_bytes(2, "little")
    assert feed(ModbusDecoder(SIMPLY), other) == [Skipped(0, len(other))]


def test_slave_address_can_be_overridden() -> None:
    decoder = ModbusDecoder(SIMPLY, slave=0x12)
    assert decoder.request(0)[0] == 0x12
    with pytest.raises(LocalProtocolError, match=r"1\.\.247"):
        ModbusDecoder(SIMPLY, slave=0)


def test_wrong_byte_count_is_decided_before_waiting() -> None:
    decoder = ModbusDecoder(SIMPLY)
    decoder.receive_data(bytes.fromhex("11 03 F0"))  # 240 bytes would follow; we read 6
    event = decoder.next_event()
    assert isinstance(event, FrameRejected) and event.reason == Reason.BAD_LENGTH


def test_truncated_answer_at_end_of_stream() -> None:
    events = feed(ModbusDecoder(SIMPLY), ANSWER[:6])
    assert isinstance(events[0], FrameRejected) and events[0].reason == Reason.TRUNCATED


WORD_SWAPPED = parse_profile(
    """
model: meter
vendor: any
datasheet: none
measurement: power
protocol: modbus_rtu
serial: {baudrate: 9600, bytesize: 8, parity: none, stopbits: 1}
modbus:
  slave: 1
  reads: [{table: input, address: 0, count: 4}, {table: coil, address: 8, count: 3}]
fields:
  - {name: voltage_v, table: input, address: 0, type: float32cdab, unit: V, valid: [0, 300]}
  - {name: current_ma, table: input, address: 2, type: s32be, scale: 0.5, unit: mA}
  - {name: relay, table: coil, address: 10, type: bool, unit: "1"}
""",
    "meter (inline)",
)


def test_word_swapped_float_signed_long_and_a_coil() -> None:
    decoder = ModbusDecoder(WORD_SWAPPED)
    abcd = struct.pack(">f", 230.5)  # 43 66 80 00 -> sent low word first: 80 00 43 66
    registers = abcd[2:] + abcd[:2] + struct.pack(">i", -40)
    first = rtu("01 04 08 " + registers.hex())
    second = rtu("01 01 01 04")  # coils 8, 9, 10 -> bits 0, 0, 1
    events = feed(decoder, first, second)
    assert isinstance(events[0], Reply) and events[0].frame == "read0"
    assert isinstance(events[1], Decoded)
    assert events[1].fields == {"voltage_v": 230.5, "current_ma": -20.0, "relay": True}


def test_register_map_mistakes_name_the_line() -> None:
    text = """
model: bad
vendor: any
datasheet: none
measurement: demo
protocol: modbus_rtu
serial: {baudrate: 9600, bytesize: 8, parity: none, stopbits: 1}
modbus:
  slave: 1
  reads: [{table: input, address: 0, count: 2}]
fields:
  - {name: level_dba, table: input, address: 2, type: u16be, unit: dB(A)}
"""
    with pytest.raises(ProfileError) as caught:
        parse_profile(text, "bad.yaml")
    assert str(caught.value).startswith("bad.yaml:12: fields[0].address: expected an address that")
    with pytest.raises(ProfileError, match=r"fields\[0\].type: expected bool"):
        parse_profile(text.replace("table: input, address: 2, type: u16be",
                                   "table: discrete, address: 0, type: u16be").replace(
            "reads: [{table: input", "reads: [{table: discrete"), "bad.yaml")
    with pytest.raises(ProfileError, match="framing: not used with protocol: modbus_rtu"):
        parse_profile(text + 'framing: {start: "01"}\n', "bad.yaml")
