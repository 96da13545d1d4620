"""The running agent's live status, asked over a local unix socket (no network port).

``edge-agent status`` connects to the socket (``status.socket`` in the config;
by default ``agent.sock`` in the outbox's folder; mode and group from
``status.mode`` and ``status.group``, 0660 and the agent's own group by default,
so technicians in that group may ask without root), sends
``status``, and the agent writes one JSON document and closes. ``edge-agent
tail`` sends ``tail``: the agent then writes each reading it stores, one JSON
line each, until the asker hangs up (``Tails``: a slow reader loses lines,
counted, never slows the agent). ``snapshot`` builds it from the agent's own
parts, and ``problems`` says in words what makes the gateway degraded: the
status command exits 1 when there is any.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import stat
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cityedge.logthrottle import LogThrottle
from cityedge.uplink import Reading
from edge_agent.config import resolve
from edge_agent.uplink_watch import GRACE_S

if TYPE_CHECKING:
    from edge_agent.agent import Agent
    from edge_agent.config import AgentConfig
    from edge_agent.watch import Watch

log = logging.getLogger("edge_agent.agent")

SOCKET_NAME = "agent.sock"
# Seconds without a reading before a sensor counts as silent.
SILENT_S = 120.0
# Outbox fill, in percent of max_size_mb, from which the gateway is degraded.
FULL_PCT = 80.0
# The agent's own readings about itself and its ports (health.py), not a sensor's.
HEALTH_MEASUREMENTS = ("sensor_health", "gateway_health")
# Readings queued for one tail reader; past it the oldest are dropped, and counted.
TAIL_QUEUE = 1000
# Tail readers at once.
MAX_TAILS = 8
# Seconds to wait for the asker's request line.
REQUEST_TIMEOUT_S = 2.0
# Connections at once (tails included); past it a connection is closed at once, counted:
# each holds a descriptor of the agent's, which its own files need.
MAX_CONNECTIONS = 16
# Seconds a tail reader may leave a line unread before it is hung up on.
DRAIN_TIMEOUT_S = 10.0


def reading_line(r: Reading) -> dict[str, Any]:
    return {"sensor": r.sensor, "measurement": r.measurement, "time_ns": r.time_ns,
            "fields": dict(r.fields)}


class Tails:
    """The sensors' readings the agent stores (not its own health readings): the last one
    per sensor, and each to every tail reader's bounded queue."""

    def __init__(self) -> None:
        self.last: dict[str, Reading] = {}  # one per configured sensor
        self.queues: set[asyncio.Queue[Reading]] = set()
        self.dropped = 0  # readings a slow tail reader did not get
        # Status connections refused by reason (too_many, stalled, bad_request).
        self.refused: Counter[str] = Counter()

    def stored(self, readings: list[Reading]) -> None:
        decoded = [r for r in readings if r.measurement not in HEALTH_MEASUREMENTS]
        self.last.update((r.sensor, r) for r in decoded)
        for queue in self.queues:
            for r in decoded:
                if queue.full():
                    queue.get_nowait()
                    self.dropped += 1
                queue.put_nowait(r)


def socket_path(outbox: Path) -> Path:
    """The default socket: beside the outbox."""
    return outbox.parent / SOCKET_NAME


def status_socket(config: AgentConfig, base: Path) -> Path:
    """Where the agent of this config answers (relative paths from the config's folder)."""
    if config.status.socket is not None:
        return resolve(base, config.status.socket)
    return socket_path(resolve(base, config.outbox.path))


def _age(then: float | None, now: float) -> float | None:
    return None if then is None else round(now - then, 1)


async def snapshot(agent: Agent, watch: Watch) -> dict[str, Any]:
    a = agent
    assert a.outbox is not None
    now, mono = time.time(), time.monotonic()
    depth = await a.io_call(a.outbox.depth)
    max_bytes = a.outbox.max_bytes or 0
    uptime = mono - a.started_at
    rate = a.outbox.appended_bytes / uptime if uptime > 0 else 0.0
    sensors = []
    for port in a.ports:
        last = a.tails.last.get(port.config.id)
        sensors.append({
            "id": port.config.id, "port": port.config.port, "profile": port.profile.model,
            "open": port.is_open,
            "last_reading_age_s": _age(last.time_ns / 1e9, now) if last else None,
            "last_reading": dict(last.fields) if last else None,
            "not_stored": a.store_failures[port.config.id],
            "dropped": a.outbox.dropped[port.config.id],
            "counters": dict(sorted(port.counters.items())),
        })
    up = watch.uplink
    return {
        "gateway": a.config.gateway.id, "uptime_s": round(uptime, 1), "pid": os.getpid(),
        "sensors": sensors,
        "outbox": {
            "path": str(a.outbox_path), "epoch": a.outbox.epoch, "readings": depth.readings,
            "bytes": depth.bytes, "max_bytes": max_bytes,
            "full_pct": round(100 * depth.bytes / max_bytes, 2) if max_bytes else 0.0,
            "oldest_age_s": _age(depth.oldest_ns / 1e9, now) if depth.oldest_ns else None,
            "dropped": sum(a.outbox.dropped.values()),
            "not_stored": sum(a.store_failures.values()), "not_stored_now": a.failing_run,
            "time_left_s": round((max_bytes - depth.bytes) / rate) if rate and max_bytes
            else None,
        },
        "uplink": {
            "target": up.target, "connected": a.transport.ready(),
            "down_for_s": _age(up.down_since, mono), "outages": up.outages,
            "problem": "" if a.transport.ready() else a.transport.problem(),
            "last_ack_age_s": _age(a.last_ack_at, now), "in_flight": a.window.in_flight,
            "backlog_readings": a.window.backlog_seqs, "acked": a.acked,
        },
        "clock": {"synced": a.anchoring.synced_now, "anchor": a.anchoring.anchor_source,
                  "boot": a.clock.boot},
        "config": a.reloader.status() if a.reloader is not None else None,
    }


def problems(status: dict[str, Any]) -> list[str]:
    """What makes this gateway degraded, one line each with what to look at."""
    out = []
    up, box, clock = status["uplink"], status["outbox"], status["clock"]
    if not up["connected"] and (up["down_for_s"] or 0) >= GRACE_S:
        out.append(f"uplink down for {up['down_for_s']:.0f} s: {up['problem'] or 'no answer'}"
                   f" ({up['target']}; edge-agent doctor)")
    for s in status["sensors"]:
        if not s["open"]:
            out.append(f"sensor {s['id']}: port {s['port']} not open (unplugged?)")
        elif s["last_reading_age_s"] is None or s["last_reading_age_s"] > SILENT_S:
            out.append(f"sensor {s['id']}: no reading for more than {SILENT_S:.0f} s"
                       f" (edge-agent probe {s['port']} while the agent is stopped)")
    if box["not_stored_now"]:
        out.append(f"outbox: {box['not_stored_now']} readings not stored (disk full?"
                   " df -h on the outbox's folder)")
    if box["full_pct"] >= FULL_PCT:
        out.append(f"outbox {box['full_pct']:.0f}% full: the oldest readings are dropped"
                   " at 100%")
    reload = status.get("config") or {}
    if reload.get("last_error"):
        out.append(f"config: the last reload was refused, the previous config runs:"
                   f" {reload['last_error']} (edge-agent check --config {reload['path']})")
    if not clock["synced"]:
        out.append(f"clock not NTP-synchronised (anchor: {clock['anchor']}; timedatectl)")
    return out


class StatusServer:
    """The unix socket; every connection gets one JSON snapshot."""

    def __init__(self, agent: Agent, watch: Watch) -> None:
        self.agent, self.watch = agent, watch
        self.path = status_socket(agent.config, agent.base_dir)
        self.errors: Counter[str] = Counter()  # gateway_health status_socket_errors_<reason>
        self._server: asyncio.AbstractServer | None = None
        self._tailing: set[asyncio.StreamWriter] = set()  # closed when the agent stops
        self._open = 0  # connections being answered
        self._log = LogThrottle(log)

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()  # left by a run that ended without closing it
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._server = await asyncio.start_unix_server(self._answer, path=str(self.path))
        except OSError as exc:  # the agent runs on without it; status says not running
            self.errors["unavailable"] += 1
            log.warning("status socket %s not available: %s", self.path, exc)
            return
        self._permit()

    def _permit(self) -> None:
        """The configured mode, then the group: who may ask besides the agent's user."""
        s = self.agent.config.status
        try:
            os.chmod(self.path, s.bits)
        except OSError as exc:
            self.errors["mode"] += 1
            log.error("status.mode: cannot set %04o on %s: %s", s.bits, self.path, exc)
        if s.group is None:
            return
        try:
            gid = grp.getgrnam(s.group).gr_gid
        except KeyError:
            self.errors["group"] += 1
            log.error("status.group: no group %r on this machine (sudo groupadd --system %s);"
                      " %s keeps the agent's own group", s.group, s.group, self.path)
            return
        try:
            os.chown(self.path, -1, gid)
        except OSError as exc:
            self.errors["group"] += 1
            log.error("status.group: cannot give %s to group %s (%s): the agent's user must be"
                      " a member (usermod -aG %s), or SupplementaryGroups= in its unit",
                      self.path, s.group, exc.strerror or exc, s.group)

    async def _answer(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        refused = self.agent.tails.refused
        if self._open >= MAX_CONNECTIONS:
            refused["too_many"] += 1
            self._log.note("too_many", f"status socket: more than {MAX_CONNECTIONS}"
                           " connections, closing the newest", time.monotonic())
            writer.close()
            return
        self._open += 1
        try:
            try:
                request = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
            except TimeoutError:
                request = b"status\n"
            if request.strip() == b"tail":
                await self._tail(writer)
                return
            body = await snapshot(self.agent, self.watch)
            body["problems"] = problems(body)
            writer.write(json.dumps(body, ensure_ascii=False).encode())
            await asyncio.wait_for(writer.drain(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            writer.transport.abort()  # close() would wait for the unread lines to go
            refused["stalled"] += 1
            self._log.note("stalled", "status socket: a reader stopped reading, hung up",
                           time.monotonic())
        except (ConnectionError, OSError):
            pass  # the asker hung up
        except Exception as exc:  # one asker's trouble must not reach the agent
            refused["bad_request"] += 1
            self._log.note("bad_request", f"status request failed: {exc}", time.monotonic())
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _tail(self, writer: asyncio.StreamWriter) -> None:
        tails = self.agent.tails
        if len(tails.queues) >= MAX_TAILS:
            writer.write(json.dumps({"error": f"{MAX_TAILS} tails already"}).encode() + b"\n")
            return
        queue: asyncio.Queue[Reading] = asyncio.Queue(TAIL_QUEUE)
        tails.queues.add(queue)
        self._tailing.add(writer)
        try:
            while True:
                r = await queue.get()
                writer.write(json.dumps(reading_line(r), ensure_ascii=False).encode() + b"\n")
                await asyncio.wait_for(writer.drain(), DRAIN_TIMEOUT_S)
        finally:
            tails.queues.discard(queue)
            self._tailing.discard(writer)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._tailing):
                writer.close()
            await self._server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
