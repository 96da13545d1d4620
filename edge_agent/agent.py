"""The edge agent's lifecycle: read sensors into the outbox, drain the outbox over the uplink.

The outbox lives on one worker thread (SQLite and a slow SD card must not
stall the event loop); every other piece runs on the event loop. Order on
SIGTERM: stop reading, store and fsync what was read, wait for in-flight acks
up to the shutdown timeout, close. A second signal exits at once; nothing is
lost either way, because unacked readings stay in the outbox.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
import sqlite3
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cityedge import shipped
from cityedge.lifecycle import ExitSignals
from cityedge.logthrottle import LogThrottle
from cityedge.sdnotify import Notifier
from cityedge.uplink import Ack, Batch, Reading, SeqRanges, encode_batch
from cityedge.uplink.payload import MAX_PAYLOAD_BYTES
from edge_agent.anchoring import TimeAnchoring
from edge_agent.clock import Clock
from edge_agent.config import AGENT_SENSOR, AgentConfig, resolve
from edge_agent.display_file import DisplayOutput
from edge_agent.displays import DisplayBoard
from edge_agent.health import Health, LinkTiming
from edge_agent.outbox import DeliveryWindow, Outbox, Resend, SendNew
from edge_agent.outbox.space import OutboxError, StoreFailed
from edge_agent.outbox.store import DropPolicy
from edge_agent.reload import Reloader, make_transport, seal_key, sensor_profiles
from edge_agent.serial_port import SensorPort
from edge_agent.status import Tails
from edge_agent.transports import Transport
from edge_agent.watch import Watch

log = logging.getLogger(__name__)

SHIPPED_PROFILES = shipped.profiles_dir()


def _metrics(config: AgentConfig) -> Any:
    """The Prometheus exposition, if ``metrics:`` is set (prometheus-client only then)."""
    if config.metrics is None:
        return None
    from edge_agent.metrics import AgentMetrics  # noqa: PLC0415

    return AgentMetrics(config.metrics, config.gateway.id)


class Agent:
    def __init__(self, config: AgentConfig, base_dir: Path, transport: Transport | None = None,
                 config_path: Path | None = None):
        self.config, self.base_dir = config, base_dir
        self.clock = Clock(config.clock_synced)
        self.profiles, self.profile_errors = sensor_profiles(
            config, base_dir, SHIPPED_PROFILES)  # broken files refused only where used
        for error in self.profile_errors:
            log.warning("profile error: %s", error)
        self.outbox_path = resolve(base_dir, config.outbox.path)
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self.outbox: Outbox | None = None
        u = config.uplink
        self.window = DeliveryWindow(  # replaced once the outbox is open (serve)
            max_in_flight=u.max_in_flight, ack_timeout=u.ack_timeout, batch_size=u.batch_size
        )
        # Acks and displays must be sealed with it (cityedge/uplink/seal.py); None: insecure.
        self.seal_key = seal_key(config)
        if self.seal_key is None:
            log.warning("gateway.secret is not set: acks and displays are taken unsealed,"
                        " from anyone who can publish to this gateway's topics")
        self.transport: Transport = transport or make_transport(config, base_dir, self.seal_key)
        self.transport_changed = asyncio.Event()  # the ack loop listens to the new one
        self.anchoring = TimeAnchoring(self.clock, self.io_call,
                                       hold_max_s=config.clock_hold_max)
        self.displays = DisplayBoard(config.gateway.id, key=self.seal_key,
                                     has_display=config.display.output != "none")
        self.display = DisplayOutput(self.displays, resolve(base_dir, config.display.path)
                                     if config.display.output == "file" else None,
                                     now=self.anchoring.trusted_now_ns)
        self.transport.downlink = self.display.on_message
        self.ports = [
            SensorPort(s, self.profiles[s.profile], self.clock, self._store) for s in config.sensors
        ]
        self.sensors_meta: dict[str, dict[str, str]] = {
            s.id: {"model": self.profiles[s.profile].model, **s.tags} for s in config.sensors
        }
        self.sensors_meta[AGENT_SENSOR] = {"model": "cityedge-agent"}
        self.notifier = Notifier()  # systemd's READY=1, WATCHDOG=1, STATUS= (Type=notify)
        self.reloader = Reloader(self, config_path) if config_path is not None else None
        self.started = asyncio.Event()  # the outbox is open and the ports started
        self.signals = ExitSignals(
            stopping="storing what was read, waiting for acks, then exiting",
            forced="unacked readings stay in the outbox",
            reload=self.reloader.request if self.reloader is not None else None)
        self.should_exit = self.signals.should_exit
        self._wake_sender = asyncio.Event()
        # Batch ids only correlate acks within a run; starting at random makes an
        # ack left over from an earlier run unlikely to name a live batch at all.
        self._batch_id = secrets.randbelow(1 << 30)
        self._store_tasks: set[asyncio.Future[Any]] = set()
        self.stored = 0
        self.acked = 0
        self.tails = Tails()  # the last reading per sensor, and edge-agent tail's readers
        self.last_ack_at: float | None = None
        self.refused_sends = 0
        self.store_failures: Counter[str] = Counter()
        self.failing_run = 0  # readings not stored since storing last worked (watch.py)
        self._sync_failing = False
        self.acks_other_outbox = 0  # acks naming another gateway or epoch
        self._log = LogThrottle(log, level=logging.ERROR)  # failures that repeat
        self.split_batches = 0  # batches sent in part: all of them over MAX_PAYLOAD_BYTES
        self.delete_failures = 0  # acked readings the outbox could not delete (resent)
        self.started_at = time.monotonic()
        self.health = Health(self)
        self.watch = Watch(self)
        self.link_timing = LinkTiming()
        self.metrics = _metrics(config)

    async def io_call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    # -- reading side --------------------------------------------------------
    def _store(self, readings: list[Reading]) -> None:
        """Append at once: a reading read from the port is only safe once committed."""
        assert self.outbox is not None
        if not self.anchoring.synced_now:
            readings = [dataclasses.replace(r, synced=False) for r in readings]
        fut = asyncio.get_running_loop().run_in_executor(self._io, self.outbox.append, readings)
        self._store_tasks.add(fut)

        def done(f: asyncio.Future[Any]) -> None:
            self._store_tasks.discard(f)
            exc = f.exception()
            if exc is None:
                self.stored += len(readings)
                self.tails.stored(readings)
                if self.failing_run:
                    log.warning("outbox: storing again after %d readings not stored",
                                self.failing_run)
                    self.failing_run = 0
                if self.outbox is not None and self.outbox.fsync_every_append:
                    self._wake_sender.set()
                return
            # Read from the port but not stored (disk full, SD card failing): lost, so
            # counted per sensor, shown in the health readings and recorded as a gap
            # (outbox_drops, reason not_stored) once storage works again; one log line
            # when it starts and one when it ends, never one per reading.
            for r in readings:
                self.store_failures[r.sensor] += 1
            if not self.failing_run:
                self._log_store_failure(exc)
            self.failing_run += len(readings)

        fut.add_done_callback(done)

    def _log_store_failure(self, exc: BaseException) -> None:
        if isinstance(exc, StoreFailed) and exc.disk_full:
            log.error("outbox: disk full at %s, %.1f MB free; readings are counted per sensor"
                      " and not stored until space is freed", exc.path, exc.free_mb)
        elif isinstance(exc, StoreFailed):
            log.error("outbox: cannot store at %s (%s); readings are counted per sensor and"
                      " not stored until it works again", exc.path, exc.cause)
        else:  # a bug, not the disk: say where
            log.error("outbox: append failed; readings are counted per sensor and not stored",
                      exc_info=exc)

    async def _sync_loop(self) -> None:
        assert self.outbox is not None
        window = self.config.outbox.commit_window or 1.0
        while True:
            await asyncio.sleep(window)
            before = self.outbox.durable_seq
            try:
                # A checkpoint that cannot complete (full disk) leaves durable_seq
                # where it was; the next window tries again.
                await self.io_call(self.outbox.sync)
                await self.anchoring.update()
            except (OutboxError, sqlite3.Error, OSError) as exc:
                if not self._sync_failing:
                    log.error("outbox: sync failed, trying again every %.1f s: %s", window, exc)
                self._sync_failing = True
                continue
            if self._sync_failing:
                log.warning("outbox: sync works again")
                self._sync_failing = False
            if self.sendable_seq() > before:
                self._wake_sender.set()

    def sendable_seq(self) -> int:
        """Durable, and timed: readings whose time is not decided yet wait (anchoring.py)."""
        assert self.outbox is not None
        return self.anchoring.sendable_seq(self.outbox.durable_seq)

    # -- sending side ---------------------------------------------------------
    def _batch(self, readings: list[Reading]) -> Batch:
        assert self.outbox is not None
        self._batch_id += 1
        site = self.config.gateway.site
        wall, mono = time.time_ns(), time.monotonic_ns()
        used = {r.sensor for r in readings}
        return Batch(
            gateway=self.config.gateway.id,
            epoch=self.outbox.epoch,
            batch_id=self._batch_id,
            sent_ns=wall,
            clock_synced=self.clock.synced(),
            boot=self.clock.boot,
            mono_ns=mono,
            site={"district": site.district, "site": site.site, "kind": site.kind},
            sensors={k: v for k, v in self.sensors_meta.items() if k in used},
            readings=tuple(readings),
            boots=self.anchoring.boots({r.boot for r in readings if not r.synced}),
        )

    def _maybe_probe(self) -> None:
        """Unanchored and unsynchronised: ask the collector for its clock (an empty batch)."""
        if self.anchoring.probe_due(self.transport.ready()):
            probe = self._batch([])
            self.anchoring.probe_sent(probe.batch_id)
            self.transport.send(encode_batch(probe))

    async def _send_loop(self) -> None:
        assert self.outbox is not None
        while True:
            self._maybe_probe()
            self.window.expire(time.monotonic())
            plan = self.window.plan(self.sendable_seq()) if self.transport.ready() else None
            if plan is None:
                deadline = self.window.next_deadline()
                timeout = 1.0 if deadline is None else max(0.01, deadline - time.monotonic())
                self._wake_sender.clear()
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                # cancel that races the event, and shutdown would hang.
                try:
                    async with asyncio.timeout(min(timeout, 1.0)):
                        await self._wake_sender.wait()
                except TimeoutError:
                    pass
                continue
            if isinstance(plan, SendNew):
                rows = await self.io_call(self.outbox.fetch_after, plan.after, plan.upto,
                                           plan.limit)
                if not rows:
                    self.window.advance(plan, plan.upto)
                    continue
            else:
                assert isinstance(plan, Resend)
                rows = await self.io_call(self.outbox.fetch_seqs, plan.seqs, plan.limit)
                if not rows:
                    continue
            batch, payload = self._fitting_batch(rows)
            if len(batch.readings) < len(rows):
                self.split_batches += 1
                if isinstance(plan, Resend):  # the rest is due again; a SendNew reads on
                    self.window.retry(SeqRanges.of(r.seq for r in rows[len(batch.readings):]))
            if not self.transport.send(payload):
                self.refused_sends += 1  # not even queued; the ack timeout brings it back
            self.window.sent(batch.batch_id, batch.all_seqs(), time.monotonic(), plan)
            self.link_timing.sent(batch.batch_id, time.monotonic_ns())

    def _fitting_batch(self, rows: list[Reading]) -> tuple[Batch, bytes]:
        """The batch of the first rows whose payload the collector takes (MAX_PAYLOAD_BYTES):
        halved until it fits, so a batch_size of large readings is never refused for good."""
        batch = self._batch(rows)
        payload = encode_batch(batch)
        while len(payload) > MAX_PAYLOAD_BYTES and len(batch.readings) > 1:
            batch = self._batch(list(batch.readings[:len(batch.readings) // 2]))
            payload = encode_batch(batch)
        return batch, payload

    async def _ack_loop(self) -> None:
        """Apply each ack the transport verified (sealed, when a key is set): it deletes only
        the seqs the delivery window confirms (outbox/window.py), and may answer a probe."""
        assert self.outbox is not None
        while True:
            ack = await self._next_ack()
            if ack is None:
                continue  # a reload replaced the transport: listen to the new one
            self.last_ack_at = time.time()
            if ack.epoch != self.outbox.epoch or ack.gateway != self.config.gateway.id:
                self.acks_other_outbox += 1
                log.info("ack for another outbox (%s/%s) ignored", ack.gateway, ack.epoch)
                continue
            self.link_timing.acked(ack.batch_id, time.monotonic_ns(), time.time_ns(), ack.time_ns)
            probe_sent = self.anchoring.probes.get(ack.batch_id)
            in_flight = probe_sent is not None
            if not in_flight:  # a probe hands out no seqs; any other ack goes to the window
                result = self.window.acked(ack.batch_id, ack.seqs, time.monotonic())
                in_flight = result.in_flight
                if result.confirmed:
                    await self._delete(result.confirmed)
            if ack.time_ns is not None:
                try:
                    await self.anchoring.answer(ack, in_flight, probe_sent)
                except (sqlite3.Error, OSError) as exc:  # reading the hold back failed
                    log.error("cannot apply the time answer: %s", exc)
            self._wake_sender.set()

    async def _next_ack(self) -> Ack | None:
        """The transport's next ack, or None when a reload replaced the transport."""
        get = asyncio.ensure_future(self.transport.next_ack())
        swapped = asyncio.ensure_future(self.transport_changed.wait())
        try:
            await asyncio.wait((get, swapped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (get, swapped):
                f.cancel()  # a queue's get gives up its place without taking an ack
        if get.done() and not get.cancelled():
            return get.result()
        self.transport_changed.clear()
        return None

    def status_line(self) -> str:
        """systemd's STATUS= line."""
        up = "uplink up" if self.transport.ready() else "uplink down"
        return f"{len(self.ports)} sensors; {up}; {self.stored} stored, {self.acked} acked"

    async def _delete(self, seqs: SeqRanges) -> None:
        """Delete acked readings; if the outbox cannot (a full disk, a failing card), they
        go out again and a later ack deletes them: the ack loop never stops on it."""
        assert self.outbox is not None
        try:
            self.acked += await self.io_call(self.outbox.delete, seqs)
        except (sqlite3.Error, OSError) as exc:
            self.delete_failures += 1
            self.window.retry(seqs)
            self._log.note("delete", f"outbox delete failed ({self.delete_failures} so far);"
                           f" the readings are resent: {exc}", time.monotonic())

    # -- health ----------------------------------------------------------------
    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval)
            await self.io_call(self.outbox.flush_gaps) if self.outbox else None
            await self.display.tick()
            readings = [await self.health.gateway_reading(), *self.health.sensor_readings()]
            self._store(readings)
            if self.metrics is not None:
                self.metrics.update(readings)

    # -- lifecycle -------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        self.signals.install()

    async def serve(self) -> None:
        o = self.config.outbox
        self.outbox = await self.io_call(lambda: Outbox(
            self.outbox_path,
            fsync_every_append=o.commit_window == 0,
            max_bytes=int(o.max_size_mb * 1024 * 1024),
            drop_policy=DropPolicy(o.drop_policy, o.priorities),
        ))
        await self.anchoring.open(self.outbox)
        await self.io_call(self.outbox.save_sensor_meta, self.sensors_meta)
        # Sensors removed from the config since their readings were stored keep their meta.
        self.sensors_meta = {**await self.io_call(self.outbox.sensor_meta), **self.sensors_meta}
        self.display.restore()
        u = self.config.uplink
        self.window = DeliveryWindow(max_in_flight=u.max_in_flight, ack_timeout=u.ack_timeout,
                                     batch_size=u.batch_size, durable_seq=self.sendable_seq())
        log.info("outbox %s epoch %s, %d readings waiting", self.outbox_path, self.outbox.epoch,
                 (await self.io_call(self.outbox.depth)).readings)
        await self.transport.start()
        if self.metrics is not None:
            await self.metrics.start()
        for port in self.ports:
            port.start()
        tasks = [
            asyncio.create_task(coro, name=name)
            for name, coro in (
                ("sync", self._sync_loop()),
                ("send", self._send_loop()),
                ("ack", self._ack_loop()),
                ("health", self._health_loop()),
                ("watch", self.watch.run()),
                # From the event loop: a loop that hangs stops it, and systemd restarts us.
                ("watchdog", self.notifier.watchdog_loop()),
            )
        ]
        self.started.set()
        self.notifier.ready(self.status_line())
        try:
            waiter = asyncio.create_task(self.should_exit.wait())
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not waiter and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            await self.shutdown(tasks)

    async def shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        self.notifier.stopping("stopping: storing what was read, waiting for acks")
        if self.reloader is not None:
            await self.reloader.stop()  # a reload half applied would leave ports behind
        log.info("stopping: ports closed, storing what was read")
        for port in self.ports:
            port.close()
        # No new readings from here on (health included), so the outbox can drain.
        for t in tasks:
            if t.get_name() in ("health", "sync", "watch", "watchdog"):
                t.cancel()
        if self._store_tasks:
            await asyncio.gather(*self._store_tasks, return_exceptions=True)
        if self.outbox is not None:
            await self.io_call(functools.partial(self.outbox.flush_gaps, final=True))
            await self.io_call(self.outbox.sync)
            log.info("stopping: waiting up to %.0f s for acks", self.config.shutdown_timeout)
            self._wake_sender.set()
            deadline = time.monotonic() + self.config.shutdown_timeout
            while time.monotonic() < deadline and self.transport.ready():
                depth = await self.io_call(self.outbox.depth)
                if depth.readings == 0:
                    break
                await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.info("stopping: closing the uplink")
        await self.transport.close()
        if self.metrics is not None:
            await self.metrics.close()
        if self.outbox is not None:
            await self.io_call(self.outbox.close)
        self._io.shutdown(wait=True)
        self.notifier.close()
        log.info("stopped")

