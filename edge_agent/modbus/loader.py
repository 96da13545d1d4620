"""Profile loader, part 3: a ``modbus_rtu`` profile's register map and the fields in it.

Only the map is declared here (which registers, what they mean, regmap.py);
the Modbus protocol itself (requests, response framing, CRC, exception
responses) is pymodbus's, used by decoder.py. This module imports no Modbus
code, so profiles load, and are checked, without it.
"""

from __future__ import annotations

from edge_agent.decoding import _frames
from edge_agent.decoding._nodes import At
from edge_agent.decoding.profile import FieldSpec
from edge_agent.decoding.vocabulary import VALUE_TYPES, ValueType
from edge_agent.modbus.regmap import BIT_TABLES, TABLES, ModbusMap, ModbusRead, span

# Modbus over Serial Line V1.02, 2.2: 1..247 are individual slave addresses.
SLAVES = (1, 247)
_MODBUS_KEYS = {
    "slave": "the default slave address 1..247 (sensors[].modbus_slave overrides it)",
    "reads": "a list of {table, address, count}: the requests sent each poll, in order",
    "identity": "a list of {table, address, type, equals}: registers that name the model",
}
_READ_KEYS = {
    "table": f"one of {', '.join(TABLES)}",
    "address": "the first register (or bit) address, 0-based as on the wire",
    "count": "how many registers (or bits) to read",
}
_IDENTITY_KEYS = {
    "table": _READ_KEYS["table"],
    "address": "the register address",
    "type": "an integer type",
    "equals": "the value this model always holds there",
}
FIELD_KEYS = {
    "name": _frames.FIELD_KEYS["name"],
    "table": _READ_KEYS["table"],
    "address": "the register (or bit) address, 0-based as on the wire",
    "type": f"one of {', '.join(VALUE_TYPES)} (bool for coil and discrete tables)",
    "scale": _frames.FIELD_KEYS["scale"],
    "add": _frames.FIELD_KEYS["add"],
    "mask": _frames.FIELD_KEYS["mask"],
    "not_available": _frames.FIELD_KEYS["not_available"],
    "unit": _frames.FIELD_KEYS["unit"],
    "valid": _frames.FIELD_KEYS["valid"],
    "measurement": _frames.FIELD_KEYS["measurement"],
}
_REGISTER_TYPES = {
    name: t for name, t in VALUE_TYPES.items()
    if not t.is_bool and t.size % 2 == 0 and (t.size == 2 or not name.endswith("le"))
}


def modbus_map(at: At) -> ModbusMap:
    keys = at.keys(_MODBUS_KEYS, required=("slave", "reads"))
    reads = []
    for item in keys["reads"].items("a non-empty list of reads"):
        r = item.keys(_READ_KEYS, required=_READ_KEYS)
        table = r["table"].choice({t: t for t in TABLES})
        function, most = TABLES[table]
        reads.append(
            ModbusRead(
                function=function,
                table=table,
                address=r["address"].integer("an address 0..65535", 0, 65535),
                count=r["count"].integer(f"a count 1..{most}", 1, most),
            )
        )
    identity = []
    if "identity" in keys:
        for item in keys["identity"].items("a non-empty list of identity registers"):
            i = item.keys(_IDENTITY_KEYS, required=_IDENTITY_KEYS)
            table = i["table"].choice({t: t for t in TABLES if t not in BIT_TABLES})
            kind = i["type"].choice(
                {n: t for n, t in _REGISTER_TYPES.items() if not t.is_float},
                "an integer register type, e.g. u16be",
            )
            address = i["address"].integer("an address 0..65535", 0, 65535)
            _covered(i["address"], reads, table, address, kind)
            equals = i["equals"].integer(f"a value {kind.name} holds", int(kind.min), int(kind.max))
            identity.append((table, address, kind, equals))
    return ModbusMap(
        slave=keys["slave"].integer("a slave address 1..247", *SLAVES),
        reads=tuple(reads),
        identity=tuple(identity),
    )


def _covered(at: At, reads: list[ModbusRead], table: str, address: int, kind: ValueType) -> None:
    width = span(table, kind)
    if any(read.covers(table, address, width) for read in reads):
        return
    raise at.expected(
        f"an address that one of modbus.reads covers ({table} {address}..{address + width - 1}"
        " is in none)"
    )


def modbus_fields(
    at: At, measurement: str, reads: tuple[ModbusRead, ...]
) -> tuple[FieldSpec, ...]:
    items = at.items("a non-empty list of fields")
    specs = []
    for item in items:
        keys = item.keys(FIELD_KEYS, required=("name", "table", "address", "type", "unit"))
        name, unit, scale, valid = _frames._common_field(keys)
        table = keys["table"].choice({t: t for t in TABLES})
        if table in BIT_TABLES:
            bits = {"bool": VALUE_TYPES["bool"]}
            kind = keys["type"].choice(bits, f"bool (a {table} is one bit)")
        else:
            kind = keys["type"].choice(
                _REGISTER_TYPES, f"one of {', '.join(_REGISTER_TYPES)} (whole registers)"
            )
        address = keys["address"].integer("an address 0..65535", 0, 65535)
        _covered(keys["address"], list(reads), table, address, kind)
        mask, missing = _frames.raw_rules(keys, kind)
        specs.append(
            FieldSpec(
                name=name, offset=0, type=kind, scale=scale, unit=unit, valid=valid,
                measurement=(
                    keys["measurement"].text("a measurement name", _frames.NAME)
                    if "measurement" in keys
                    else measurement
                ),
                table=table, address=address, add=_frames.added(keys), mask=mask,
                not_available=missing,
            )
        )
    _frames.check_names(items, [spec.name for spec in specs], "field")
    _no_overlap(items, specs)
    return tuple(specs)


def _no_overlap(items: list[At], specs: list[FieldSpec]) -> None:
    """No two fields read the same register (or bit), unless as disjoint masks of one value."""
    for index, spec in enumerate(specs):
        first = spec.address or 0
        stop = first + span(spec.table or "", spec.type)
        for other in specs[:index]:
            other_first = other.address or 0
            other_stop = other_first + span(other.table or "", other.type)
            if spec.table != other.table or not (first < other_stop and other_first < stop):
                continue
            shared = (spec.mask is not None and other.mask is not None
                      and first == other_first and spec.type == other.type
                      and not spec.mask & other.mask)
            if not shared:
                raise items[index].child("address").expected(
                    f"an address not read by field {other.name} ({other.table}"
                    f" {other_first}..{other_stop - 1}); fields may share a register only as"
                    f" disjoint masks of the same type, got {first}"
                )
