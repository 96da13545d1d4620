"""Loader, part 2: the commands a gateway sends, and the polling schedule.

Command and reply bytes are written in a profile exactly as the vendor's
document gives them. They are checked here by decoding them: a command with a
typo in its checksum, or a reply the profile's own decoder would reject, is a
``ProfileError`` at load time, not a device that silently never answers.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

import yaml

from edge_agent.decoding import _frames, _layout
from edge_agent.decoding._nodes import At
from edge_agent.decoding.profile import (
    ChecksumSpec,
    Command,
    CommandParam,
    Commands,
    FrameSpec,
    Framing,
    Mode,
    Polling,
    Profile,
)
from edge_agent.decoding.vocabulary import COMMAND_ROLES

_COMMANDS_KEYS = {
    "framing": "how the device frames what it is sent (same keys as the top-level framing)",
    "checksum": "the checksum of what the device is sent (same keys as the top-level checksum)",
    **{role: f"a mapping: send, reply, ... ({what})" for role, what in COMMAND_ROLES.items()},
}
_COMMAND_KEYS = {
    "send": 'the bytes to send, as a quoted hex string, e.g. "42 4D E1 00 00 01 70"',
    "send_text": 'the text to send, e.g. "0R2\\r\\n"',
    "reply": "the bytes the device answers, as a quoted hex string",
    "reply_text": "the text the device answers",
    "reply_frame": "the frame kind the device answers with (its live values)",
    "empty": "the bytes the device answers to a query when it has no new reading",
    "refused": "the bytes the device answers when the command is not allowed in its state",
    "param": "a mapping: name, offset, type, valid, default, reply_offset",
}
_PARAM_KEYS = {
    "name": "a lower_snake_case name, set per sensor in the agent config (params:)",
    "offset": "its byte offset in the (unstuffed) command frame",
    "type": "an unsigned integer type",
    "valid": "[min, max] the device accepts",
    "default": "the value sent when the sensor's config gives none",
    "reply_offset": "where the device echoes it in its (unstuffed) reply",
}
_POLLING_KEYS = {
    "default": "the mode used unless a sensor's config names another",
    "modes": "a mapping of mode name to {start, poll, interval}",
    "interval": "seconds between polls (Modbus devices)",
    "reply_timeout": "seconds to wait for a command's reply",
    "warmup": "a mapping: readings, seconds (discarded after wake or start)",
    "power_up": "the device's state after power-up: active, passive, idle or asleep",
    "recover": "command roles sent when the device has been silent, e.g. [wake]",
    "silent_s": "seconds without a frame after which recover is sent (default 10)",
}
_MODE_KEYS = {
    "start": "command roles sent when the port opens, e.g. [wake, passive]",
    "poll": "command roles sent every interval, e.g. [query]",
    "interval": "seconds between polls",
}
_WARMUP_KEYS = {
    "readings": "how many readings to discard after a wake or start, at least",
    "seconds": "how long after a wake or start readings are discarded",
}
_POWER_UP = ("active", "passive", "idle", "asleep")

# decode(profile, data) -> event kinds and their raw bytes; injected to avoid an import cycle
Decode = Callable[[Profile, bytes], list[tuple[str, bytes, str]]]


def commands(at: At, device: Profile, decode: Decode) -> Commands:
    keys = at.keys(_COMMANDS_KEYS, required=())
    framing: Framing | None = None
    checksum: ChecksumSpec | None = None
    host: Profile | None = None
    if "framing" in keys:
        framing = _frames.framing(keys["framing"])
        checksum = _frames.checksum_or_none(keys["checksum"]) if "checksum" in keys else None
        whole = FrameSpec("command", "reply", None, None, "binary", ())
        framing = _layout.settle_lengths(keys["framing"], framing, (whole,), [keys["framing"]])
        framing = _layout.check_layout(
            keys["framing"], framing, checksum, keys.get("checksum") if checksum else None,
            frames=(whole,), frame_ats=[keys["framing"]], fields_path="frames",
        )
        host = Profile(
            model=f"{device.model}_commands", vendor=device.vendor, datasheet=device.datasheet,
            measurement=device.measurement, serial=device.serial, framing=framing,
            checksum=checksum, frames=(whole,), source=device.source,
        )
    elif "checksum" in keys:
        raise keys["checksum"].error("a checksum needs a framing to say where it is")
    roles = {}
    for role in COMMAND_ROLES:
        if role in keys:
            roles[role] = _command(keys[role], role, host, device, decode)
    if not roles:
        raise at.error(f"expected at least one command role: {', '.join(COMMAND_ROLES)}")
    assert framing is not None or host is None
    return Commands(
        framing=framing or Framing(b"", b"", None, None, 0, 0, None),
        checksum=checksum,
        by_role=MappingProxyType(roles),
    )


def _bytes(keys: dict[str, At], name: str, what: str) -> bytes | None:
    if name in keys and f"{name}_text" in keys:
        raise keys[f"{name}_text"].error(f"expected either {name} or {name}_text, not both")
    if name in keys:
        return keys[name].hex_bytes(what)
    if f"{name}_text" in keys:
        return keys[f"{name}_text"].text(what).encode("latin-1")
    return None


def _command(at: At, role: str, host: Profile | None, device: Profile, decode: Decode) -> Command:
    keys = at.keys(_COMMAND_KEYS, required=())
    send = _bytes(keys, "send", "the command bytes")
    if send is None:
        raise at.missing("send", _COMMAND_KEYS["send"])
    if host is not None:
        events = decode(host, send)
        kinds = [kind for kind, _, _ in events]
        if kinds not in (["reply"], ["skipped", "reply"]):
            detail = "; ".join(f"{kind} {raw.hex(' ')} {why}".strip() for kind, raw, why in events)
            raise keys.get("send", keys.get("send_text", at)).expected(
                f"one command frame (a wake-up byte may come first) that passes the commands'"
                f" framing and checksum; decoding gives: {detail}"
            )
    reply = _bytes(keys, "reply", "the reply bytes")
    reply_frame = None
    if "reply_frame" in keys:
        if reply is not None:
            raise keys["reply_frame"].error("expected either reply or reply_frame, not both")
        names = {frame.name: frame.name for frame in device.frames}
        reply_frame = keys["reply_frame"].choice(names, f"a frame kind: {', '.join(names)}")
    empty = keys["empty"].hex_bytes("the empty reply") if "empty" in keys else None
    refused = keys["refused"].hex_bytes("the refusal") if "refused" in keys else None
    for name, data in (("reply", reply), ("empty", empty), ("refused", refused)):
        if data is not None and device.framing is not None:
            events = decode(device, data)
            if [kind for kind, _, _ in events] != ["reply"]:
                detail = "; ".join(f"{k} {raw.hex(' ')} {why}".strip() for k, raw, why in events)
                where = keys.get(name, keys.get(f"{name}_text", at))
                raise where.expected(
                    f"one frame of a reply kind that the profile decodes; decoding gives: {detail}"
                )
    param = _param(keys["param"], send) if "param" in keys else None
    return Command(role, send, reply, reply_frame, empty, param, refused)


def _param(at: At, send: bytes) -> CommandParam:
    keys = at.keys(_PARAM_KEYS, required=("name", "offset", "type", "valid", "default"))
    kind = keys["type"].choice(_frames.UNSIGNED_TYPES, _PARAM_KEYS["type"])
    offset = keys["offset"].integer("a byte offset >= 0", 0)
    if offset + kind.size > len(send):
        raise keys["offset"].expected(f"an offset inside the {len(send)}-byte command")
    bounds = keys["valid"].items("[min, max]")
    if len(bounds) != 2:
        raise keys["valid"].expected("[min, max]: two integers")
    low, high = (bound.integer("an integer", int(kind.min), int(kind.max)) for bound in bounds)
    default = keys["default"].integer(f"an integer in {low}..{high}", low, high)
    reply_offset = None
    if "reply_offset" in keys:
        reply_offset = keys["reply_offset"].integer("a byte offset >= 0", 0)
    return CommandParam(
        name=keys["name"].text("a lower_snake_case name", _frames.NAME),
        offset=offset,
        type=kind,
        valid=(low, high),
        default=default,
        reply_offset=reply_offset,
    )


def _modes(
    at: At, keys: dict[str, At], commands_: Commands | None, modbus: bool
) -> dict[str, Mode]:
    if modbus:
        for key in ("modes", "default", "warmup", "power_up", "recover", "silent_s"):
            if key in keys:
                raise keys[key].error("not used by Modbus devices: give interval and reply_timeout")
        interval = keys["interval"].number("seconds > 0") if "interval" in keys else 10.0
        if interval <= 0:
            raise keys["interval"].expected("seconds > 0")
        return {"poll": Mode("poll", (), ("read",), float(interval))}
    if "interval" in keys:
        raise keys["interval"].error("give each mode its interval under modes")
    if "modes" not in keys:
        raise at.missing("modes", _POLLING_KEYS["modes"])
    available = set(commands_.by_role) if commands_ is not None else set()
    modes_at = keys["modes"]
    spec = {name: "a mode" for name in _mode_names(modes_at)}
    found = modes_at.keys(spec, ())
    return {name: _mode(mode_at, name, available) for name, mode_at in found.items()}


def polling(at: At, commands_: Commands | None, modbus: bool) -> Polling:
    keys = at.keys(_POLLING_KEYS, required=())
    modes = _modes(at, keys, commands_, modbus)
    default = next(iter(modes))
    if "default" in keys:
        default = keys["default"].choice({m: m for m in modes}, f"one of: {', '.join(modes)}")
    warmup_readings, warmup_s = 0, 0.0
    if "warmup" in keys:
        w = keys["warmup"].keys(_WARMUP_KEYS, required=())
        warmup_readings = w["readings"].integer("a count >= 0", 0) if "readings" in w else 0
        warmup_s = float(w["seconds"].number("seconds >= 0")) if "seconds" in w else 0.0
        if warmup_s < 0:
            raise w["seconds"].expected("seconds >= 0")
    timeout = float(keys["reply_timeout"].number("seconds > 0")) if "reply_timeout" in keys else 1.0
    if timeout <= 0:
        raise keys["reply_timeout"].expected("seconds > 0")
    power_up = "active"
    if "power_up" in keys:
        power_up = keys["power_up"].choice({p: p for p in _POWER_UP})
    recover: tuple[str, ...] = ()
    if "recover" in keys:
        available = sorted(commands_.by_role) if commands_ is not None else []
        roles = []
        for item in keys["recover"].items("a list of command roles, e.g. [wake]"):
            role = item.text("a command role")
            if role not in available:
                known = ", ".join(available)
                raise item.expected(f"a command role defined under commands ({known})")
            roles.append(role)
        recover = tuple(roles)
    silent_s = 10.0
    if "silent_s" in keys:
        silent_s = float(keys["silent_s"].number("seconds > 0"))
        if silent_s <= 0:
            raise keys["silent_s"].expected("seconds > 0")
    return Polling(
        modes=MappingProxyType(modes), default=default, reply_timeout=timeout,
        warmup_readings=warmup_readings, warmup_s=warmup_s, power_up=power_up,
        recover=recover, silent_s=silent_s,
    )


def _mode_names(at: At) -> list[str]:
    if not isinstance(at.node, yaml.MappingNode) or not at.node.value:
        raise at.expected("a mapping of mode name to {start, poll, interval}")
    names = []
    for key_node, _ in at.node.value:
        name = At(at.source, key_node, at.path).text("a lower_snake_case mode name", _frames.NAME)
        names.append(name)
    return names


def _mode(at: At, name: str, available: set[str]) -> Mode:
    keys = at.keys(_MODE_KEYS, required=())
    steps: dict[str, tuple[str, ...]] = {}
    for key in ("start", "poll"):
        roles = []
        if key in keys:
            listed = keys[key].items(f"a list of command roles, e.g. [{', '.join(available)}]")
            for item in listed:
                role = item.text("a command role")
                if role not in available:
                    known = ", ".join(sorted(available)) or "none"
                    raise item.expected(f"a command role defined under commands ({known})")
                roles.append(role)
        steps[key] = tuple(roles)
    interval = None
    if "interval" in keys:
        interval = float(keys["interval"].number("seconds > 0"))
        if interval <= 0:
            raise keys["interval"].expected("seconds > 0")
    if steps["poll"] and interval is None:
        raise at.missing("interval", _MODE_KEYS["interval"])
    return Mode(name, steps["start"], steps["poll"], interval)
