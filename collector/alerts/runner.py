"""The collector's alert runner: feeds the engine, keeps its state, delivers and records events.

The collector only calls ``feed(points, now_ns)`` after each successful write
(and ``on_status`` for gateway status); the runner does everything else: a
clock tick loop, the notifiers' queues and retries (delivery.py), the
``alerts`` points handed back to the collector's writer, the state files
(store.py) and the command spool of ``edge-collector alerts ack|silence``.
With a lease (``lease: file`` or ``lease: mqtt``, lease.py) only the holder
evaluates and notifies; the others stand by and take over when it goes. The
lease is checked before every evaluation, so a holder that lost it (a
partition, say) stops at once; on taking over, the runner restores the newest
state: its own files, or one handed over through the broker (takeover.py, off
the event loop). It evaluates nothing until that state is in: readings fed
meanwhile are counted as standby points, as before the takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cityedge.redact import redact_text
from cityedge.uplink.seal import KeyRing
from cityedge.uplink.topics import DEFAULT_PREFIX
from collector.alerts.config import LoadedAlerts
from collector.alerts.delivery import Delivery
from collector.alerts.engine import Engine
from collector.alerts.errors import UsageError
from collector.alerts.events import Ack, AlertEvent, Silence, Status
from collector.alerts.handover import HandoverError, Version, encode_state
from collector.alerts.lease import FileLease, Lease
from collector.alerts.mqtt_feed import BrokerConfig, MqttFeed
from collector.alerts.mqtt_lease import MqttLease
from collector.alerts.points import alert_point
from collector.alerts.snapshot import dump_alerts, dump_stats_text
from collector.alerts.store import StateStore
from collector.alerts.takeover import (
    local_state,
    local_version,
    newest_state,
    restored_or_empty,
)
from collector.lineprotocol import Point
from collector.notifiers import NotifierContext
from collector.notifiers.webhook.payload import body

log = logging.getLogger(__name__)

WritePoints = Callable[[Sequence[Point]], Awaitable[None]]
DEADLETTER_MEASUREMENT = "cityedge_deadletter"
# Alert points waiting for the writer; past this the oldest are dropped, counted.
MAX_PENDING_POINTS = 100_000
# How soon after a lifecycle change the state file is rewritten.
SAVE_DELAY_S = 1.0


@dataclass
class RunnerStats:
    events: int = 0
    notified: int = 0
    standby_points: int = 0
    points_dropped: int = 0
    points_written: int = 0
    write_errors: int = 0
    commands: int = 0
    saves: int = 0
    takeovers: int = 0
    stepdowns: int = 0


class AlertRunner:
    def __init__(self, loaded: LoadedAlerts, *, write_points: WritePoints | None = None,
                 mqtt: BrokerConfig | None = None, holder: str = "collector",
                 clock: Callable[[], int] = time.time_ns, topic_prefix: str = DEFAULT_PREFIX,
                 lease: Lease | None = None, keyring: KeyRing | None = None) -> None:
        self.loaded = loaded
        self.keyring = keyring  # lent to the notifiers: displays are sealed per gateway
        self.config = loaded.config
        self.write_points = write_points
        self.clock = clock
        self.topic_prefix = mqtt.topic_prefix if mqtt is not None else topic_prefix
        self.engine = Engine(loaded.rules)
        self.store = StateStore(loaded.state_dir)
        self.lease = lease if lease is not None else self._make_lease(holder, mqtt)
        if self.lease is not None:
            self.lease.on_change = self._lease_changed
        c = self.config
        self.deliveries = [
            Delivery(name, notifier, route, queue_size=c.queue_size, max_attempts=c.max_attempts,
                     retry_min=c.retry_min, retry_max=c.retry_max, on_give_up=self._dead_letter)
            for name, route, notifier in loaded.notifiers]
        self.feed_source = (MqttFeed(mqtt, self, status=c.status, observe_uplinks=c.observe_uplinks,
                                     clock=clock) if mqtt is not None and (c.status or
                                                                          c.observe_uplinks)
                            else None)
        self.stats = RunnerStats()
        self._points: deque[Point] = deque()
        self._points_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._dirty_since: float | None = None
        self._last_stats_save = time.monotonic()
        self._leading = self.lease is None
        self._closing = False
        self._saves = 0  # this process's saves: the n of a handed-over state's version
        # (rank, holder) of the lease term whose engine we hold, taken when we took over:
        # every save of that engine, a step-down's and the last one included, is
        # versioned with it, never with a later candidacy's rank.
        self._term: tuple[int, str] | None = None
        self._stepdown_save = False
        self._restoring: asyncio.Task[None] | None = None  # a takeover restoring state
        self._save_lock = asyncio.Lock()  # one save at a time, in order
        self.started = False

    def _make_lease(self, holder: str, mqtt: BrokerConfig | None) -> Lease | None:
        kind = self.config.lease_kind
        if kind == "file":
            return FileLease(self.store.dir / "alerts.lease", holder)
        if kind == "mqtt":
            if mqtt is None:
                raise UsageError("alerts: lease: mqtt needs the collector's mqtt section "
                                 "(the collectors' broker carries the lease)")
            return MqttLease(mqtt, holder)
        return None

    @property
    def leader(self) -> bool:
        """We evaluate and notify (as of the last check: every feed, status and tick); not
        yet while a takeover restores state."""
        return self._leading

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        if self.lease is None:
            self._restore(*local_state(self.store))
        else:
            local = local_version(self.store)
            if local is not None:
                self.lease.note_rank(local.rank)  # stand above our own files, whatever the clock
            await self.lease.start()
            self._check_lease()
            if self._restoring is not None:
                await asyncio.wait([self._restoring])  # lead from the start if we can
            if not self._leading:
                log.info("alerts: standing by; %s", self.lease.describe())
        context = NotifierContext(gateways=self._gateways, topic_prefix=self.topic_prefix,
                                  log=log, keyring=self.keyring)
        for d in self.deliveries:
            await d.notifier.start(context)
            self._tasks.append(asyncio.create_task(d.run(), name=f"notify-{d.name}"))
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="alerts-tick"))
        self._tasks.append(asyncio.create_task(self._write_loop(), name="alerts-points"))
        if self.feed_source is not None:
            await self.feed_source.start()
            self._tasks.append(asyncio.create_task(self.feed_source.run(), name="alerts-mqtt"))
        self.started = True

    def _gateways(self, match: Mapping[str, str]) -> list[str]:
        return self.engine.gateways(match)  # the engine is replaced on a lease takeover

    def _restore(self, alerts: dict[str, Any] | None, stats: dict[str, Any] | None) -> None:
        self._install(restored_or_empty(self.loaded.rules, alerts, stats))

    def _install(self, engine: Engine) -> None:
        self.engine = engine
        log.info("alerts: evaluating %d rules, %d open alerts", len(self.loaded.rules),
                 len(self.engine.open))

    def _check_lease(self) -> bool:
        """Do we evaluate now? Takes over (restoring state) or steps down on a change.

        While a takeover restores state we hold the lease but do not evaluate yet:
        what is fed meanwhile is counted as standby points, as before the takeover.
        """
        if self.lease is None or self._closing:
            return self._leading
        held = self.lease.held
        if held and not self._leading and self._restoring is None:
            self._take_over()
        elif not held and self._restoring is not None:
            self._restoring.cancel()
            self._restoring = None
            log.warning("alerts: lost the lease while restoring state; standing by (%s)",
                        self.lease.describe())
        elif not held and self._leading:
            self._leading = False
            self.stats.stepdowns += 1
            self._stepdown_save = True  # our latest, for our files (not handed over)
            log.warning("alerts: lost the lease; standing by (%s)", self.lease.describe())
        return held and self._leading

    def _lease_changed(self) -> None:
        self._check_lease()  # take over (or step down) now, not at the next reading or tick

    def _take_over(self) -> None:
        """Restore the newest state, then lead: at once from the shared files with a lease
        that hands nothing over (``file``, as at start); off the event loop otherwise."""
        assert self.lease is not None
        self.stats.takeovers += 1
        term = self.lease.term
        if term is None:
            log.warning("alerts: took over the lease; restoring state from %s", self.store.dir)
            self._restore(*local_state(self.store))
            self._lead(None)
        else:
            self._restoring = asyncio.create_task(self._restore_newest(term),
                                                  name="alerts-takeover")

    async def _restore_newest(self, term: tuple[int, str]) -> None:
        assert self.lease is not None
        try:
            if self._stepdown_save:  # the last term's latest first, under that term's version
                await self.save()
            async with self._save_lock:  # no save of ours is half-written while we read
                pass
            engine, source = await newest_state(self.loaded.rules, self.store,
                                                self.lease.handed_over())
        except Exception:  # a bug: stand by, and try again at the next check
            log.exception("alerts: taking over failed")
            self._restoring = None
            return
        self._restoring = None
        if self._closing or not self.lease.held:
            log.warning("alerts: lost the lease while restoring state; standing by")
            return
        log.warning("alerts: took over the lease; restoring state from %s", source)
        self._install(engine)
        self._lead(term)

    def _lead(self, term: tuple[int, str] | None) -> None:
        self._term = term
        self._leading = True
        self._dirty_since = 0.0  # save (and hand over) under our own version at once

    async def close(self, timeout: float = 5.0) -> None:
        """Stop ticking, save state, release the lease, give queued notifications up to
        timeout, close plugins. A second call does nothing."""
        if self._closing:
            return
        if self.feed_source is not None:
            await self.feed_source.close()
        for t in self._tasks:
            if t.get_name() in ("alerts-tick", "alerts-mqtt"):
                t.cancel()
        if self._leading:
            self._check_lease()  # the last check: step down if we lost it
        self._closing = True  # from here on, the lease is neither checked nor taken
        if self._restoring is not None:  # nothing evaluated yet: nothing new to save
            self._restoring.cancel()
            await asyncio.wait([self._restoring])
            self._restoring = None
        if self._leading or self._stepdown_save:
            await self.save()
        if self.lease is not None:
            # Released before the queues drain: a standby takes over at once, and what
            # we queued while we held the lease is still ours to deliver.
            self._leading = False
            await self.lease.close()
        drained = await asyncio.gather(*(d.drain(timeout) for d in self.deliveries))
        if not all(drained):
            log.warning("alerts: notifications still queued at shutdown: %s",
                        {d.name: len(d.queue) for d in self.deliveries if d.queue})
        await self._flush_points()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for d in self.deliveries:
            with contextlib.suppress(Exception):
                await d.notifier.close()

    # -- inputs from the collector ------------------------------------------------
    def feed(self, points: Sequence[Point], now_ns: int) -> None:
        """Readings InfluxDB has accepted; cheap and synchronous."""
        if not self._check_lease():
            self.stats.standby_points += len(points)
            return
        self.engine.advance(now_ns)  # for lateness; the tick loop does the sweeps
        self._dispatch(self.engine.readings(points))

    def on_status(self, gateway: str, state: str, now_ns: int) -> None:
        if self._check_lease():
            self._dispatch(self.engine.tick(now_ns) +
                           self.engine.status(Status(gateway, state == "online", now_ns)))

    def tick(self, now_ns: int) -> None:
        """One clock tick (the loop calls this; tests may too)."""
        if self.lease is not None and not self._closing:
            self.lease.poll()
        if not self._check_lease():
            return
        self._apply_commands(now_ns)
        self._dispatch(self.engine.tick(now_ns))

    # -- internals --------------------------------------------------------------------
    def _dispatch(self, events: list[AlertEvent]) -> None:
        for event in events:
            self.stats.events += 1
            self._queue_points([alert_point(event)])
            self._dirty_since = self._dirty_since or time.monotonic()
            if not event.notify or event.silenced:
                continue
            self.stats.notified += 1
            for d in self.deliveries:
                if d.route.accepts(event):
                    d.offer(event)

    def _queue_points(self, points: list[Point]) -> None:
        if self.write_points is None:
            return
        self._points.extend(points)
        while len(self._points) > MAX_PENDING_POINTS:
            self._points.popleft()
            self.stats.points_dropped += 1
        self._points_ready.set()

    def _dead_letter(self, notifier: str, event: AlertEvent, reason: str, detail: str) -> None:
        self._queue_points([Point(DEADLETTER_MEASUREMENT, {"reason": reason, "notifier": notifier},
                                  {"detail": redact_text(detail)[:2000],
                                   "raw": body(event).decode(),
                                   "alert_id": event.alert_id}, event.time_ns)])

    def _apply_commands(self, now_ns: int) -> None:
        for path, cmd in self.store.take_commands():
            self.stats.commands += 1
            try:
                self._command(cmd, now_ns)
            except (UsageError, KeyError, ValueError, TypeError) as exc:
                log.warning("alerts: command %s ignored: %s", path.name, exc)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._dirty_since = 0.0  # save at once, so `alerts list` shows the result

    def _command(self, cmd: dict[str, Any] | None, now_ns: int) -> None:
        if cmd is None:
            raise UsageError("not valid JSON")
        kind = cmd.get("cmd")
        if kind == "ack":
            self._dispatch(self.engine.acknowledge(
                Ack(cmd["alert_id"], now_ns, cmd.get("by", ""), cmd.get("comment", ""))))
        elif kind == "silence":
            self.engine.add_silence(Silence(cmd["id"], cmd["rule"], dict(cmd["match"]),
                                            int(cmd["until_ns"]), int(cmd["created_ns"]),
                                            cmd.get("by", ""), cmd.get("comment", "")))
        elif kind == "unsilence":
            if not self.engine.remove_silence(cmd["id"]):
                raise UsageError(f"no silence {cmd['id']}")
        else:
            raise UsageError(f"unknown command {kind!r}")

    async def save(self, *, with_stats: bool = True) -> None:
        """Write the lifecycle file, and the bulk statistics file if with_stats.

        The statistics are dumped in slices with the event loop running in
        between (tens of megabytes for a city); the files are written in a thread.
        One save runs at a time, so files and hand-overs are written in save order.
        """
        async with self._save_lock:
            alerts = dump_alerts(self.engine)
            leading = self._leading  # a step-down save is kept locally, never handed over
            self._dirty_since = None
            self._stepdown_save = False
            term = self._term
            version: Version | None = None
            if term is not None:
                self._saves += 1
                version = Version(term[0], term[1], self._saves)
                alerts["handover"] = version.as_dict()
            stats: str | None = None
            if with_stats:
                steps = dump_stats_text(self.engine)
                while stats is None:
                    try:
                        next(steps)
                    except StopIteration as done:
                        stats = done.value
                    await asyncio.sleep(0)
                self._last_stats_save = time.monotonic()
            await asyncio.to_thread(self.store.save, alerts, stats)
            self.stats.saves += 1
            if version is not None and leading and self._check_lease():
                await self._hand_over(alerts, version)

    async def _hand_over(self, alerts: dict[str, Any], version: Version) -> None:
        assert self.lease is not None
        try:
            payload = await asyncio.to_thread(encode_state, alerts, version, time.time_ns())
        except HandoverError as exc:
            log.warning("alerts: %s; not handed over (a takeover restores an older one)", exc)
            return
        self.lease.publish_state(payload, version)  # only if we still hold it

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval)
            try:
                self.tick(self.clock())
                now = time.monotonic()
                stats_due = now - self._last_stats_save >= self.config.save_interval
                due = self._dirty_since is not None and now - self._dirty_since >= SAVE_DELAY_S
                if self._stepdown_save:
                    await self.save(with_stats=True)
                elif self.leader and (due or stats_due):
                    await self.save(with_stats=stats_due)
            except Exception:  # one bad tick must not stop alerting
                log.exception("alerts: tick failed")

    async def _write_loop(self) -> None:
        while True:
            await self._points_ready.wait()
            await asyncio.sleep(0.2)  # gather a few events into one write
            await self._flush_points()

    async def _flush_points(self) -> None:
        self._points_ready.clear()
        if not self._points or self.write_points is None:
            return
        batch = list(self._points)
        try:
            await self.write_points(batch)
        except Exception as exc:  # kept and retried with the next batch
            self.stats.write_errors += 1
            log.warning("alerts: writing %d alert points failed: %s", len(batch), exc)
            self._points_ready.set()
            await asyncio.sleep(1.0)
            return
        for _ in batch:
            self._points.popleft()
        self.stats.points_written += len(batch)

    def health_fields(self) -> dict[str, int]:
        """Counters for the collector's health point (cityedge_collector)."""
        out = {"alert_events": self.stats.events, "alerts_open": len(self.engine.open),
               "alert_points_dropped": self.stats.points_dropped,
               "alerts_leader": int(self.leader), "alert_takeovers": self.stats.takeovers}
        for d in self.deliveries:
            out |= d.health_fields()
        return out

    def describe(self) -> str:
        return json.dumps({"rules": len(self.loaded.rules), "notifiers":
                           [d.name for d in self.deliveries], "leader": self.leader,
                           "lease": self.lease.describe() if self.lease else "none"})
