"""SIGHUP: the agent reads its config again and applies it without losing a reading.

A reload is checked whole before anything changes: the file (every error at its
file:line), the profiles its sensors name, each new sensor's polling settings,
and that nothing changed which only a restart can apply (``RESTART_ONLY``: the
gateway's identity, the outbox, the clock settings, the display, the status socket). A refused
reload leaves the running config as it was, says why in one ERROR line and is
counted by reason (``config_reloads_refused_<reason>`` in gateway_health).

What a good reload changes, and what it leaves alone:
- a sensor that is the same keeps its open port and its decoder (nothing read is
  dropped); one whose tags alone changed keeps them too and sends its new tags;
- a removed sensor's port is closed; its readings already in the outbox are sent
  under the model and tags they were read with (their meta stays stored);
- a changed sensor (port, profile, baud rate, polling) is closed and reopened;
- an added sensor is opened;
- the uplink is reconnected only if its settings or the gateway's secret changed;
  the outbox, the delivery window and what is in flight are kept: a batch sent
  on the old connection is acked on the new one or resent after ack_timeout
  (a resend writes the identical point, so nothing lands twice);
- readings taken but not yet stored are stored: the outbox is never closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cityedge.counters import by_reason
from cityedge.uplink.seal import derive_key
from cityedge.yamlconfig import ConfigError
from edge_agent import site_check
from edge_agent.config import AgentConfig, SensorConfig, effective_uplink, load_config, resolve
from edge_agent.decoding import Profile, scan_profiles
from edge_agent.serial_port import SensorPort
from edge_agent.transports import MqttTransport, Transport
from edge_agent.transports.http import HttpTransport
from edge_agent.watch import uplink_target

if TYPE_CHECKING:
    from edge_agent.agent import Agent

log = logging.getLogger("edge_agent.agent")

# Settings a reload refuses to change: the outbox stays open through a reload, the
# gateway id names its readings, the clock, display and status socket are made once.
RESTART_ONLY = ("gateway.id", "outbox", "clock_synced", "clock_hold_max", "display", "status")


class ReloadRefused(Exception):
    """A reload that changes nothing: ``reason`` is the counter's stable code."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def sensor_profiles(config: AgentConfig, base_dir: Path,
                    shipped: Path) -> tuple[dict[str, Profile], tuple[Any, ...]]:
    """The profiles by model and the broken files' errors; a ValueError
    names the first sensor whose profile is unknown or broken."""
    where = resolve(base_dir, config.profiles_dir) if config.profiles_dir else shipped
    scan = scan_profiles(where)
    for i, sensor in enumerate(config.sensors):
        broken = scan.error_for(sensor.profile)
        if broken is not None:
            raise ValueError(f"sensors[{i}].profile: {sensor.profile!r} is broken: {broken}")
        if sensor.profile not in scan.profiles:
            known = ", ".join(sorted(scan.profiles))
            raise ValueError(f"sensors[{i}].profile: {sensor.profile!r} not in {where} ({known})")
    return scan.profiles, scan.errors


def make_transport(config: AgentConfig, base_dir: Path, key: bytes | None) -> Transport:
    u = effective_uplink(config, base_dir)  # the secret as credentials, TLS paths resolved
    if u.kind == "http":
        return HttpTransport(u.http, config.gateway.id, max_in_flight=u.max_in_flight, key=key)
    return MqttTransport(u.mqtt, config.gateway.id, max_in_flight=u.max_in_flight, key=key)


def _get(config: object, dotted: str) -> object:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def restart_only_changes(old: AgentConfig, new: AgentConfig) -> list[str]:
    return [key for key in RESTART_ONLY if _get(old, key) != _get(new, key)]


def _transport_key(config: AgentConfig, base_dir: Path) -> tuple[object, ...]:
    """What the connection is made from: a change means a new connection."""
    u = effective_uplink(config, base_dir)
    return (u.kind, u.mqtt if u.kind == "mqtt" else u.http, u.max_in_flight,
            config.gateway.secret)


@dataclasses.dataclass(frozen=True)
class SensorDiff:
    added: tuple[SensorConfig, ...]
    removed: tuple[str, ...]
    changed: tuple[SensorConfig, ...]  # reopened
    retagged: tuple[SensorConfig, ...]  # port kept, new tags

    def describe(self) -> str:
        parts = [f"{word} {', '.join(ids)}" for word, ids in (
            ("added", [s.id for s in self.added]), ("removed", list(self.removed)),
            ("reopened", [s.id for s in self.changed]),
            ("retagged", [s.id for s in self.retagged])) if ids]
        return "; ".join(parts) or "sensors unchanged"


def diff_sensors(old: list[SensorConfig], new: list[SensorConfig],
                 old_profiles: dict[str, Profile], new_profiles: dict[str, Profile]) -> SensorDiff:
    before = {s.id: s for s in old}
    after = {s.id: s for s in new}
    changed: list[SensorConfig] = []
    retagged: list[SensorConfig] = []
    for sid, s in after.items():
        was = before.get(sid)
        if was is None or was == s:
            continue
        same_port = (dataclasses.replace(was, tags={}) == dataclasses.replace(s, tags={})
                     and old_profiles.get(s.profile) == new_profiles.get(s.profile))
        (retagged if same_port else changed).append(s)
    for sid, s in before.items():  # a profile file edited on disk reopens its sensors
        if sid in after and after[sid] == s and old_profiles.get(s.profile) != \
                new_profiles.get(s.profile):
            changed.append(after[sid])
    return SensorDiff(added=tuple(s for sid, s in after.items() if sid not in before),
                      removed=tuple(sid for sid in before if sid not in after),
                      changed=tuple(changed), retagged=tuple(retagged))


class Reloader:
    """Runs one reload at a time; SIGHUPs that arrive meanwhile make one more."""

    def __init__(self, agent: Agent, config_path: Path) -> None:
        self.agent, self.path = agent, config_path
        self.reloads = 0
        self.refused: Counter[str] = Counter()
        self.last_error = ""
        self.last_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        """The SIGHUP handler: start a reload, or ask for one more after the running one."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="reload")

    async def stop(self) -> None:
        """Let a reload under way finish (one still waiting for the start is dropped)."""
        self._again = False
        if self._task is None or self._task.done():
            return
        if not self.agent.started.is_set():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        await self.agent.started.wait()  # the outbox is open, the ports started
        while True:
            self._again = False
            await self.reload()
            if not self._again:
                return

    async def reload(self) -> bool:
        a = self.agent
        a.notifier.reloading()
        log.info("SIGHUP: reading %s again", self.path)
        self.last_at = time.time()
        try:
            await self._apply(*self._check())
        except ReloadRefused as exc:
            self.refused[exc.reason] += 1
            self.last_error = str(exc)
            log.error("SIGHUP: reload refused (%s), the running config is kept: %s",
                      exc.reason, exc)
            a.notifier.ready(f"running the previous config; reload refused: {exc}")
            return False
        self.reloads += 1
        self.last_error = ""
        a.notifier.ready(a.status_line())
        return True

    def _check(self) -> tuple[AgentConfig, dict[str, Profile], list[SensorPort]]:
        """The new config, its profiles and its new ports (not opened), or ReloadRefused."""
        a = self.agent
        errors: list[ConfigError] = []
        new: AgentConfig | None = None
        try:
            new = load_config(self.path)
        except ConfigError as exc:
            errors.append(exc)
        except OSError as exc:
            raise ReloadRefused("unreadable", f"{self.path}: {exc.strerror or exc}") from None
        doc = site_check.locate(self.path)
        if doc is not None:  # its profiles too, as edge-agent check does, even if it is broken
            from edge_agent.agent import SHIPPED_PROFILES  # noqa: PLC0415  (it imports this)

            raw = doc.data.get("profiles_dir") if isinstance(doc.data, dict) else None
            where = resolve(a.base_dir, raw) if isinstance(raw, str) else SHIPPED_PROFILES
            errors += site_check.profile_errors(doc, where)
        if errors or new is None:
            raise ReloadRefused("invalid", str(ConfigError.combine(errors)).replace("\n", "; "))
        fixed = restart_only_changes(a.config, new)
        if fixed:
            raise ReloadRefused("needs_restart", f"{', '.join(fixed)} changed: applied only"
                                " at a restart (systemctl restart cityedge-agent)")
        from edge_agent.agent import SHIPPED_PROFILES  # noqa: PLC0415

        try:
            profiles, _ = sensor_profiles(new, a.base_dir, SHIPPED_PROFILES)
            diff = diff_sensors(a.config.sensors, new.sensors, a.profiles, profiles)
            ports = [SensorPort(s, profiles[s.profile], a.clock, a._store)
                     for s in (*diff.added, *diff.changed)]
        except (ValueError, OSError) as exc:
            raise ReloadRefused("invalid", f"{self.path}: {exc}") from None
        return new, profiles, ports

    async def _apply(self, new: AgentConfig, profiles: dict[str, Profile],
                     fresh: list[SensorPort]) -> None:
        a = self.agent
        old = a.config
        diff = diff_sensors(old.sensors, new.sensors, a.profiles, profiles)
        reconnect = _transport_key(old, a.base_dir) != _transport_key(new, a.base_dir)
        meta = {s.id: {"model": profiles[s.profile].model, **s.tags} for s in new.sensors}
        for sid, m in meta.items():
            was = a.sensors_meta.get(sid, {}).get("model")
            if was is not None and was != m["model"]:
                # Readings carry their sensor's id; the model and tags travel per batch.
                log.warning("SIGHUP: sensor %s is now a %s (was %s): its %s readings still in"
                            " the outbox go out as %s; give a new sensor a new id to keep"
                            " them apart", sid, m["model"], was, was, m["model"])
        assert a.outbox is not None
        await a.io_call(a.outbox.save_sensor_meta, meta)
        # Removed sensors keep their meta: their readings may still wait in the outbox.
        a.sensors_meta = {**a.sensors_meta, **meta}
        a.config, a.profiles = new, profiles
        u = new.uplink  # the window keeps what is in flight; these apply to what is sent next
        a.window.batch_size, a.window.max_in_flight = u.batch_size, u.max_in_flight
        a.window.ack_timeout = u.ack_timeout
        going = {*diff.removed, *(s.id for s in diff.changed)}
        for port in a.ports:
            if port.config.id in going:
                port.close()
        by_id = {p.config.id: p for p in a.ports if p.config.id not in going}
        for s in diff.retagged:
            by_id[s.id].config = s
        by_id.update((p.config.id, p) for p in fresh)
        a.ports = [by_id[s.id] for s in new.sensors]
        for port in fresh:
            port.start()
        if reconnect:
            await self._reconnect()
        log.info("SIGHUP: config reloaded from %s: %s; uplink %s", self.path, diff.describe(),
                 f"reconnected to {a.watch.uplink.target}" if reconnect else "kept")

    async def _reconnect(self) -> None:
        """The uplink changed: close the old connection, open the new one. What is in flight
        stays in the window: acked over the new link, or resent after ack_timeout."""
        a = self.agent
        a.seal_key = seal_key(a.config)
        a.displays.key = a.seal_key
        new = make_transport(a.config, a.base_dir, a.seal_key)
        new.downlink = a.display.on_message
        await a.transport.close()
        await new.start()
        a.transport = new
        a.transport_changed.set()  # the ack loop listens to the new one
        a.watch.uplink.target = uplink_target(a)

    def health_fields(self) -> dict[str, int]:
        return {"config_reloads": self.reloads,
                "config_reloads_refused": sum(self.refused.values()),
                **by_reason("config_reloads_refused", self.refused)}

    def status(self) -> dict[str, object]:
        return {"path": str(self.path), "reloads": self.reloads,
                "refused": dict(self.refused), "last_error": self.last_error,
                "last_reload_age_s": None if self.last_at is None
                else round(time.time() - self.last_at, 1)}


def seal_key(config: AgentConfig) -> bytes | None:
    return None if config.gateway.secret is None else derive_key(config.gateway.secret)
