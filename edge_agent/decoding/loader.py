"""Load firmware profiles from YAML, checking every key before any port opens.

An installer or a new engineer writes these files by hand, so every mistake is
reported as ``file:line: key.path: expected ..., got ...``. The YAML is composed
(not just loaded) to keep each node's line; duplicate keys and unknown keys are
errors, and so is any layout where two things claim the same frame byte, a
command whose checksum is wrong, or a reply the profile itself would reject.

The checks live in four modules: ``_frames`` (framing, checksum, frame
kinds, fields), ``_layout`` (lengths, and no byte claimed twice),
``_commands`` (commands and polling) and ``edge_agent.modbus.loader`` (a
Modbus slave's register map).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from edge_agent.decoding import _commands, _frames, _layout
from edge_agent.decoding._nodes import At
from edge_agent.decoding.decoder import FrameDecoder
from edge_agent.decoding.errors import ProfileError
from edge_agent.decoding.events import Decoded, FrameRejected, Reply, Skipped
from edge_agent.decoding.profile import (
    STREAMING,
    FrameSpec,
    Profile,
    SerialSettings,
)
from edge_agent.modbus import loader as modbus_loader

__all__ = ["load_profile", "load_profiles", "parse_profile"]

_MODEL = re.compile(r"[a-z0-9][a-z0-9_]*")
_PARITIES = ("none", "even", "odd", "mark", "space")
PROTOCOLS = ("frames", "modbus_rtu")

# key -> what is expected there (used for "missing" and "unknown key" messages)
_TOP_KEYS = {
    "model": "the model name, equal to the file name without .yaml",
    "vendor": "the manufacturer's name",
    "datasheet": "the datasheet title and version",
    "measurement": "the InfluxDB measurement name",
    "protocol": f"one of {', '.join(PROTOCOLS)} (default frames)",
    "serial": "a mapping: baudrate, bytesize, parity, stopbits",
    "framing": "a mapping: start, length or length_field, ...",
    "checksum": "a mapping: algorithm, start, end, offset, type",
    "fields": "a list of fields",
    "frames": "a list of frame kinds, each with name, match and fields",
    "commands": "a mapping of command role to {send, reply}",
    "polling": "a mapping: modes, default, reply_timeout, warmup",
    "modbus": "a mapping: slave, reads, identity",
}
_REQUIRED = ("model", "vendor", "datasheet", "measurement", "serial")
_SERIAL_KEYS = {
    "baudrate": "bits per second, e.g. 9600",
    "bytesize": "data bits: 5, 6, 7 or 8",
    "parity": f"one of {', '.join(_PARITIES)}",
    "stopbits": "1, 1.5 or 2",
}


def load_profile(path: str | Path) -> Profile:
    """Read and check one profile; its ``model`` must equal the file name's stem."""
    path = Path(path)
    return parse_profile(path.read_text(encoding="utf-8"), str(path), model=path.stem)


def load_profiles(directory: str | Path) -> dict[str, Profile]:
    """Every ``*.yaml`` profile in ``directory``, keyed by model."""
    return {p.model: p for p in map(load_profile, sorted(Path(directory).glob("*.yaml")))}


def parse_profile(text: str, source: str = "<string>", model: str | None = None) -> Profile:
    """Check a profile given as YAML text; ``source`` names it in error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ProfileError(source, line, "", f"not valid YAML: {exc.problem}") from None
    if node is None:
        raise ProfileError(source, 1, "", "expected a mapping of profile keys, got an empty file")
    root = At(source, node, "")
    top = root.keys(_TOP_KEYS, required=_REQUIRED)
    name = top["model"].text("a lower_snake_case model name", _MODEL)
    if model is not None and name != model:
        raise top["model"].expected(f"{model!r} (the file name without .yaml)")
    protocol = "frames"
    if "protocol" in top:
        protocol = top["protocol"].choice({p: p for p in PROTOCOLS})
    measurement = top["measurement"].text("a lower_snake_case measurement name", _frames.NAME)
    base = Profile(
        model=name,
        vendor=top["vendor"].text("the vendor's name"),
        datasheet=top["datasheet"].text("the datasheet title and version"),
        measurement=measurement,
        serial=_serial(top["serial"]),
        framing=None,
        checksum=None,
        frames=(),
        source=source,
        protocol=protocol,
    )
    if protocol == "modbus_rtu":
        return _modbus_profile(root, top, base)
    return _frames_profile(root, top, base)


def _serial(at: At) -> SerialSettings:
    keys = at.keys(_SERIAL_KEYS, required=_SERIAL_KEYS)
    stopbits = keys["stopbits"].number(_SERIAL_KEYS["stopbits"])
    if stopbits not in (1, 1.5, 2):
        raise keys["stopbits"].expected(_SERIAL_KEYS["stopbits"])
    return SerialSettings(
        baudrate=keys["baudrate"].integer("a positive baud rate, e.g. 9600", 1, 4_000_000),
        bytesize=keys["bytesize"].integer(_SERIAL_KEYS["bytesize"], 5, 8),
        parity=keys["parity"].choice({p: p for p in _PARITIES}),
        stopbits=stopbits,
    )


def _frame_kinds(
    root: At, top: dict[str, At], base: Profile, binary: bool
) -> tuple[tuple[FrameSpec, ...], list[At], str]:
    """The frame kinds, where each is declared, and which key declares them."""
    if ("fields" in top) == ("frames" in top):
        if "fields" not in top:
            raise root.missing("fields", _TOP_KEYS["fields"])
        raise top["frames"].error("expected either fields (one kind of frame) or frames, not both")
    if "fields" in top:
        kind = "binary" if binary else "key_value"
        fields = _frames.fields_list(top["fields"], base.measurement, kind)
        return (FrameSpec("data", "reading", None, None, kind, fields),), [top["fields"]], "fields"
    frames = _frames.frame_kinds(top["frames"], base.measurement)
    frame_ats = top["frames"].items("frame kinds")
    for frame, at in zip(frames, frame_ats, strict=True):
        if (frame.format == "binary") != binary:
            raise at.keys(_frames.FRAME_KEYS, ()).get("format", at).error(
                "binary frames need a length or a length_field; text frames (key_value, csv)"
                " end at their end marker"
            )
    return frames, frame_ats, "frames"


def _frames_profile(root: At, top: dict[str, At], base: Profile) -> Profile:
    if "modbus" in top:
        raise top["modbus"].error("only for protocol: modbus_rtu")
    if "framing" not in top:
        raise root.missing("framing", _TOP_KEYS["framing"])
    framing = _frames.framing(top["framing"])
    binary = framing.length is not None or framing.length_field is not None
    frames, frame_ats, fields_path = _frame_kinds(root, top, base, binary)
    checksum = None
    if "checksum" in top:
        if not binary:
            raise top["checksum"].error("not supported on text frames that end at an end marker")
        checksum = _frames.checksum(top["checksum"])
    elif binary:
        raise root.missing("checksum", _TOP_KEYS["checksum"])
    framing = _layout.settle_lengths(top["framing"], framing, frames, frame_ats)
    framing = _layout.check_layout(
        top["framing"], framing, checksum, top.get("checksum"),
        frames=frames, frame_ats=frame_ats, fields_path=fields_path,
    )
    profile = Profile(
        model=base.model, vendor=base.vendor, datasheet=base.datasheet,
        measurement=base.measurement, serial=base.serial, framing=framing, checksum=checksum,
        frames=frames, source=base.source,
    )
    commands = None
    if "commands" in top:
        commands = _commands.commands(top["commands"], profile, _decode)
    polling = STREAMING
    if "polling" in top:
        polling = _commands.polling(top["polling"], commands, modbus=False)
    elif commands is not None:
        raise root.missing("polling", "how the commands are used: " + _TOP_KEYS["polling"])
    return Profile(
        model=profile.model, vendor=profile.vendor, datasheet=profile.datasheet,
        measurement=profile.measurement, serial=profile.serial, framing=framing,
        checksum=checksum, frames=frames, source=profile.source, commands=commands,
        polling=polling,
    )


def _modbus_profile(root: At, top: dict[str, At], base: Profile) -> Profile:
    for key in ("framing", "checksum", "frames", "commands"):
        if key in top:
            raise top[key].error(
                "not used with protocol: modbus_rtu (pymodbus frames the requests and replies)"
            )
    if "modbus" not in top:
        raise root.missing("modbus", _TOP_KEYS["modbus"])
    if "fields" not in top:
        raise root.missing("fields", _TOP_KEYS["fields"])
    register_map = modbus_loader.modbus_map(top["modbus"])
    fields = modbus_loader.modbus_fields(top["fields"], base.measurement, register_map.reads)
    polling = _commands.polling(top["polling"], None, modbus=True) if "polling" in top else None
    if polling is None:
        empty = yaml.compose("{}")
        assert empty is not None
        polling = _commands.polling(At(base.source, empty, "polling"), None, True)
    return Profile(
        model=base.model, vendor=base.vendor, datasheet=base.datasheet,
        measurement=base.measurement, serial=base.serial, framing=None, checksum=None,
        frames=(FrameSpec("data", "reading", None, None, "modbus", fields),),
        source=base.source, protocol="modbus_rtu", polling=polling, modbus=register_map,
    )


def _decode(profile: Profile, data: bytes) -> list[tuple[str, bytes, str]]:
    """What the decoder makes of ``data``: (kind, raw, detail) per event, for load-time checks."""
    decoder = FrameDecoder(profile)
    out: list[tuple[str, bytes, str]] = []
    for chunk in (data, b""):
        decoder.receive_data(chunk)
        for event in decoder.events():
            if isinstance(event, Reply):
                out.append(("reply", event.raw, event.frame))
            elif isinstance(event, Decoded):
                out.append(("reading", event.raw, event.frame))
            elif isinstance(event, FrameRejected):
                out.append(("rejected", event.raw, f"{event.reason}: {event.detail}"))
            elif isinstance(event, Skipped):
                out.append(("skipped", data[event.offset : event.offset + event.count], ""))
    return out
