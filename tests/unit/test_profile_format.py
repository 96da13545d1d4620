"""The profile format beyond one frame: frame kinds, text lines, commands, polling; and its errors.

Each mistake must name file:line, the key path and what was expected, like the
checks in test_profile_validation.py. A base profile with two frame kinds,
commands and polling is valid; each case breaks one thing.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import NamedTuple

import pytest

from edge_agent import decode_cmd
from edge_agent.decoding import (
    Decoded,
    FrameDecoder,
    FrameRejected,
    ProfileError,
    Reason,
    Reply,
    load_profile,
    load_profiles,
    parse_profile,
)
from simulators.emulator import FrameEmulator

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
# Two frame kinds, commands and polling (SDS011 layout).
model: demo
vendor: Nova Fitness
datasheet: Laser Dust Sensor Control Protocol V1.3
measurement: particulate
serial: {baudrate: 9600, bytesize: 8, parity: none, stopbits: 1}
framing: {start: "AA", length: 10, end: "AB"}
checksum: {algorithm: sum8, start: 2, end: 8, offset: 8, type: u8}
frames:
  - name: report
    match: {offset: 1, bytes: "C0"}
    fields:
      - {name: pm2_5_ugm3, offset: 2, type: u16le, scale: 0.1, unit: ug/m3, valid: [0, 999.9]}
      - {name: temperature_c, offset: 4, type: s16le, scale: 0.1, unit: degC, measurement: climate}
  - name: reply
    kind: reply
    match: {offset: 1, bytes: "C5"}
    fields:
      - {name: command, offset: 2, type: u8, unit: "1"}
commands:
  framing: {start: "AA B4", length: 19, end: "AB"}
  checksum: {algorithm: sum8, start: 2, end: 17, offset: 17, type: u8}
  sleep:
    send: "AA B4 06 01 00 00 00 00 00 00 00 00 00 00 00 FF FF 05 AB"
    reply: "AA C5 06 01 00 00 A1 60 08 AB"
  query:
    send: "AA B4 04 00 00 00 00 00 00 00 00 00 00 00 00 FF FF 02 AB"
    reply_frame: report
polling:
  default: passive
  modes:
    passive: {poll: [query], interval: 1.0}
  reply_timeout: 1.0
"""


def test_base_profile_is_valid_and_splits_measurements() -> None:
    profile = parse_profile(BASE, "demo.yaml")
    assert [f.name for f in profile.frames] == ["report", "reply"]
    assert profile.measurements == ("particulate", "climate")
    decoder = FrameDecoder(profile)
    # 123.6 ug/m3, -10.0 degC; D4+04+9C+FF+A1+60 = 0x374 -> 74
    frame = bytes.fromhex("AA C0 D4 04 9C FF A1 60 74 AB")
    decoder.receive_data(frame + bytes.fromhex("AA C5 06 01 00 00 A1 60 08 AB"))
    [reading, reply] = list(decoder.events())
    assert isinstance(reading, Decoded) and reading.frame == "report"
    assert reading.readings == (("particulate", {"pm2_5_ugm3": 123.6}),
                                ("climate", {"temperature_c": -10.0}))
    answer = bytes.fromhex("AA C5 06 01 00 00 A1 60 08 AB")
    assert reply == Reply(10, "reply", {"command": 6}, answer)


class Case(NamedTuple):
    id: str
    old: str
    new: str
    blamed: str  # a fragment of the new text; the error names the line it starts on
    key_path: str
    expected: str


CASES = [
    Case("command_with_a_wrong_checksum", "FF FF 05 AB", "FF FF 06 AB", 'send: "AA B4 06',
         "commands.sleep.send", "expected one command frame (a wake-up byte may come first)"
         " that passes the commands' framing and checksum; decoding gives: rejected"),
    Case("reply_the_profile_would_reject", "A1 60 08 AB", "A1 60 09 AB", 'reply: "AA C5',
         "commands.sleep.reply", "expected one frame of a reply kind that the profile decodes"),
    Case("reply_frame_unknown", "reply_frame: report", "reply_frame: answer", "reply_frame: answer",
         "commands.query.reply_frame", "expected a frame kind: report, reply, got 'answer'"),
    Case("unknown_command_role", "  query:\n", "  read_now:\n", "read_now:", "commands.read_now",
         "unknown key; expected one of framing, checksum, wake, sleep"),
    Case("mode_uses_an_undefined_role", "poll: [query]", "poll: [wake]", "wake]",
         "polling.modes.passive.poll[0]", "expected a command role defined under commands"),
    Case("poll_without_interval", "poll: [query], interval: 1.0", "poll: [query]",
         "passive: {poll", "polling.modes.passive.interval", "required key is missing"),
    Case("default_mode_unknown", "default: passive", "default: active", "default: active",
         "polling.default", "expected one of: passive, got 'active'"),
    Case("commands_without_polling", "polling:\n  default", "pollng:\n  default", "pollng:",
         "pollng", "unknown key (did you mean 'polling'?)"),
    Case("match_outside_the_frame", 'match: {offset: 1, bytes: "C0"}',
         'match: {offset: 9, bytes: "C0 00"}', "match: {offset: 9", "frames[0].match",
         "expected the match bytes inside a 10-byte frame"),
    Case("frame_kind_without_match_not_last",
         "  - name: report\n    match: {offset: 1, bytes: \"C0\"}\n",
         "  - name: report\n", "- name: report", "frames[0].name",
         "a frame kind without match or length takes every frame, so it must be the last"),
    Case("duplicate_frame_kind", "  - name: reply\n", "  - name: report\n",
         "  - name: report\n    kind",
         "frames[1].name", "expected a name not used by another frame kind"),
    Case("fields_and_frames", "frames:\n", "fields: []\nframes:\n", "  - name: report", "frames",
         "expected either fields (one kind of frame) or frames, not both"),
    Case("measurement_not_a_name", "measurement: climate", "measurement: Climate!",
         "measurement: Climate!", "frames[0].fields[1].measurement",
         "expected a lower_snake_case measurement name"),
    Case("parameter_outside_the_command", '    reply: "AA C5 06 01 00 00 A1 60 08 AB"\n',
         '    reply: "AA C5 06 01 00 00 A1 60 08 AB"\n'
         "    param: {name: n, offset: 30, type: u8, valid: [0, 9], default: 0}\n",
         "param:", "commands.sleep.param.offset", "expected an offset inside the 19-byte command"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_errors_name_line_key_and_expectation(tmp_path: Path, case: Case) -> None:
    assert case.old in BASE, case.old
    text = BASE.replace(case.old, case.new, 1)
    path = tmp_path / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    line = text[: text.index(case.blamed)].count("\n") + 1
    assert str(caught.value).startswith(f"{path}:{line}: {case.key_path}: "), str(caught.value)
    assert case.expected in str(caught.value), str(caught.value)


LINES = """\
model: csvdemo
vendor: any
datasheet: none
measurement: climate
serial: {baudrate: 9600, bytesize: 8, parity: none, stopbits: 1}
framing: {start_text: "$TH,", end_text: "\\r\\n", max_length: 40}
frames:
  - name: th
    format: csv
    separator: ";"
    fields:
      - {name: temperature_c, column: 0, decimals: 1, unit: degC, valid: [-40, 80]}
      - {name: humidity_pct, column: 2, suffix: "%", unit: "%RH", valid: [0, 100]}
"""


def test_csv_lines_by_column_with_a_unit_suffix() -> None:
    decoder = FrameDecoder(parse_profile(LINES, "csv"))
    lines = b"$TH,21.5;x;45%\r\n$TH,21.5;x;45\r\n$TH,1e3;x;45%\r\n"
    decoder.receive_data(lines + b"$TH," + b"9" * 40)
    decoder.receive_data(b"")
    events = list(decoder.events())
    assert isinstance(events[0], Decoded) and events[0].fields == {"temperature_c": 21.5,
                                                                   "humidity_pct": 45.0}
    reasons = [e.reason for e in events if isinstance(e, FrameRejected)]
    # no % after 45; "1e3" is not how the device writes a number; no end within 40 bytes
    assert reasons == [Reason.BAD_VALUE, Reason.BAD_VALUE, Reason.BAD_LENGTH]


def test_text_profiles_cannot_have_a_checksum_or_binary_fields() -> None:
    with pytest.raises(ProfileError, match="checksum: not supported on text frames"):
        sum8 = "checksum: {algorithm: sum8, start: 0, end: -1, offset: -1, type: u8}\n"
        parse_profile(LINES + sum8)
    missing = r"frames\[0\].fields\[0\].column: required key is missing"
    with pytest.raises(ProfileError, match=missing):
        parse_profile(LINES.replace("column: 0, ", ""), "csv")


def test_the_emulator_answers_commands_byte_for_byte() -> None:
    profiles = load_profiles(ROOT / "firmware_profiles")
    sds = FrameEmulator(profiles["sds011"], lambda: {"pm2_5_ugm3": 12.3, "pm10_ugm3": 20.0})
    sleep = profiles["sds011"].commands.by_role["sleep"].send  # type: ignore[union-attr]
    # the command split in two writes, with line noise before it
    assert sds.receive(b"\x00\x13" + sleep[:7], now=0.0) == []
    [answer] = sds.receive(sleep[7:], now=0.0)
    assert answer.data == bytes.fromhex("AA C5 06 01 00 00 A1 60 08 AB")
    assert sds.due(now=5.0) == []  # asleep: silent
    period = bytes.fromhex("AA B4 08 01 03 00 00 00 00 00 00 00 00 00 00 FF FF 0A AB")
    assert sds.receive(period, now=6.0) == []  # a sleeping sensor hears only wake-up
    wake = profiles["sds011"].commands.by_role["wake"].send  # type: ignore[union-attr]
    sds.receive(wake, now=7.0)
    [answer] = sds.receive(period, now=7.0)  # 3 minutes, echoed with its check-sum
    assert answer.data == bytes.fromhex("AA C5 08 01 03 00 A1 60 0D AB")
    sps = FrameEmulator(profiles["sps30"], lambda: {})
    start = profiles["sps30"].commands.by_role["start"].send  # type: ignore[union-attr]
    assert [e.data.hex(" ") for e in sps.receive(start + start, now=0.0)] == [
        "7e 00 00 00 00 ff 7e", "7e 00 00 43 00 bc 7e"]  # the second start is refused


def test_decode_command_lines() -> None:
    profile = load_profiles(ROOT / "firmware_profiles")["pms5003"]
    out, err = StringIO(), StringIO()
    # one frame of twelve 1s (sum 42+4D+1C+12+97 = 0x14E), an answer with a bad sum,
    # and the start of a frame cut by the end of the capture
    hex_text = ("0x42 0x4D:00:1C " + "00 01 " * 12 + "97 00 " + "01 4E"
                + " 42 4D 00 04 E1 00 01 75 42 4D 00 1C 00")
    code = decode_cmd.run(profile, hex_text=hex_text, out=out, err=err)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 0
    assert [line["type"] for line in lines] == ["reading", "rejected", "rejected"]
    reading = lines[0]["readings"][0]
    assert reading["measurement"] == "particulate"
    assert reading["fields"]["pm2_5_ugm3"] == {"value": 1, "unit": "ug/m3"}
    assert (lines[1]["offset"], lines[1]["reason"]) == (32, "bad_checksum")
    assert (lines[2]["offset"], lines[2]["reason"]) == (40, "truncated")
    assert "1 readings, 0 replies, 2 rejected frames" in err.getvalue()
    assert decode_cmd.run(profile, hex_text="42 4", out=out, err=err) == 2
