"""The JSON Schema of a firmware profile file, built from the loader's own key tables.

The loader (loader.py, _frames.py, _commands.py, modbus/loader.py) checks each
mapping against a table of key -> what is expected there, with the keys it
requires, and each choice against a named vocabulary (units, value types,
checksum algorithms, parities, protocols, frame kinds, formats, Modbus
tables). This module reads the same tables, so the schema says what the
loader says about structure and cannot drift from it: every key a mapping
takes (each with the loader's own description), the keys it requires, the
words a choice takes, the patterns of names. What needs the whole frame
(bytes claimed twice, lengths, checksums of commands, a reply the profile
would itself reject) only the loader checks: ``edge-agent check`` and the
profile tests run it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from edge_agent.decoding import _commands, _frames, loader
from edge_agent.decoding.checksums import CHECKSUMS
from edge_agent.decoding.vocabulary import COMMAND_ROLES, UNITS, VALUE_TYPES
from edge_agent.modbus import loader as modbus_loader
from edge_agent.modbus.regmap import TABLES

Schema = dict[str, Any]


def _keys(keys: Mapping[str, str], required: Collection[str] = (),
          **values: Schema) -> Schema:
    """A mapping of exactly the table's keys, each described as the loader describes it."""
    properties = {key: {"description": text, **values.get(key, {})}
                  for key, text in keys.items()}
    out: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


def _enum(words: Collection[Any]) -> Schema:
    return {"enum": list(words)}


def _between(bounds: tuple[int, int]) -> Schema:
    return {"type": "integer", "minimum": bounds[0], "maximum": bounds[1]}


def _name(pattern: str) -> Schema:
    return {"type": "string", "pattern": f"^(?:{pattern})$"}


def _framing() -> Schema:
    return _keys(
        _frames.FRAMING_KEYS,
        length_field=_keys(_frames._LENGTH_FIELD_KEYS, _frames._LENGTH_FIELD_KEYS),
        escape=_keys(_frames._ESCAPE_KEYS, _frames._ESCAPE_KEYS))


def _checksum() -> Schema:
    return {"anyOf": [{"const": _frames.CHECKSUM_NONE},
                      _keys(_frames.CHECKSUM_KEYS, _frames.CHECKSUM_KEYS,
                            algorithm=_enum(CHECKSUMS))]}


def _fields() -> Schema:
    unit, kind = _enum(UNITS), _enum(VALUE_TYPES)
    binary = _keys(_frames.FIELD_KEYS, ("name", "offset", "type", "unit"), unit=unit, type=kind)
    text = _keys(_frames.TEXT_FIELD_KEYS, ("name", "unit"), unit=unit)
    modbus = _keys(modbus_loader.FIELD_KEYS, ("name", "table", "address", "type", "unit"),
                   unit=unit, type=kind, table=_enum(TABLES))
    return {"type": "array", "items": {"anyOf": [binary, text, modbus]}}


def _commands_schema() -> Schema:
    param = _keys(_commands._PARAM_KEYS, ("name", "offset", "type", "valid", "default"))
    command = _keys(_commands._COMMAND_KEYS, param=param)
    roles = {role: command for role in COMMAND_ROLES}
    return _keys(_commands._COMMANDS_KEYS, framing=_framing(), checksum=_checksum(), **roles)


def _polling() -> Schema:
    return _keys(_commands._POLLING_KEYS,
                 modes={"type": "object", "additionalProperties": _keys(_commands._MODE_KEYS)},
                 warmup=_keys(_commands._WARMUP_KEYS),
                 power_up=_enum(_commands._POWER_UP))


def _modbus() -> Schema:
    table = _enum(TABLES)
    return _keys(
        modbus_loader._MODBUS_KEYS, ("slave", "reads"),
        slave=_between(modbus_loader.SLAVES),
        reads={"type": "array", "items": _keys(modbus_loader._READ_KEYS,
                                               modbus_loader._READ_KEYS, table=table)},
        identity={"type": "array", "items": _keys(modbus_loader._IDENTITY_KEYS,
                                                  modbus_loader._IDENTITY_KEYS, table=table)})


def profile_schema() -> Schema:
    fields = _fields()
    frame = _keys(_frames.FRAME_KEYS, ("name",), name=_name(_frames.NAME.pattern),
                  kind=_enum(_frames.KINDS), format=_enum(_frames.FORMATS), fields=fields,
                  match=_keys(_frames._MATCH_KEYS, ("offset",)))
    serial = loader._SERIAL_KEYS
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "cityedge firmware profile",
        **_keys(
            loader._TOP_KEYS, loader._REQUIRED,
            model=_name(loader._MODEL.pattern),
            vendor={"type": "string"}, datasheet={"type": "string"},
            measurement=_name(_frames.NAME.pattern),
            protocol=_enum(loader.PROTOCOLS),
            serial=_keys(serial, serial,
                         baudrate=_between(loader.BAUDRATES), bytesize=_between(loader.BYTESIZES),
                         parity=_enum(loader._PARITIES), stopbits=_enum(loader.STOPBITS)),
            framing=_framing(), checksum=_checksum(),
            layouts={"type": "object", "additionalProperties": _keys(
                _frames.LAYOUT_KEYS, framing=_framing(), checksum=_checksum())},
            fields=fields, frames={"type": "array", "items": frame},
            commands=_commands_schema(), polling=_polling(), modbus=_modbus()),
    }
