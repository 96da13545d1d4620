"""The collector's alert runner: its lifecycle, feeding the engine and passing its events on.

The collector only calls ``feed(points, now_ns)`` after each successful write
(and ``on_status`` for gateway status); the runner does everything else: a
clock tick loop, the notifiers' queues and retries (delivery.py), the
``alerts`` points handed back to the collector's writer (point_queue.py), the
state files (store.py) and the command spool of ``edge-collector alerts
ack|silence`` (commands.py). With a lease, only its holder evaluates and
notifies (leadership.py), and what it writes and notifies carries the lease's
fencing token; the counters reach the collector's health point (health.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from cityedge.uplink.seal import KeyRing
from cityedge.uplink.topics import DEFAULT_PREFIX
from collector.alerts.commands import apply_commands
from collector.alerts.config import LoadedAlerts
from collector.alerts.delivery import Delivery
from collector.alerts.engine import Engine
from collector.alerts.etcd_lease import EtcdLease
from collector.alerts.events import AlertEvent, Status
from collector.alerts.handover import Version
from collector.alerts.health import RunnerStats, engine_fields, health_fields
from collector.alerts.leadership import Leadership, make_lease
from collector.alerts.lease import Lease
from collector.alerts.mqtt_feed import BrokerConfig, MqttFeed
from collector.alerts.point_queue import PointQueue, WritePoints
from collector.alerts.points import alert_point
from collector.alerts.snapshot import dump_alerts, dump_stats_text
from collector.alerts.store import StateStore
from collector.alerts.write_ahead import WriteAhead
from collector.lineprotocol import Point
from collector.notifiers import NotifierContext

log = logging.getLogger(__name__)

# How soon after a lifecycle change the state file is rewritten.
SAVE_DELAY_S = 1.0


class AlertRunner:
    def __init__(self, loaded: LoadedAlerts, *, write_points: WritePoints | None = None,
                 mqtt: BrokerConfig | None = None, holder: str = "collector",
                 clock: Callable[[], int] = time.time_ns, topic_prefix: str = DEFAULT_PREFIX,
                 lease: Lease | None = None, keyring: KeyRing | None = None) -> None:
        self.loaded = loaded
        self.keyring = keyring  # lent to the notifiers: displays are sealed per gateway
        self.config = loaded.config
        self.clock = clock
        self.topic_prefix = mqtt.topic_prefix if mqtt is not None else topic_prefix
        self.limits = loaded.config.limits
        self.engine = Engine(loaded.rules, self.limits)
        self.store = StateStore(loaded.state_dir)
        self.stats = RunnerStats()
        self.points = PointQueue(write_points, self.stats)
        self._save_lock = asyncio.Lock()  # one save at a time, in order
        self.leadership = Leadership(
            lease if lease is not None else make_lease(self.config, self.store, holder),
            self.store, loaded.rules, self.stats, install=self._install, save=self.save,
            save_lock=self._save_lock, led=self._save_now)
        self.lease = self.leadership.lease
        c = self.config
        self.deliveries = [
            Delivery(name, notifier, route, queue_size=c.queue_size, max_attempts=c.max_attempts,
                     retry_min=c.retry_min, retry_max=c.retry_max,
                     on_give_up=self.points.dead_letter, fence=self.leadership.fence,
                     on_done=self._delivered)
            for name, route, notifier in loaded.notifiers]
        # With etcd, every transition is written ahead before a notifier sees it.
        self.write_ahead = (WriteAhead(self.lease, {d.name: d for d in self.deliveries},
                                       state=self._handover_state,
                                       dead_letter=self.points.dead_letter,
                                       rewrite=lambda e, done: self.points.put(
                                           [alert_point(e)], done))
                            if isinstance(self.lease, EtcdLease) else None)
        self.feed_source = (MqttFeed(mqtt, self, status=c.status, observe_uplinks=c.observe_uplinks,
                                     clock=clock) if mqtt is not None and (c.status or
                                                                          c.observe_uplinks)
                            else None)
        self._tasks: list[asyncio.Task[None]] = []
        self._dirty_since: float | None = None
        self._last_stats_save = time.monotonic()
        self.started = False

    @property
    def leader(self) -> bool:
        """We evaluate and notify (as of the last check: every feed, status and tick); not
        yet while a takeover restores state."""
        return self.leadership.leading

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        await self.leadership.start()
        context = NotifierContext(gateways=self._gateways, topic_prefix=self.topic_prefix,
                                  log=log, keyring=self.keyring)
        for d in self.deliveries:
            await d.notifier.start(context)
            self._tasks.append(asyncio.create_task(d.run(), name=f"notify-{d.name}"))
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="alerts-tick"))
        if self.write_ahead is not None:
            self._tasks.append(asyncio.create_task(self.write_ahead.run(),
                                                   name="alerts-write-ahead"))
        self._tasks.append(asyncio.create_task(self.points.run(), name="alerts-points"))
        if self.feed_source is not None:
            await self.feed_source.start()
            self._tasks.append(asyncio.create_task(self.feed_source.run(), name="alerts-mqtt"))
        self.started = True

    def _gateways(self, match: Mapping[str, str]) -> list[str]:
        return self.engine.gateways(match)  # the engine is replaced on a lease takeover

    def _install(self, engine: Engine) -> None:
        engine.set_limits(self.limits)
        self.engine = engine
        log.info("alerts: evaluating %d rules, %d open alerts", len(self.loaded.rules),
                 len(self.engine.open))

    def _save_now(self) -> None:
        """We lead now: save at the next tick, deliver what the last leader left pending."""
        self._dirty_since = 0.0  # the tick loop saves at its next tick
        if self.write_ahead is not None:
            self.write_ahead.taken_over()

    def _delivered(self, notifier: str, event: AlertEvent) -> None:
        if self.write_ahead is not None:
            self.write_ahead.settle(notifier, event)

    def _handover_state(self) -> tuple[dict[str, Any], Version] | None:
        """The open alerts to write ahead with the outbox, and their version (None: we
        do not lead with a term)."""
        version = self.leadership.handover_version()
        if version is None:
            return None
        alerts = dump_alerts(self.engine)
        alerts["handover"] = version.as_dict()
        return alerts, version

    async def close(self, timeout: float = 5.0) -> None:
        """Stop ticking, save state, release the lease, give queued notifications up to
        timeout, close plugins. A second call does nothing."""
        if self.leadership.closing:
            return
        if self.feed_source is not None:
            await self.feed_source.close()
        for t in self._tasks:
            if t.get_name() in ("alerts-tick", "alerts-mqtt"):
                t.cancel()
        if await self.leadership.stop():
            await self.save()
        # Drained before the lease is released: what we queued carries our fencing
        # token, which is stale once a standby takes over.
        drained = await asyncio.gather(*(d.drain(timeout) for d in self.deliveries))
        if not all(drained):
            log.warning("alerts: notifications still queued at shutdown: %s",
                        {d.name: len(d.queue) for d in self.deliveries if d.queue})
        if self.write_ahead is not None:
            await self.points.flush()  # its points settle their entries in the outbox too
        if self.write_ahead is not None and not await self.write_ahead.flush(timeout):
            log.warning("alerts: delivered notifications not yet marked in etcd at shutdown; "
                        "the next leader sends them again (same event ids)")
        await self.leadership.release()
        await self.points.flush()
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
        if not self.leadership.check():
            self.stats.standby_points += len(points)
            return
        self.engine.advance(now_ns)  # for lateness; the tick loop does the sweeps
        self._dispatch(self.engine.readings(points))

    def on_status(self, gateway: str, state: str, now_ns: int) -> None:
        if self.leadership.check():
            self._dispatch(self.engine.tick(now_ns) +
                           self.engine.status(Status(gateway, state == "online", now_ns)))

    def tick(self, now_ns: int) -> None:
        """One clock tick (the loop calls this; tests may too)."""
        self.leadership.poll()
        if not self.leadership.check():
            return
        taken = apply_commands(self.store, self.engine, now_ns, self._dispatch)
        if taken:
            self.stats.commands += taken
            self._dirty_since = 0.0  # save at once, so `alerts list` shows the result
        self._dispatch(self.engine.tick(now_ns))

    # -- internals --------------------------------------------------------------------
    def _dispatch(self, events: list[AlertEvent]) -> None:
        token = self.leadership.token
        for made in events:
            event = replace(made, fencing_token=token) if token else made
            self.stats.events += 1
            self._put_point(event)
            self._dirty_since = self._dirty_since or time.monotonic()
            if not event.notify or event.silenced:
                continue
            for d in self.deliveries:
                if not d.route.accepts(event):
                    continue
                if self.write_ahead is not None:
                    self.write_ahead.offer(d, event)  # to d once it is in etcd
                else:
                    d.offer(event)

    def _put_point(self, event: AlertEvent) -> None:
        """Its ``alerts`` point; with etcd, one that is notified is pending in the outbox
        until the writer took it (a successor writes it again: the same time and tags)."""
        wa = self.write_ahead
        if (wa is not None and event.notify and not event.silenced
                and any(d.route.accepts(event) for d in self.deliveries)
                and wa.offer_point(event)):
            self.points.put([alert_point(event)], lambda: wa.point_written(event))
        else:
            self.points.put([alert_point(event)])

    async def save(self, *, with_stats: bool = True) -> None:
        """Write the lifecycle file, and the bulk statistics file if with_stats.

        The statistics are dumped in slices with the event loop running in
        between (tens of megabytes for a city); the files are written in a thread.
        One save runs at a time, so files and hand-overs are written in save order.
        """
        async with self._save_lock:
            alerts = dump_alerts(self.engine)
            leading = self.leadership.leading  # a step-down save is kept, never handed over
            self._dirty_since = None
            version = self.leadership.next_version()
            if version is not None:
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
            if version is not None and leading and self.leadership.check():
                if self.write_ahead is not None:
                    self.write_ahead.state_due()  # written in order with the outbox
                else:
                    await self.leadership.hand_over(alerts, version)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval)
            try:
                self.tick(self.clock())
                now = time.monotonic()
                stats_due = now - self._last_stats_save >= self.config.save_interval
                due = self._dirty_since is not None and now - self._dirty_since >= SAVE_DELAY_S
                if self.leadership.stepdown_save:
                    await self.save(with_stats=True)
                elif self.leader and (due or stats_due):
                    await self.save(with_stats=stats_due)
            except Exception:  # one bad tick must not stop alerting
                log.exception("alerts: tick failed")

    def health_fields(self) -> dict[str, int]:
        """Counters for the collector's health point (cityedge_collector)."""
        fields = health_fields(self.stats, len(self.engine.open), self.leader, self.deliveries,
                               self.lease)
        if self.write_ahead is not None:
            fields |= self.write_ahead.health_fields()
        return fields | engine_fields(self.engine)

    def describe(self) -> str:
        return json.dumps({"rules": len(self.loaded.rules), "notifiers":
                           [d.name for d in self.deliveries], "leader": self.leader,
                           "lease": self.leadership.describe()})
