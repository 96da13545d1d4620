"""FrameDecoder, checksums and encode_frame, fed bytes and checked by events; no mocks.

Profiles for other sensor families are written inline (as they would be in
firmware_profiles/) to show that the core handles them without naming them:
a fixed-length frame with an end byte (Nova SDS011), byte stuffing with an
inverted sum (Sensirion SHDLC) and a CRC-16 (Modbus RTU). Their frames come
from the vendors' documents or are stuffed by hand, not from our encoder.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from edge_agent import decoding
from edge_agent.decoding import (
    CHECKSUMS,
    END_OF_STREAM,
    NEED_DATA,
    Decoded,
    DecodingError,
    FrameDecoder,
    FrameRejected,
    LocalProtocolError,
    Profile,
    Reason,
    Skipped,
    load_profile,
    parse_profile,
)
from simulators.frames import encode_frame

ROOT = Path(__file__).resolve().parents[2]
PMS5003 = load_profile(ROOT / "firmware_profiles" / "pms5003.yaml")

SDS011 = parse_profile(
    """
model: sds011
vendor: Nova Fitness
datasheet: Laser Dust Sensor Control Protocol V1.3
measurement: particulate
serial: {baudrate: 9600, bytesize: 8, parity: none, stopbits: 1}
framing: {start: "AA C0", length: 10, end: "AB"}
checksum: {algorithm: sum8, start: 2, end: 8, offset: 8, type: u8}
fields:
  - {name: pm2_5_ugm3, offset: 2, type: u16le, scale: 0.1, unit: ug/m3, valid: [0, 999.9]}
  - {name: pm10_ugm3, offset: 4, type: u16le, scale: 0.1, unit: ug/m3, valid: [0, 999.9]}
  - {name: device_id, offset: 6, type: u16le, unit: "1"}
""",
    "sds011 (inline)",
)
# The example frame from the SDS011 control protocol V1.3: PM2.5 = 0x04D4 / 10,
# PM10 = 0x0A3A / 10, device id A1 60; check = low byte of D4+04+3A+0A+A1+60 =
# 0x21D -> 1D.
SDS011_EXAMPLE = bytes.fromhex("AA C0 D4 04 3A 0A A1 60 1D AB")

SHDLC = parse_profile(
    """
model: shdlc_demo
vendor: Sensirion
datasheet: SPS30 datasheet, section 5 (SHDLC)
measurement: demo
serial: {baudrate: 115200, bytesize: 8, parity: none, stopbits: 1}
framing:
  start: "7E"
  end: "7E"
  length_field: {offset: 4, type: u8, add: 7}   # 7E ADR CMD STATE L data CHK 7E
  min_length: 9
  max_length: 9
  escape: {byte: "7D", xor: "20", escaped: "7E 7D 11 13"}
checksum: {algorithm: shdlc, start: 1, end: -2, offset: -2, type: u8}
fields:
  - {name: command, offset: 2, type: u8, unit: "1"}
  - {name: value, offset: 5, type: u16be, unit: "1"}
""",
    "shdlc (inline)",
)
# Hand-made MISO frame: ADR 00, CMD 03, STATE 00, L 02, data 7E 11. Checksum over
# 00 03 00 02 7E 11 = 0x94, inverted 0x6B. Stuffed: 7E -> 7D 5E, 11 -> 7D 31.
SHDLC_FRAME = bytes.fromhex("7E 00 03 00 02 7D 5E 7D 31 6B 7E")

MODBUS = parse_profile(
    """
model: modbus_demo
vendor: any Modbus RTU slave
datasheet: MODBUS over serial line V1.02
measurement: demo
serial: {baudrate: 9600, bytesize: 8, parity: even, stopbits: 1}
framing:
  start: "11 03"                                # slave 0x11, read holding registers
  length_field: {offset: 2, type: u8, add: 5}   # byte count + address, function, count, CRC
  max_length: 11
checksum: {algorithm: crc16_modbus, start: 0, end: -2, offset: -2, type: u16le}
fields:
  - {name: register_107, offset: 3, type: u16be, unit: "1"}
  - {name: register_108, offset: 5, type: u16be, unit: "1"}
  - {name: register_109, offset: 7, type: u16be, unit: "1"}
""",
    "modbus (inline)",
)
# The read-holding-registers response worked through on simplymodbus.ca.
MODBUS_RESPONSE = bytes.fromhex("11 03 06 AE 41 56 52 43 40 49 AD")

FLOATS = parse_profile(
    """
model: float_demo
vendor: none
datasheet: none
measurement: demo
serial: {baudrate: 9600, bytesize: 8, parity: none, stopbits: 1}
framing: {start: "FA", length: 8}
checksum: {algorithm: sum8, start: 0, end: -1, offset: -1, type: u8}
fields:
  - {name: temperature_c, offset: 1, type: float32be, unit: degC}
  - {name: offset_c, offset: 5, type: s16be, scale: 0.1, unit: degC, valid: [-40, 85]}
""",
    "floats (inline)",
)


def feed(profile: Profile, *reads: bytes, end: bool = True) -> list[object]:
    decoder = FrameDecoder(profile)
    events: list[object] = []
    for data in [*reads, b""] if end else reads:
        decoder.receive_data(data)
        events.extend(decoder.events())
    return events


# -- checksums -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        # the rtt-pmsxx capture in tests/profiles/pms5003/, bytes 0..29
        (
            "sum16",
            "424d001c 0003 0004 0007 0004 0005 0008 031b 00f9 001b 0006 0003 0003 9a00",
            0x02A2,
        ),
        ("sum8", "D4 04 3A 0A A1 60", 0x1D),  # SDS011 protocol V1.3 example
        ("shdlc", "00 00 02 01 03", 0xF9),  # SPS30 datasheet: start measurement, MOSI
        ("crc16_modbus", "31 32 33 34 35 36 37 38 39", 0x4B37),  # CRC catalogue check
        ("crc16_modbus", "11 03 00 6B 00 03", 0x8776),  # simplymodbus.ca request
        # Winsen MH-Z19B / ZH03B read command FF 01 86 00 00 00 00 00 79, bytes 1..7
        ("neg_sum8", "01 86 00 00 00 00 00", 0x79),
        # MH-Z19B datasheet answer FF 86 02 60 47 00 00 00 D1, bytes 1..7
        ("neg_sum8", "86 02 60 47 00 00 00", 0xD1),
        # ZH03B: switch to question-and-answer mode, FF 01 78 41 00 00 00 00 46
        ("neg_sum8", "01 78 41 00 00 00 00", 0x46),
        # Honeywell HPMA115S0 "read particle measuring results" 68 01 04 93: (65536 - sum) % 256
        ("neg_sum8", "68 01 04", 0x93),
        ("neg_sum8", "68 01 40", 0x57),  # HPMA115S0 enable auto send, 68 01 40 57
        ("neg_sum8", "", 0x00),  # nothing covered: (256 - 0) % 256
    ],
)
def test_checksum_vectors(name: str, data: str, expected: int) -> None:
    assert CHECKSUMS[name].compute(bytes.fromhex(data)) == expected


def test_checksum_registry_is_a_table() -> None:
    assert sorted(CHECKSUMS) == ["crc16_modbus", "neg_sum8", "shdlc", "sum16", "sum8"]
    assert {a.size for a in CHECKSUMS.values()} == {1, 2}
    with pytest.raises(TypeError):
        CHECKSUMS["xor"] = CHECKSUMS["sum8"]  # type: ignore[index]


# -- other families: the core names no model -------------------------------------


def test_sds011_datasheet_frame() -> None:
    [event] = feed(SDS011, SDS011_EXAMPLE)
    assert event == Decoded(
        "particulate",
        {"pm2_5_ugm3": 123.6, "pm10_ugm3": 261.8, "device_id": 0x60A1},
        0,
        SDS011_EXAMPLE,
    )


def test_sds011_wrong_tail_byte_is_missing_end() -> None:
    events = feed(SDS011, SDS011_EXAMPLE[:-1] + b"\xac")
    assert isinstance(events[0], FrameRejected)
    assert events[0].reason == Reason.MISSING_END
    assert events[0].detail == "expected ab, got ac"
    assert events[1:] == [Skipped(1, 9)]


def test_shdlc_frame_is_unstuffed_before_checking() -> None:
    [event] = feed(SHDLC, SHDLC_FRAME)
    assert event == Decoded("demo", {"command": 3, "value": 0x7E11}, 0, SHDLC_FRAME)


def test_shdlc_invalid_escape_is_rejected() -> None:
    events = feed(SHDLC, bytes.fromhex("7E 00 03 00 02 7D 00 7D 31 6B 7E"))
    assert isinstance(events[0], FrameRejected)
    assert events[0].reason == Reason.BAD_ESCAPE
    assert events[0].raw == bytes.fromhex("7E 00 03 00 02 7D 00")


def test_modbus_response_with_crc() -> None:
    [event] = feed(MODBUS, MODBUS_RESPONSE)
    assert isinstance(event, Decoded)
    assert event.fields == {"register_107": 0xAE41, "register_108": 0x5652, "register_109": 0x4340}


def test_modbus_crc_byte_swapped_is_rejected() -> None:
    events = feed(MODBUS, MODBUS_RESPONSE[:-2] + MODBUS_RESPONSE[:-3:-1])
    assert isinstance(events[0], FrameRejected)
    assert events[0].reason == Reason.BAD_CHECKSUM
    assert events[0].detail == "crc16_modbus computed 0xAD49, frame says 0x49AD"


def test_scaled_signed_and_float_fields() -> None:
    frame = encode_frame(FLOATS, {"temperature_c": 21.5, "offset_c": -12.5})
    assert frame[5:7] == (-125).to_bytes(2, "big", signed=True)
    [event] = feed(FLOATS, frame)
    assert isinstance(event, Decoded)
    assert event.fields == {"temperature_c": 21.5, "offset_c": -12.5}


def test_nan_is_never_decoded() -> None:
    body = b"\xfa" + bytes.fromhex("7F C0 00 00") + b"\x00\x00"
    events = feed(FLOATS, body + bytes([sum(body) & 0xFF]))
    assert isinstance(events[0], FrameRejected)
    assert events[0].reason == Reason.BAD_VALUE  # was out_of_range: outside valid is now kept
    assert "not a finite number" in events[0].detail


def test_out_of_range_is_kept_and_names_the_field() -> None:
    # Until extreme readings became data this frame was rejected as out_of_range.
    frame = encode_frame(FLOATS, {"offset_c": 85.1})
    [decoded] = feed(FLOATS, frame)
    assert isinstance(decoded, Decoded)
    assert decoded.fields["offset_c"] == 85.1
    assert decoded.flagged == ("offset_c",)


# -- the encoder against frames it did not make ----------------------------------


@pytest.mark.parametrize(
    ("profile", "values", "frame"),
    [
        (SDS011, {"pm2_5_ugm3": 123.6, "pm10_ugm3": 261.8, "device_id": 0x60A1}, SDS011_EXAMPLE),
        (SHDLC, {"command": 3, "value": 0x7E11}, SHDLC_FRAME),
        (
            MODBUS,
            {"register_107": 0xAE41, "register_108": 0x5652, "register_109": 0x4340},
            MODBUS_RESPONSE,
        ),
    ],
    ids=["sds011", "shdlc", "modbus"],
)
def test_encoder_reproduces_documented_frames(
    profile: Profile, values: dict[str, float], frame: bytes
) -> None:
    assert encode_frame(profile, values) == frame


def test_encoder_refuses_what_the_profile_cannot_carry() -> None:
    with pytest.raises(LocalProtocolError, match="no field"):
        encode_frame(PMS5003, {"pm25": 3})
    with pytest.raises(LocalProtocolError, match="outside u16be"):
        encode_frame(PMS5003, {"count_0_3um_per_0_1l": 65536})
    with pytest.raises(LocalProtocolError, match=r"data frames are 32\.\.32 bytes"):
        encode_frame(PMS5003, {}, length=40)
    with pytest.raises(LocalProtocolError):
        encode_frame(SDS011, {"pm2_5_ugm3": float("nan")})


def test_unset_fields_are_zero() -> None:
    frame = encode_frame(PMS5003, {"pm2_5_ugm3": 7})
    assert frame[4:30] == bytes(9) + b"\x07" + bytes(16)


# -- the sans-IO contract --------------------------------------------------------


def test_sentinels() -> None:
    decoder = FrameDecoder(PMS5003)
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"")
    assert decoder.next_event() is END_OF_STREAM
    decoder.receive_data(b"")  # saying it twice is harmless
    assert decoder.next_event() is END_OF_STREAM


def test_api_misuse_is_a_local_error() -> None:
    decoder = FrameDecoder(PMS5003)
    with pytest.raises(LocalProtocolError, match="takes bytes"):
        decoder.receive_data("42 4D")  # type: ignore[arg-type]
    decoder.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after the end"):
        decoder.receive_data(b"\x42")
    assert issubclass(LocalProtocolError, DecodingError)


def test_buffer_is_bounded_by_one_frame_plus_one_read() -> None:
    decoder = FrameDecoder(PMS5003)
    assert decoder.buffer_limit == 32
    frame = encode_frame(PMS5003, {"pm2_5_ugm3": 9})
    decoder.receive_data(frame[:31])  # an incomplete frame may wait in the buffer
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"\x00" * 500)  # one read of any size is accepted
    with pytest.raises(LocalProtocolError, match="until NEED_DATA"):
        decoder.receive_data(b"\x00")  # a second one is not, until drained
    assert [type(e) for e in decoder.events()] == [FrameRejected, Skipped]
    decoder.receive_data(frame)
    assert [type(e) for e in decoder.events()] == [Decoded]


def test_bad_length_is_decided_without_waiting_for_the_frame() -> None:
    decoder = FrameDecoder(PMS5003)
    decoder.receive_data(bytes.fromhex("42 4D FF FF"))
    event = decoder.next_event()
    assert isinstance(event, FrameRejected)
    assert event.reason == Reason.BAD_LENGTH
    # the data frame (32) and the 8-byte answer to a command are the only lengths
    assert event.detail == "length field gives 65539 bytes, expected 8, 32"


def test_offsets_are_absolute_across_reads_and_stats_count() -> None:
    good = encode_frame(PMS5003, {"pm10_ugm3": 30})
    bad = good[:-1] + bytes([good[-1] ^ 1])
    decoder = FrameDecoder(PMS5003)
    seen: list[object] = []
    for data in (b"\x00\x01", good, bad, good[:5], good[5:], b""):
        decoder.receive_data(data)
        seen.extend(decoder.events())
    offsets = [(type(e).__name__, e.offset) for e in seen]  # type: ignore[attr-defined]
    assert offsets == [
        ("Skipped", 0),
        ("Decoded", 2),
        ("FrameRejected", 34),
        ("Skipped", 35),
        ("Decoded", 66),
    ]
    assert decoder.offset == 98
    stats = decoder.stats
    assert (stats.bytes_received, stats.frames_ok, stats.bytes_skipped) == (98, 2, 33)
    assert stats.rejected == {"bad_checksum": 1}
    assert stats.frames_rejected == 1


def test_events_are_frozen_slotted_and_validated() -> None:
    event = Skipped(0, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.count = 2  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    with pytest.raises(LocalProtocolError):
        Skipped(0, 0)
    with pytest.raises(LocalProtocolError):
        FrameRejected(0, Reason.BAD_CHECKSUM, b"")
    with pytest.raises(LocalProtocolError):
        Decoded("m", {}, -1, b"x")


def test_public_face_is_explicit() -> None:
    assert sorted(decoding.__all__) == sorted(set(decoding.__all__))
    for name in decoding.__all__:
        assert hasattr(decoding, name), name


def test_core_does_no_io() -> None:
    """No decoding module imports I/O, clocks, threads or async machinery."""
    forbidden = {"socket", "asyncio", "serial", "time", "threading", "os", "sqlite3", "paho"}
    for path in sorted((ROOT / "edge_agent" / "decoding").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & forbidden, f"{path.name}: {names}"
