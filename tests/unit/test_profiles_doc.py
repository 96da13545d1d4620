"""docs/profiles.md names every shipped profile, reason code, counter, command role and key."""

from __future__ import annotations

from pathlib import Path

from edge_agent.decoding import COMMAND_ROLES, Reason, _commands, _frames, load_profiles, loader
from edge_agent.decoding.vocabulary import UNITS, VALUE_TYPES
from edge_agent.modbus import loader as modbus_loader
from edge_agent.modbus.regmap import TABLES
from edge_agent.serial_port import COUNTERS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "profiles.md").read_text(encoding="utf-8")


def test_every_profile_is_in_the_table() -> None:
    for model, profile in load_profiles(ROOT / "firmware_profiles").items():
        row = next((line for line in DOC.splitlines() if line.startswith(f"| `{model}` |")), None)
        assert row is not None, f"docs/profiles.md has no row for {model}"
        for measurement in profile.measurements:
            assert measurement in row, (model, measurement)


def test_every_reason_counter_and_role_is_documented() -> None:
    for reason in Reason:
        assert f"`{reason}`" in DOC, reason
    for counter in COUNTERS:
        assert f"| `{counter}` |" in DOC, counter
    assert "| `rejected_<reason>` |" in DOC
    for role in COMMAND_ROLES:
        assert f"| `{role}` |" in DOC, role


# -- every key the loader accepts, with the loader's own words ----------------------------

# (heading, the loader's key table, which keys are required): docs/profiles.md
# "Every key" holds one table per entry, rows exactly as ``reference()`` prints them.
SECTIONS: list[tuple[str, dict[str, str], str]] = [
    ("top level", loader._TOP_KEYS,
     "model, vendor, datasheet, measurement, serial; framing for frames"),
    ("serial", loader._SERIAL_KEYS, "all"),
    ("framing (and commands.framing, layouts.<name>.framing)", _frames.FRAMING_KEYS,
     "start or start_text; and length, length_field or an end marker"),
    ("framing.length_field", _frames._LENGTH_FIELD_KEYS, "all"),
    ("framing.escape", _frames._ESCAPE_KEYS, "all"),
    ("checksum (and commands.checksum, layouts.<name>.checksum)", _frames.CHECKSUM_KEYS,
     "all; or the word none instead of the mapping"),
    ("layouts.<name>", _frames.LAYOUT_KEYS, "all"),
    ("frames[]", _frames.FRAME_KEYS, "name; fields for a reading"),
    ("frames[].match", _frames._MATCH_KEYS, "offset, and bytes or text"),
    ("fields[] of a binary frame", _frames.FIELD_KEYS, "name, offset, type, unit"),
    ("fields[] of a key_value or csv frame", _frames.TEXT_FIELD_KEYS,
     "name, unit, and key (key_value) or column (csv)"),
    ("modbus", modbus_loader._MODBUS_KEYS, "slave, reads"),
    ("modbus.reads[]", modbus_loader._READ_KEYS, "all"),
    ("modbus.identity[]", modbus_loader._IDENTITY_KEYS, "all"),
    ("fields[] of a modbus_rtu profile", modbus_loader.FIELD_KEYS,
     "name, table, address, type, unit"),
    ("commands", {k: _commands._COMMANDS_KEYS[k] for k in ("framing", "checksum")},
     "at least one command role (below)"),
    ("commands.<role>", _commands._COMMAND_KEYS, "send or send_text"),
    ("commands.<role>.param", _commands._PARAM_KEYS, "name, offset, type, valid, default"),
    ("polling", _commands._POLLING_KEYS, "none"),
    ("polling.modes.<name>", _commands._MODE_KEYS, "none"),
    ("polling.warmup", _commands._WARMUP_KEYS, "none"),
]


def reference() -> str:
    """The "Every key" tables, the units, value types and Modbus tables, as the docs hold them."""
    out = []
    for heading, keys, required in SECTIONS:
        out.append(f"`{heading}`, required: {required}.\n\n| key | expected |\n| --- | --- |")
        out.extend(f"| `{key}` | {what} |" for key, what in keys.items())
        out.append("")
    out.append("| unit | field name ends in |\n| --- | --- |")
    out.extend(f"| `{unit}` | {f'`{suffix}`' if suffix else '(no suffix)'} |"
               for unit, suffix in UNITS.items())
    out.append("")
    out.append("Value types: " + ", ".join(f"`{name}`" for name in VALUE_TYPES) + ".")
    out.append("")
    out.append("| Modbus `table` | read with function | most per read |\n| --- | --- | --- |")
    out.extend(f"| `{table}` | {function:02d} | {most} |"
               for table, (function, most) in TABLES.items())
    return "\n".join(out) + "\n"


def test_every_key_is_documented_in_the_loaders_words() -> None:
    """A key added to the loader, or a unit, type or table, fails here until the docs say it."""
    start = DOC.index("<!-- every key: start -->\n") + len("<!-- every key: start -->\n")
    end = DOC.index("<!-- every key: end -->")
    assert DOC[start:end].strip() == reference().strip(), (
        "docs/profiles.md 'Every key' has drifted from the loader: paste reference()")
