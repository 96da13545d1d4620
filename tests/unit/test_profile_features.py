"""Format features for the PM and CO2 sensors in the field: each decoded, each mistake named.

- ``neg_sum8``: the negated 8-bit sum of Winsen (MH-Z19B, ZH03B answers) and
  Honeywell HPMA115 passive answers;
- ``checksum: none``: frames that carry none (HPMA115 acknowledgements);
- ``layouts``: several start markers, length rules and checksums in one profile;
- field ``add``, ``mask`` and ``not_available``.

Frames are fed whole and one byte at a time; every mistake names file:line,
the key path and what was expected.
"""

from __future__ import annotations

import pytest

from edge_agent.codec import make_decoder
from edge_agent.decoding import (
    Decoded,
    Event,
    FrameRejected,
    Profile,
    ProfileError,
    Reason,
    Reply,
    Skipped,
    StreamDecoder,
    parse_profile,
)
from edge_agent.modbus.decoder import ModbusDecoder
from simulators.frames import encode_frame
from simulators.modbus_slave import encode_replies

HEAD = """\
model: demo
vendor: test
datasheet: test
measurement: indoor
serial: {baudrate: 9600, bytesize: 8, parity: none, stopbits: 1}
"""

# MH-Z19B "read gas concentration" answer: FF 86 HIGH LOW TEMP+40 ... CHECK,
# the check over bytes 1..7 (negated sum) stored in byte 8.
CO2 = HEAD + """\
framing: {start: "FF 86", length: 9}
checksum: {algorithm: neg_sum8, start: 1, end: 8, offset: 8, type: u8}
fields:
  - {name: co2_ppm, offset: 2, type: u16be, unit: ppm, valid: [0, 5000]}
  - {name: temperature_c, offset: 4, type: u8, add: -40, unit: degC}
"""

# Honeywell HPMA115S0 shapes: 32-byte auto-send frames (42 4D, 16-bit sum),
# passive answers 40 LEN CMD DATA... CS with CS = (65536 - sum) mod 256, and
# two-byte acknowledgements without any checksum.
HPMA = HEAD + """\
framing: {start: "42 4D", length_field: {offset: 2, type: u16be, add: 4}}
checksum: {algorithm: sum16, start: 0, end: -2, offset: -2, type: u16be}
layouts:
  passive:
    framing: {start: "40", length_field: {offset: 1, type: u8, add: 3}, max_length: 16}
    checksum: {algorithm: neg_sum8, start: 0, end: -1, offset: -1, type: u8}
  ack:
    framing: {start: "A5 A5", length: 2}
    checksum: none
  nack:
    framing: {start: "96 96", length: 2}
    checksum: none
frames:
  - name: auto_send
    length: 32
    fields:
      - {name: pm2_5_ugm3, offset: 6, type: u16be, unit: ug/m3}
      - {name: pm10_ugm3, offset: 8, type: u16be, unit: ug/m3}
  - name: measuring_results
    layout: passive
    match: {offset: 2, bytes: "04"}
    length: 8
    fields:
      - {name: pm2_5_ugm3, offset: 3, type: u16be, unit: ug/m3}
      - {name: pm10_ugm3, offset: 5, type: u16be, unit: ug/m3}
  - name: ack
    kind: reply
    layout: ack
  - name: nack
    kind: reply
    layout: nack
"""

# One status word holding three values, and a temperature that may be "not available".
WORD = HEAD + """\
framing: {start: "AA", length: 8}
checksum: {algorithm: sum8, start: 1, end: 7, offset: 7, type: u8}
fields:
  - {name: error_code, offset: 1, type: u16be, mask: 0x00FF, unit: "1"}
  - {name: fan_fault, offset: 1, type: u16be, mask: 0x0100, unit: "1"}
  - {name: mode, offset: 1, type: u16be, mask: 0xF000, unit: "1"}
  - {name: temperature_c, offset: 3, type: s16be, scale: 0.1, not_available: 0x7FFF, unit: degC}
  - {name: humidity_pct, offset: 5, type: u16be, scale: 0.1, not_available: [0xFFFF, 0xFFFE],
     unit: "%RH"}
"""

MODBUS = HEAD + """\
protocol: modbus_rtu
modbus:
  slave: 1
  reads: [{table: input, address: 0, count: 3}]
fields:
  - {name: temperature_c, table: input, address: 0, type: s16be, scale: 0.1,
     not_available: 0x7FFF, unit: degC}
  - {name: humidity_pct, table: input, address: 1, type: u16be, scale: 0.1, unit: "%RH"}
  - {name: probe_fault, table: input, address: 2, type: u16be, mask: 0x8000, unit: "1"}
  - {name: probe_count, table: input, address: 2, type: u16be, mask: 0x000F, unit: "1"}
"""


def merged(events: list[Event]) -> list[Event]:
    """Adjacent ``Skipped`` events as one (how garbage splits depends on the reads)."""
    out: list[Event] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, Skipped) and isinstance(last, Skipped):
            out[-1] = Skipped(last.offset, last.count + event.count)
        else:
            out.append(event)
    return out


def run(profile: Profile, data: bytes) -> list[Event]:
    """Every event for ``data``, checked equal whole and one byte at a time."""
    results = []
    for reads in ([data], [data[i : i + 1] for i in range(len(data))]):
        decoder: StreamDecoder = make_decoder(profile)
        events: list[Event] = []
        for chunk in [*reads, b""]:
            decoder.receive_data(chunk)
            events.extend(decoder.events())
        results.append(merged(events))
    assert results[0] == results[1]
    return results[0]


def sealed(body: str) -> bytes:
    """``body`` (hex) followed by its negated 8-bit sum."""
    data = bytes.fromhex(body)
    return data + bytes([-sum(data) & 0xFF])


# -- neg_sum8 and add -----------------------------------------------------------------


def test_datasheet_answer_with_negated_sum_and_temperature_offset() -> None:
    profile = parse_profile(CO2, "demo.yaml")
    frame = bytes.fromhex("FF 86 02 60 47 00 00 00 D1")  # MH-Z19B datasheet example
    [event] = run(profile, frame)
    assert event == Decoded("indoor", {"co2_ppm": 608.0, "temperature_c": 31.0}, 0, frame)


def test_negated_sum_off_by_one_is_bad_checksum() -> None:
    profile = parse_profile(CO2, "demo.yaml")
    events = run(profile, bytes.fromhex("FF 86 02 60 47 00 00 00 D2"))
    assert isinstance(events[0], FrameRejected) and events[0].reason == Reason.BAD_CHECKSUM
    assert "neg_sum8 computed 0xD1, frame says 0xD2" in events[0].detail


def test_add_with_a_decimal_scale_keeps_the_datasheet_digits() -> None:
    text = CO2.replace("type: u8, add: -40,", "type: u8, scale: 0.1, add: -4.5,")
    profile = parse_profile(text, "demo.yaml")
    frame = encode_frame(profile, {"co2_ppm": 400, "temperature_c": 18.7})
    [event] = run(profile, frame)
    assert isinstance(event, Decoded) and event.fields["temperature_c"] == 18.7
    assert frame[4] == 232  # (18.7 + 4.5) / 0.1


# -- layouts and checksum: none ---------------------------------------------------------


def test_three_layouts_in_one_stream() -> None:
    profile = parse_profile(HPMA, "demo.yaml")
    answer = sealed("40 05 04 00 1E 00 22")
    auto = encode_frame(profile, {"pm2_5_ugm3": 12, "pm10_ugm3": 15}, frame="auto_send")
    stream = bytes.fromhex("A5 A5") + answer + b"\x00" + auto + bytes.fromhex("96 96")
    events = run(profile, stream)
    assert events == [
        Reply(0, "ack", {}, bytes.fromhex("A5 A5")),
        Decoded("indoor", {"pm2_5_ugm3": 30.0, "pm10_ugm3": 34.0}, 2, answer,
                "measuring_results"),
        Skipped(10, 1),
        Decoded("indoor", {"pm2_5_ugm3": 12.0, "pm10_ugm3": 15.0}, 11, auto, "auto_send"),
        Reply(43, "nack", {}, bytes.fromhex("96 96")),
    ]
    assert answer[-1] == 0x77  # (65536 - (0x40 + 0x05 + 0x04 + 0x1E + 0x22)) mod 256


def test_each_layout_has_its_own_checksum() -> None:
    profile = parse_profile(HPMA, "demo.yaml")
    bad = bytearray(sealed("40 05 04 00 1E 00 22"))
    bad[-1] ^= 1
    events = run(profile, bytes(bad) + bytes.fromhex("A5 A5"))
    assert isinstance(events[0], FrameRejected) and events[0].reason == Reason.BAD_CHECKSUM
    assert events[0].detail.startswith("neg_sum8")
    assert events[-1] == Reply(8, "ack", {}, bytes.fromhex("A5 A5"))


def test_a_layouts_length_rule_rejects_at_once() -> None:
    profile = parse_profile(HPMA, "demo.yaml")
    events = run(profile, bytes.fromhex("40 FF 04"))  # 258 bytes > max_length 16
    assert isinstance(events[0], FrameRejected) and events[0].reason == Reason.BAD_LENGTH


def test_a_marker_split_across_reads_of_another_layout() -> None:
    profile = parse_profile(HPMA, "demo.yaml")
    decoder = make_decoder(profile)
    events: list[Event] = []
    for chunk in (b"\x01\xa5", b"\xa5\x96", b"\x96", b""):
        decoder.receive_data(chunk)
        events.extend(decoder.events())
    assert [type(e).__name__ for e in events] == ["Skipped", "Reply", "Reply"]


def test_the_encoder_frames_each_kind_by_its_layout() -> None:
    profile = parse_profile(HPMA, "demo.yaml")
    assert encode_frame(profile, {}, frame="ack") == bytes.fromhex("A5 A5")
    answer = encode_frame(profile, {"pm2_5_ugm3": 30, "pm10_ugm3": 34}, frame="measuring_results")
    assert answer == sealed("40 05 04 00 1E 00 22")
    assert profile.layout_of(profile.frame("ack")).checksum is None


def test_checksum_none_on_the_top_level_framing() -> None:
    text = CO2.replace(
        "checksum: {algorithm: neg_sum8, start: 1, end: 8, offset: 8, type: u8}", "checksum: none"
    )
    profile = parse_profile(text, "demo.yaml")
    assert profile.checksum is None
    [event] = run(profile, bytes.fromhex("FF 86 02 60 47 00 00 00 00"))
    assert isinstance(event, Decoded)


# -- mask and not_available --------------------------------------------------------------


def test_masks_split_one_word_and_not_available_leaves_a_field_out() -> None:
    profile = parse_profile(WORD, "demo.yaml")
    frame = encode_frame(profile, {"error_code": 7, "fan_fault": 1, "mode": 3,
                                   "temperature_c": None, "humidity_pct": 45.5})
    assert frame[1:3] == bytes.fromhex("31 07")
    decoder = make_decoder(profile)
    decoder.receive_data(frame)
    [event] = decoder.events()
    assert isinstance(event, Decoded)
    assert event.fields == {"error_code": 7.0, "fan_fault": 1.0, "mode": 3.0,
                            "humidity_pct": 45.5}
    assert event.absent == ("temperature_c",)
    assert decoder.stats.fields_not_available == 1


def test_every_field_not_available_is_a_counted_rejection() -> None:
    text = WORD.replace("mask: 0x00FF,", "mask: 0x00FF, not_available: 0xFF,").replace(
        "mask: 0x0100,", "mask: 0x0100, not_available: 1,").replace(
        "mask: 0xF000,", "mask: 0xF000, not_available: 15,")
    profile = parse_profile(text, "demo.yaml")
    frame = encode_frame(profile, dict.fromkeys(
        ("error_code", "fan_fault", "mode", "temperature_c", "humidity_pct")))
    event = run(profile, frame)[0]
    assert isinstance(event, FrameRejected) and event.reason == Reason.NOT_AVAILABLE
    assert "every field is not available" in event.detail


def test_not_available_in_a_second_measurement_keeps_the_first() -> None:
    text = WORD.replace("unit: degC}", "unit: degC, measurement: climate}")
    profile = parse_profile(text, "demo.yaml")
    frame = encode_frame(profile, {"temperature_c": None, "humidity_pct": 50})
    [event] = run(profile, frame)
    assert isinstance(event, Decoded)
    assert event.readings == (("indoor", {"error_code": 0.0, "fan_fault": 0.0, "mode": 0.0,
                                          "humidity_pct": 50.0}),)


def test_modbus_fields_with_masks_and_not_available() -> None:
    profile = parse_profile(MODBUS, "demo.yaml")
    replies = encode_replies(profile, {"temperature_c": None, "humidity_pct": 40.5,
                                       "probe_fault": 1, "probe_count": 2})
    decoder = ModbusDecoder(profile)
    decoder.request(0)
    decoder.receive_data(b"".join(replies))
    [event] = decoder.events()
    assert isinstance(event, Decoded)
    assert event.fields == {"humidity_pct": 40.5, "probe_fault": 1.0, "probe_count": 2.0}
    assert event.absent == ("temperature_c",)
    assert decoder.stats.fields_not_available == 1


# -- mistakes ------------------------------------------------------------------------------

ERRORS: list[tuple[str, str, str, str, str, str]] = [
    # id, base, old, new, key path, expected text
    ("mask_on_signed", WORD, "offset: 1, type: u16be, mask: 0x00FF", "offset: 1, type: s16be,"
     " mask: 0x00FF", "fields[0].mask", "a mask needs an unsigned integer type"),
    ("mask_not_adjacent", WORD, "mask: 0x00FF", "mask: 0x0F0F", "fields[0].mask",
     "expected a mask of adjacent bits"),
    ("mask_wider_than_type", WORD, "offset: 1, type: u16be, mask: 0x00FF",
     "offset: 1, type: u8, mask: 0x1FF", "fields[0].mask", "expected a mask within u8 (1..0xFF)"),
    ("masks_share_bits", WORD, "mask: 0x0100", "mask: 0x0180", "fields[1].offset",
     "(masks 0x180 and 0xFF share bits)"),
    ("masked_fields_different_types", WORD, "offset: 1, type: u16be, mask: 0x0100",
     "offset: 1, type: u8, mask: 0x01", "fields[1].offset", "same offset and type"),
    ("field_overlaps_field", WORD, "name: humidity_pct, offset: 5",
     "name: humidity_pct, offset: 4", "fields[4].offset",
     "expected field humidity_pct (bytes 4..5) not to overlap field temperature_c (bytes 3..4)"),
    ("not_available_on_float", WORD, "type: s16be, scale: 0.1, not_available: 0x7FFF",
     "type: float32be, scale: 0.1, not_available: 0x7FFF", "fields[3].not_available",
     "not_available needs an integer type"),
    ("not_available_out_of_range", WORD, "not_available: [0xFFFF, 0xFFFE]",
     "not_available: [0xFFFF, 70000]", "fields[4].not_available[1]",
     "expected raw values 0..65535 (u16be), got 70000"),
    ("not_available_outside_the_mask", WORD, "mask: 0x0100,", "mask: 0x0100, not_available: 2,",
     "fields[1].not_available", "expected raw values 0..1 (the mask), got 2"),
    ("add_not_a_number", CO2, "add: -40", "add: minus40", "fields[1].add",
     "expected a number added after scaling, e.g. -40, got 'minus40'"),
    ("checksum_typo", CO2, "checksum: {algorithm: neg_sum8, start: 1, end: 8, offset: 8, type: u8}",
     "checksum: nnone", "checksum", "or none, got 'nnone'"),
    ("binary_without_checksum_key", CO2,
     "checksum: {algorithm: neg_sum8, start: 1, end: 8, offset: 8, type: u8}\n", "",
     "checksum", "required key is missing"),
    ("unknown_layout", HPMA, "layout: passive", "layout: pasive", "frames[1].layout",
     "expected one of passive, ack, nack (under layouts), got 'pasive'"),
    ("layout_without_checksum", HPMA, "    checksum: none\n  nack:", "  nack:",
     "layouts.ack.checksum", "required key is missing"),
    ("unused_layout", HPMA, "  nack:\n",
     '  spare:\n    framing: {start: "77", length: 2}\n    checksum: none\n  nack:\n',
     "layouts.spare.framing", "no frame kind uses layout 'spare'"),
    ("start_begins_another", HPMA, 'start: "A5 A5"', 'start: "42"', "layouts.ack.framing.start",
     "a start marker that neither begins nor is begun by layout default's (42 4D)"),
    ("layout_named_default", HPMA, "  nack:\n", "  default:\n", "layouts.default",
     "a lower_snake_case layout name other than 'default'"),
    ("text_layout", HPMA, '{start: "96 96", length: 2}',
     '{start: "96 96", end: "0A", max_length: 9}', "layouts.nack.framing",
     "expected a binary layout"),
    ("layout_without_layouts", CO2.replace("fields:\n", "frames:\n  - name: data\n    fields:\n"),
     "name: data\n", "name: data\n    layout: other\n", "frames[0].layout",
     "there are no layouts"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[case[0] for case in ERRORS])
def test_mistakes_name_line_key_and_expectation(case: tuple[str, ...]) -> None:
    case_id, base, old, new, path, expected = case
    assert old in base, case_id
    text = base.replace(old, new, 1)
    with pytest.raises(ProfileError) as caught:
        parse_profile(text, "demo.yaml")
    error = caught.value
    assert error.path == path, str(error)
    assert expected in error.message, str(error)
    assert error.line is not None and str(error).startswith(f"demo.yaml:{error.line}: {path}: ")
    line = text.splitlines()[error.line - 1]
    assert BLAMED.get(case_id, new.strip().splitlines()[-1].strip() if new.strip() else "?") in (
        line
    ), (str(error), line)


# The text on the line an error names, where it is not the replacement's last line.
BLAMED = {
    "masks_share_bits": "name: fan_fault",
    "masked_fields_different_types": "name: fan_fault",
    "field_overlaps_field": "name: humidity_pct",
    "not_available_on_float": "name: temperature_c",
    "not_available_out_of_range": "not_available: [0xFFFF, 70000]",
    "binary_without_checksum_key": "model: demo",  # a missing top-level key: the file's first
    "layout_without_checksum": 'framing: {start: "A5 A5"',  # a missing key: its mapping's line
    "unused_layout": 'framing: {start: "77"',
    "layout_named_default": "default:",
    "text_layout": 'framing: {start: "96 96"',
}


def test_modbus_fields_reading_one_register_twice_is_an_error() -> None:
    text = MODBUS.replace("name: humidity_pct, table: input, address: 1",
                          "name: humidity_pct, table: input, address: 0")
    with pytest.raises(ProfileError) as caught:
        parse_profile(text, "demo.yaml")
    assert caught.value.path == "fields[1].address"
    assert "an address not read by field temperature_c (input 0..0)" in caught.value.message
    text = MODBUS.replace("mask: 0x000F", "mask: 0xC000")
    with pytest.raises(ProfileError, match=r"fields\[3\].address: .*disjoint masks"):
        parse_profile(text, "demo.yaml")


COMMANDS = """\
commands:
  framing: {start: "68", length_field: {offset: 1, type: u8, add: 3}, max_length: 16}
  checksum: {algorithm: neg_sum8, start: 0, end: -1, offset: -1, type: u8}
  query: {send: "68 01 04 93", reply_frame: measuring_results}
  stop: {send: "68 01 02 95", reply: "A5 A5"}
polling:
  default: passive
  modes:
    passive: {start: [stop], poll: [query], interval: 1.0}
"""


def test_commands_with_a_negated_sum_answered_by_another_layout() -> None:
    profile = parse_profile(HPMA + COMMANDS, "demo.yaml")
    assert profile.commands is not None
    assert profile.commands.by_role["stop"].reply == bytes.fromhex("A5 A5")
    unchecked = COMMANDS.replace(
        "{algorithm: neg_sum8, start: 0, end: -1, offset: -1, type: u8}", "none")
    assert parse_profile(HPMA + unchecked, "demo.yaml").commands is not None
    with pytest.raises(ProfileError, match=r"commands\.stop\.send: expected one command frame"):
        parse_profile(HPMA + COMMANDS.replace("68 01 02 95", "68 01 02 96"), "demo.yaml")
