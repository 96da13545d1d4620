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
from dataclasses import dataclass
from pathlib import Path

import yaml

from edge_agent.decoding import _commands, _frames, _layout
from edge_agent.decoding._nodes import At
from edge_agent.decoding.decoder import FrameDecoder
from edge_agent.decoding.errors import ProfileError
from edge_agent.decoding.events import Decoded, FrameRejected, Reply, Skipped
from edge_agent.decoding.profile import (
    DEFAULT_LAYOUT,
    STREAMING,
    FrameSpec,
    Framing,
    Layout,
    Profile,
    SerialSettings,
)
from edge_agent.modbus import loader as modbus_loader

__all__ = ["ProfileScan", "load_profile", "load_profiles", "parse_profile", "scan_profiles"]

_MODEL = re.compile(r"[a-z0-9][a-z0-9_]*")
_PARITIES = ("none", "even", "odd", "mark", "space")
PROTOCOLS = ("frames", "modbus_rtu")

# key -> what is expected there (used for "missing" and "unknown key" messages)
_TOP_KEYS = {
    "model": "the model name, equal to the file name without .yaml",
    "vendor": "the manufacturer's name",
    "datasheet": "the datasheet title and version",
    "measurement": "the InfluxDB measurement: any lower_snake_case name, e.g. particulate",
    "protocol": f"one of {', '.join(PROTOCOLS)} (default frames)",
    "serial": "a mapping: baudrate, bytesize, parity, stopbits",
    "framing": "a mapping: start, length or length_field, ...",
    "checksum": "a mapping: algorithm, start, end, offset, type; or none",
    "layouts": "a mapping of layout name to {framing, checksum}: frames shaped otherwise",
    "fields": "a list of fields",
    "frames": "a list of frame kinds, each with name, match and fields",
    "commands": "a mapping of command role to {send, reply}",
    "polling": "a mapping: modes, default, reply_timeout, warmup",
    "modbus": "a mapping: slave, reads, identity (optional)",
}
_REQUIRED = ("model", "vendor", "datasheet", "measurement", "serial")
# What a serial port can be set to (pyserial's choices); the schema reads these too.
BAUDRATES = (1, 4_000_000)
BYTESIZES = (5, 8)
STOPBITS = (1, 1.5, 2)
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
    """Every ``*.yaml`` profile in ``directory``, keyed by model; the first error raises."""
    return {p.model: p for p in map(load_profile, sorted(Path(directory).glob("*.yaml")))}


@dataclass(frozen=True, slots=True)
class ProfileScan:
    """A folder of profiles: those that loaded, by model, and one error per file that did not."""

    profiles: dict[str, Profile]
    errors: tuple[ProfileError, ...]

    def error_for(self, model: str) -> ProfileError | None:
        """The error of ``<model>.yaml``, if that file is in the folder and broken."""
        return next((e for e in self.errors if Path(e.file).stem == model), None)


def scan_profiles(directory: str | Path) -> ProfileScan:
    """Every ``*.yaml`` profile in ``directory``: a broken one is reported, the others load.

    One mistyped file must not stop every other model from decoding; the caller
    reports ``errors`` (each a one-line ``file:line: key: message``) and refuses
    only what needs a broken profile. A folder that cannot be listed raises
    ``OSError``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: not a folder of profiles")
    profiles: dict[str, Profile] = {}
    errors: list[ProfileError] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            profile = load_profile(path)
        except ProfileError as exc:
            errors.append(exc)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(ProfileError(str(path), None, "", f"cannot be read: {exc}"))
            continue
        profiles[profile.model] = profile
    return ProfileScan(profiles, tuple(errors))


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
    if stopbits not in STOPBITS:
        raise keys["stopbits"].expected(_SERIAL_KEYS["stopbits"])
    return SerialSettings(
        baudrate=keys["baudrate"].integer("a positive baud rate, e.g. 9600", *BAUDRATES),
        bytesize=keys["bytesize"].integer(_SERIAL_KEYS["bytesize"], *BYTESIZES),
        parity=keys["parity"].choice({p: p for p in _PARITIES}),
        stopbits=stopbits,
    )


def _frame_kinds(
    root: At, top: dict[str, At], base: Profile, binary: dict[str, bool]
) -> tuple[tuple[FrameSpec, ...], list[At], str]:
    """The frame kinds, where each is declared, and which key declares them.

    ``binary`` says, per layout name, whether that layout cuts binary frames.
    """
    if ("fields" in top) == ("frames" in top):
        if "fields" not in top:
            raise root.missing("fields", _TOP_KEYS["fields"])
        raise top["frames"].error("expected either fields (one kind of frame) or frames, not both")
    if "fields" in top:
        if len(binary) > 1:
            raise top["fields"].error(
                "with layouts, give frames: a list of frame kinds, each naming its layout"
            )
        kind = "binary" if binary[DEFAULT_LAYOUT] else "key_value"
        fields = _frames.fields_list(top["fields"], base.measurement, kind)
        return (FrameSpec("data", "reading", None, None, kind, fields),), [top["fields"]], "fields"
    frames = _frames.frame_kinds(top["frames"], base.measurement, tuple(binary))
    frame_ats = top["frames"].items("frame kinds")
    for frame, at in zip(frames, frame_ats, strict=True):
        if (frame.format == "binary") != binary[frame.layout]:
            raise at.keys(_frames.FRAME_KEYS, ()).get("format", at).error(
                "binary frames need a length or a length_field; text frames (key_value, csv)"
                " end at their end marker"
            )
    return frames, frame_ats, "frames"


_Declared = tuple[str, Framing, At, At | None]  # name, framing, where framing and checksum are


def _declared_layouts(root: At, top: dict[str, At]) -> list[_Declared]:
    """The default layout (top-level framing and checksum), then each under ``layouts``."""
    if "framing" not in top:
        raise root.missing("framing", _TOP_KEYS["framing"])
    declared: list[_Declared] = [
        (DEFAULT_LAYOUT, _frames.framing(top["framing"]), top["framing"], top.get("checksum"))
    ]
    if "layouts" in top:
        at = top["layouts"]
        if not isinstance(at.node, yaml.MappingNode) or not at.node.value:
            raise at.expected("a mapping of layout name to {framing, checksum}")
        names = {str(k.value): "a layout" for k, _ in at.node.value}
        for name, layout_at in at.keys(names, ()).items():
            if not _frames.NAME.fullmatch(name) or name == DEFAULT_LAYOUT:
                key = next(k for k, v in at.node.value if v is layout_at.node)
                raise At(at.source, key, layout_at.path).expected(
                    f"a lower_snake_case layout name other than {DEFAULT_LAYOUT!r}"
                    " (the top-level framing's)"
                )
            keys = layout_at.keys(_frames.LAYOUT_KEYS, required=_frames.LAYOUT_KEYS)
            framing = _frames.framing(keys["framing"])
            if framing.delimited:
                raise keys["framing"].error(
                    "expected a binary layout (length or length_field); text lines use the"
                    " top-level framing"
                )
            declared.append((name, framing, keys["framing"], keys["checksum"]))
    return declared


def _checked_layout(
    root: At, item: _Declared, frames: tuple[FrameSpec, ...], frame_ats: list[At],
    fields_path: str,
) -> Layout:
    """One layout, its checksum read and its lengths and byte layout checked for its kinds."""
    name, framing, framing_at, checksum_at = item
    binary = not framing.delimited
    checksum = None
    if checksum_at is not None:
        checksum = _frames.checksum_or_none(checksum_at)
        if checksum is not None and not binary:
            raise checksum_at.error("not supported on text frames that end at an end marker")
    elif binary:  # a layout under layouts has its checksum key checked by keys()
        raise root.missing("checksum", _TOP_KEYS["checksum"])
    mine = [(f, at) for f, at in zip(frames, frame_ats, strict=True) if f.layout == name]
    if not mine:
        raise framing_at.error(
            f"no frame kind uses layout {name!r}; give a frame kind layout: {name}"
            if name != DEFAULT_LAYOUT
            else "no frame kind uses the top-level framing; a kind without layout: uses it"
        )
    kinds, ats = tuple(f for f, _ in mine), [at for _, at in mine]
    framing = _layout.settle_lengths(framing_at, framing, kinds, ats)
    framing = _layout.check_layout(
        framing_at, framing, checksum, checksum_at if checksum is not None else None,
        frames=kinds, frame_ats=ats, fields_path=fields_path,
    )
    return Layout(name, framing, checksum)


def _distinct_starts(layouts: list[Layout], declared: list[_Declared]) -> None:
    """No layout's start marker may begin another's: the decoder could not tell them apart."""
    for index, layout in enumerate(layouts):
        for other in layouts[:index]:
            a, b = layout.framing.start, other.framing.start
            if a.startswith(b) or b.startswith(a):
                at = declared[index][2].keys(_frames.FRAMING_KEYS, ())
                raise (at.get("start") or at["start_text"]).expected(
                    f"a start marker that neither begins nor is begun by layout {other.name}'s"
                    f" ({b.hex(' ').upper()}), so the decoder can tell their frames apart;"
                    f" got {a.hex(' ').upper()}"
                )


def _frames_profile(root: At, top: dict[str, At], base: Profile) -> Profile:
    if "modbus" in top:
        raise top["modbus"].error("only for protocol: modbus_rtu")
    declared = _declared_layouts(root, top)
    binary = {name: not framing.delimited for name, framing, *_ in declared}
    frames, frame_ats, fields_path = _frame_kinds(root, top, base, binary)
    layouts = [_checked_layout(root, item, frames, frame_ats, fields_path) for item in declared]
    _distinct_starts(layouts, declared)
    framing, checksum = layouts[0].framing, layouts[0].checksum
    profile = Profile(
        model=base.model, vendor=base.vendor, datasheet=base.datasheet,
        measurement=base.measurement, serial=base.serial, framing=framing, checksum=checksum,
        frames=frames, source=base.source, layouts=tuple(layouts),
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
        polling=polling, layouts=profile.layouts,
    )


def _modbus_profile(root: At, top: dict[str, At], base: Profile) -> Profile:
    for key in ("framing", "checksum", "layouts", "frames", "commands"):
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
