"""What an agent config names on this machine: profiles that exist, ports that are there.

``edge-agent check`` reports these with the config's own file:line, together with
the file's other mistakes, so an installer fixes all of them in one go. ``run``
refuses an unknown profile the same way; a missing port does not stop ``run``
(a sensor may be plugged in later: its port is retried), but ``check`` says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from cityedge import yamlconfig
from cityedge.yamlconfig import ConfigError, Located
from edge_agent.config import AgentConfig

KEY = re.compile(r"[a-z_]+(?:\.[A-Za-z0-9_]+)?")


def locate(path: Path | str) -> Located | None:
    """The config file parsed with the line of every key; None if it cannot be read
    or parsed (loading it says why)."""
    try:
        return yamlconfig.parse(Path(path).read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, ConfigError):
        return None


def _sensors(doc: Located) -> list[tuple[int, dict[str, Any]]]:
    sensors = doc.data.get("sensors") if isinstance(doc.data, dict) else None
    if not isinstance(sensors, list):
        return []
    return [(i, s) for i, s in enumerate(sensors) if isinstance(s, dict)]


def unknown_profiles(doc: Located, known: Collection[str], where: Path,
                     broken: Mapping[str, str] | None = None) -> list[ConfigError]:
    """A ``sensors[i].profile`` that is not one of ``known`` (the profiles in ``where``),
    or whose file is ``broken`` (name: the loader's error)."""
    names = ", ".join(sorted(known)) or "none"
    broken = broken or {}
    errors = []
    for i, s in _sensors(doc):
        name = s.get("profile")
        if not isinstance(name, str):
            continue
        if name in broken:
            errors.append(doc.error(("sensors", i, "profile"),
                                    f"profile {name!r} is broken: {broken[name]}"))
        elif name not in known:
            errors.append(doc.error(("sensors", i, "profile"),
                                    f"unknown profile {name!r}; {where} has: {names}"))
    return errors


def profile_errors(doc: Located, where: Path) -> list[ConfigError]:
    """The config's profiles checked against the folder ``where``: unknown ones, and those
    whose file is broken (a broken file stops only a sensor that uses its model)."""
    from edge_agent.decoding import scan_profiles  # noqa: PLC0415  (only check needs it)

    try:
        scan = scan_profiles(where)
    except OSError as exc:
        return [doc.error(("profiles_dir",), f"cannot load the profiles: {exc}")]
    broken = {Path(e.file).stem: str(e) for e in scan.errors}
    return unknown_profiles(doc, scan.profiles, where, broken)


def missing_ports(doc: Located) -> list[ConfigError]:
    """A ``sensors[i].port`` that is not on this machine, or not a device or pty."""
    errors = []
    for i, s in _sensors(doc):
        port = s.get("port")
        if not isinstance(port, str):
            continue
        if not os.path.exists(port):
            errors.append(doc.error(("sensors", i, "port"), f"{port} does not exist on this"
                                    " machine (is the sensor plugged in? ls /dev/serial/by-id/)"))
        elif os.path.isdir(port):
            errors.append(doc.error(("sensors", i, "port"), f"{port} is a folder, not a port"))
    return errors


def sensor_errors(doc: Located, config: AgentConfig, where: Path) -> list[ConfigError]:
    """What each sensor asks of its profile that the profile cannot do (a mode it has not,
    a poll_interval of 0, a parameter out of range): what ``run`` would refuse, found for
    every sensor at once and placed at the key's line."""
    from edge_agent.decoding import scan_profiles  # noqa: PLC0415  (only check needs them)
    from edge_agent.polling import PollConfigError  # noqa: PLC0415
    from edge_agent.serial_port import sensor_plan  # noqa: PLC0415

    try:
        profiles = scan_profiles(where).profiles
    except OSError:
        return []  # profile_errors says why
    errors = []
    for i, sensor in enumerate(config.sensors):
        profile = profiles.get(sensor.profile)
        if profile is None:
            continue  # unknown or broken: profile_errors names it
        try:
            sensor_plan(sensor, profile)
        except PollConfigError as exc:
            key, sep, why = str(exc).partition(": ")
            if sep and KEY.fullmatch(key):
                errors.append(doc.error(("sensors", i, *key.split(".")), why))
            else:
                errors.append(doc.error(("sensors", i), str(exc)))
    return errors
