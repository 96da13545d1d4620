"""Profile validation: every mistake names file:line, the key path and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from edge_agent.decoding import (
    MAX_FRAME_BYTES,
    DecodingError,
    Profile,
    ProfileError,
    load_profile,
    load_profiles,
)

ROOT = Path(__file__).resolve().parents[2]

# A valid profile in the Nova SDS011 layout; each case below breaks one thing.
VALID = """\
# Demo profile for validation tests (Nova SDS011 layout).
model: demo
vendor: Nova Fitness
datasheet: Laser Dust Sensor Control Protocol V1.3
measurement: particulate
serial:
  baudrate: 9600
  bytesize: 8
  parity: none
  stopbits: 1
framing:
  start: "AA C0"
  length: 10
  end: "AB"
checksum:
  algorithm: sum8
  start: 2
  end: 8
  offset: 8
  type: u8
fields:
  - name: pm2_5_ugm3
    offset: 2
    type: u16le
    scale: 0.1
    unit: ug/m3
    valid: [0, 999.9]
  - name: pm10_ugm3
    offset: 4
    type: u16le
    scale: 0.1
    unit: ug/m3
    valid: [0, 999.9]
"""


def write(tmp_path: Path, text: str, model: str = "demo") -> Path:
    path = tmp_path / f"{model}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, fragment: str) -> int:
    """The 1-based line where ``fragment`` (which may span lines) first starts."""
    return text[: text.index(fragment)].count("\n") + 1


def test_the_base_profile_is_valid(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, VALID))
    assert isinstance(profile, Profile)
    assert (profile.framing.min_length, profile.framing.max_length) == (10, 10)
    assert [f.name for f in profile.fields] == ["pm2_5_ugm3", "pm10_ugm3"]


class Case(NamedTuple):
    id: str
    old: str  # text of VALID to replace
    new: str  # its replacement
    blamed: str  # a fragment of the new text: the error must name the line it starts on
    key_path: str
    expected: str  # must appear in the message


_CASES = [
    (
        "wrong_type_name",
        "    type: u16le\n    scale: 0.1\n    unit: ug/m3\n    valid: [0, 999.9]\n  - name: pm10",
        "    type: u16b\n    scale: 0.1\n    unit: ug/m3\n    valid: [0, 999.9]\n  - name: pm10",
        "type: u16b",
        "fields[0].type",
        "expected one of u8, s8, u16be, u16le",
    ),
    (
        "missing_key",
        "    offset: 4\n    type: u16le\n    scale: 0.1\n    unit: ug/m3\n",
        "    offset: 4\n    type: u16le\n    scale: 0.1\n",
        "name: pm10_ugm3",
        "fields[1].unit",
        "required key is missing; expected one of ug/m3",
    ),
    (
        "unknown_key_with_hint",
        "    offset: 4\n    type: u16le\n    scale: 0.1\n",
        "    offset: 4\n    type: u16le\n    sclae: 0.1\n",
        "sclae",
        "fields[1].sclae",
        "unknown key (did you mean 'scale'?); expected one of name, offset",
    ),
    (
        "unknown_top_level_key",
        "measurement: particulate\n",
        "measurement: particulate\nmeasurment: particulate\n",
        "measurment:",
        "measurment",
        "unknown key (did you mean 'measurement'?)",
    ),
    (
        "missing_top_level_key",
        "measurement: particulate\n",
        "",
        "model: demo",
        "measurement",
        "required key is missing; expected the InfluxDB measurement: any lower_snake_case name",
    ),
    (
        "unquoted_hex_marker",
        'start: "AA C0"',
        "start: 4242",
        "start: 4242",
        "framing.start",
        'expected the start marker as a quoted hex string like "42 4D", got 4242',
    ),
    (
        "bad_hex_digits",
        'end: "AB"',
        'end: "AZ"',
        'end: "AZ"',
        "framing.end",
        "expected the end marker as hex digits in pairs, got 'AZ'",
    ),
    (
        "unknown_checksum_algorithm",
        "algorithm: sum8",
        "algorithm: crc32",
        "algorithm: crc32",
        "checksum.algorithm",
        "expected one of sum16, sum8, shdlc, neg_sum8, crc16_modbus, got 'crc32'",
    ),
    (
        "checksum_type_narrower_than_algorithm",
        "algorithm: sum8",
        "algorithm: sum16",
        "type: u8",
        "checksum.type",
        "expected one of u16be, u16le (sum16 width), got 'u8'",
    ),
    (
        "field_overlaps_checksum",
        "    offset: 4\n",
        "    offset: 7\n",
        "offset: 7",
        "fields[1].offset",
        "expected field pm10_ugm3 (bytes 7..8) not to overlap checksum (bytes 8..8)",
    ),
    (
        "field_outside_frame",
        "    offset: 4\n",
        "    offset: 9\n",
        "offset: 9",
        "fields[1].offset",
        "expected field pm10_ugm3 (bytes 9..10) inside a 10-byte frame",
    ),
    (
        "checksum_outside_frame",
        "length: 10",
        "length: 5",
        "offset: 8",
        "checksum.offset",
        "expected checksum (bytes 8..8) inside a 5-byte frame",
    ),
    (
        "field_name_without_unit_suffix",
        "name: pm10_ugm3",
        "name: pm10",
        "name: pm10",
        "fields[1].name",
        "expected a name ending in '_ugm3' for unit ug/m3, got 'pm10'",
    ),
    (
        "duplicate_field_name",
        "name: pm10_ugm3",
        "name: pm2_5_ugm3",
        "  - name: pm2_5_ugm3\n    offset: 4",
        "fields[1].name",
        "expected a name not used by another field",
    ),
    (
        "duplicate_key",
        "  bytesize: 8\n",
        "  bytesize: 8\n  bytesize: 7\n",
        "bytesize: 7",
        "serial.bytesize",
        "duplicate key (first given on line 8)",
    ),
    (
        "model_differs_from_file_name",
        "model: demo",
        "model: sds011",
        "model: sds011",
        "model",
        "expected 'demo' (the file name without .yaml), got 'sds011'",
    ),
    (
        "length_and_length_field",
        "  length: 10\n",
        "  length: 10\n  length_field: {offset: 2, type: u8, add: 0}\n",
        'start: "AA C0"',
        "framing",
        "expected exactly one of length (fixed size) or length_field",
    ),
    (
        "max_length_beyond_the_global_bound",
        "  length: 10\n",
        "  length_field: {offset: 2, type: u16be, add: 0}\n"
        f"  max_length: {MAX_FRAME_BYTES + 1}\n",
        "max_length:",
        "framing.max_length",
        f"expected a length 1..{MAX_FRAME_BYTES}, got {MAX_FRAME_BYTES + 1}",
    ),
    (
        "valid_range_not_a_pair",
        "valid: [0, 999.9]\n  - name: pm10",
        "valid: [999.9]\n  - name: pm10",
        "valid: [999.9]",
        "fields[0].valid",
        "expected [min, max]: two numbers, got [999.9]",
    ),
    (
        "length_field_without_max_length",
        "  length: 10\n",
        "  length_field: {offset: 6, type: u8, add: 4}\n",
        'start: "AA C0"',
        "framing.max_length",
        "required key is missing; expected the longest total frame length accepted",
    ),
    (
        "escape_that_cannot_be_undone",
        "  length: 10\n",
        '  length: 10\n  escape: {byte: "7D", xor: "20", escaped: "7D AA"}\n',
        "escape:",
        "framing.escape.escaped",
        "expected bytes that include the escape byte and the markers' first bytes",
    ),
    (
        "valid_range_upside_down",
        "valid: [0, 999.9]\n  - name: pm10",
        "valid: [999.9, 0]\n  - name: pm10",
        "valid: [999.9, 0]",
        "fields[0].valid",
        "expected [min, max] with min <= max, got [999.9, 0]",
    ),
    (
        "boolean_is_not_a_number",
        "baudrate: 9600",
        "baudrate: yes",
        "baudrate: yes",
        "serial.baudrate",
        "expected a positive baud rate, e.g. 9600, got True",
    ),
    (
        "unknown_parity",
        "parity: none",
        "parity: N",
        "parity: N",
        "serial.parity",
        "expected one of none, even, odd, mark, space, got 'N'",
    ),
    (
        "unknown_unit",
        "unit: ug/m3\n    valid: [0, 999.9]\n  - name: pm10",
        "unit: ugm3\n    valid: [0, 999.9]\n  - name: pm10",
        "unit: ugm3",
        "fields[0].unit",
        "expected one of ug/m3, mg/m3",
    ),
    (
        "fields_not_a_list",
        "fields:\n",
        "fields: pm2_5\nold_fields:\n",
        "fields: pm2_5",
        "fields",
        "expected a non-empty list of fields, got 'pm2_5'",
    ),
]


CASES = [Case(*case) for case in _CASES]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_validation_error_names_line_key_and_expectation(tmp_path: Path, case: Case) -> None:
    assert case.old in VALID
    text = VALID.replace(case.old, case.new, 1)
    if "old_fields" in text:  # keep the rest of the file parseable: drop the old list
        text = text.split("old_fields:")[0]
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    error, line = caught.value, line_of(text, case.blamed)
    assert str(error).startswith(f"{path}:{line}: {case.key_path}: "), str(error)
    assert case.expected in str(error), str(error)
    assert (error.file, error.line, error.path) == (str(path), line, case.key_path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  bytesize: 8", "  bytesize: [8"))
    with pytest.raises(ProfileError, match=r"demo\.yaml:\d+: <top>: not valid YAML"):
        load_profile(path)


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "# only a comment\n")
    with pytest.raises(ProfileError, match="got an empty file"):
        load_profile(path)


def test_profile_error_is_a_decoding_error() -> None:
    assert issubclass(ProfileError, DecodingError)


def test_min_length_defaults_to_the_shortest_layout(tmp_path: Path) -> None:
    text = VALID.replace(
        "  length: 10\n", "  length_field: {offset: 6, type: u8, add: 4}\n  max_length: 40\n"
    )
    profile = load_profile(write(tmp_path, text))
    # start 2 + pm fields 4 + length byte at 6 = 7 head bytes; checksum at 8 and end
    # marker make 10 the shortest frame the layout fits in.
    assert (profile.framing.min_length, profile.framing.max_length) == (10, 40)


def test_load_profiles_keys_by_model(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    write(tmp_path, VALID.replace("model: demo", "model: demo2"), model="demo2")
    assert sorted(load_profiles(tmp_path)) == ["demo", "demo2"]


def test_shipped_profiles_are_valid() -> None:
    profiles = load_profiles(ROOT / "firmware_profiles")
    assert "pms5003" in profiles
    assert all(p.source.endswith(f"{m}.yaml") for m, p in profiles.items())
