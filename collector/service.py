"""The collector's one lifecycle: start, serve, shut down gracefully (uvicorn's Server shape)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import time
from collections import Counter
from typing import Any

from cityedge.atomic import DIR_MODE
from cityedge.counters import by_reason
from cityedge.lifecycle import ExitSignals
from cityedge.logthrottle import LogThrottle
from cityedge.sdnotify import Notifier
from cityedge.uplink.seal import KeyRing
from collector.admission import Admission
from collector.alerts.runner import AlertRunner
from collector.config import LoadedConfig, make_writer
from collector.delivery import WritePipeline
from collector.lineprotocol import Point
from collector.registry.live import REFRESH_INTERVAL_S, LiveRegistry
from collector.sources.http import HttpSource
from collector.sources.mqtt import MqttSource

log = logging.getLogger(__name__)

# Seconds between looks at a database that was unreachable, until it answers.
DATABASE_RETRY_S = 5.0


class StartupError(Exception):
    """The collector cannot start; the message is the one line to show (no traceback)."""

HEALTH_MEASUREMENT = "cityedge_collector"
# Open files the collector asks for at start (the soft limit is often 1024; the
# HTTP source's connection cap is fitted under whatever it gets).
WANTED_OPEN_FILES = 65536


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard one; the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = WANTED_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, WANTED_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return want
    return soft


def _admission(loaded: LoadedConfig) -> Admission | None:
    path = loaded.registry_path
    if path is None:
        log.warning("insecure: true: no gateway registry; any client that reaches the broker"
                    " or the HTTP ingest may send as any gateway")
        return None
    return Admission(LiveRegistry(path))


class CollectorService:
    """``keyring``: each gateway's seal key (cityedge/uplink/seal.py), from the operator's
    registry; acks and displays to a gateway are sealed with it. None: insecure, unsealed."""

    def __init__(self, loaded: LoadedConfig, keyring: KeyRing | None = None) -> None:
        self.config = loaded.config
        self.writer = make_writer(loaded.config, loaded.doc)
        b = loaded.config.batching
        self.metrics: Any = None
        pipeline_writer = self.writer
        if loaded.config.metrics is not None:
            from collector.metrics import Metrics, TimedWriter  # noqa: PLC0415  prometheus-client, only when on

            self.metrics = Metrics(loaded.config.metrics, lambda: self.health_point().fields,
                                   lambda: [d.name for d in self.alerts.deliveries]
                                   if self.alerts is not None else [])
            pipeline_writer = TimedWriter(self.writer, self.metrics)
        self.pipeline = WritePipeline(pipeline_writer, max_points=b.max_points, linger=b.linger)
        self.admission = _admission(loaded)
        # The registry seals what goes to each gateway unless a keyring is given.
        self.keyring: KeyRing | None = keyring or self.admission
        keyring = self.keyring
        c = loaded.config
        # One rate limit per gateway, whichever source its batches come by.
        limits = c.limits
        self.limiter = limits.limiter()
        self.mqtt = (MqttSource(c.mqtt, self.pipeline, admission=self.admission,
                                keyring=keyring, limiter=self.limiter,
                                log_interval=limits.log_interval) if c.mqtt else None)
        self.http = (HttpSource(c.http, self.pipeline, admission=self.admission,
                                keyring=keyring, limiter=self.limiter,
                                log_interval=limits.log_interval) if c.http else None)
        self._loop_log = LogThrottle(logging.getLogger("asyncio"), limits.log_interval,
                                     logging.ERROR)
        self.alerts: AlertRunner | None = None
        if loaded.alerts is not None and loaded.alerts.config.enabled:
            mqtt = loaded.config.mqtt
            self.alerts = AlertRunner(loaded.alerts, write_points=self.pipeline.write_durably,
                                      mqtt=mqtt, holder=mqtt.client_id if mqtt else "collector",
                                      keyring=keyring)
            alerts = self.alerts
            self.pipeline.on_written = lambda points: alerts.feed(points, time.time_ns())
            if self.alerts.feed_source is not None:
                self.alerts.feed_source.admission = self.admission
        self.ops_page: Any = None
        self.status_watcher: Any = None
        if c.ops_page is not None:
            self._make_ops_page(loaded)
        self.signals = ExitSignals(
            stopping="finishing in-flight writes, then exiting",
            forced="unwritten batches are resent by their gateways",
            reload=self.reload_registry if self.admission is not None else None)
        self.should_exit = self.signals.should_exit
        self.started = asyncio.Event()
        self.notifier = Notifier()  # systemd's READY=1, WATCHDOG=1, STATUS= (Type=notify)

    def _make_ops_page(self, loaded: LoadedConfig) -> None:
        from collector.fleet_status import StatusWatcher  # noqa: PLC0415  only when on
        from collector.opspage import OpsPage  # noqa: PLC0415
        from collector.schema.setup import writer_target  # noqa: PLC0415

        assert loaded.config.ops_page is not None
        target, layout = writer_target(loaded)
        if loaded.config.mqtt is not None:
            self.status_watcher = StatusWatcher(loaded.config.mqtt, "ops")
        watcher = self.status_watcher
        self.ops_page = OpsPage(loaded.config.ops_page, target,
                                "health" if layout else None, "events" if layout else None,
                                lambda: watcher.book.statuses if watcher is not None else {})

    def install_signal_handlers(self) -> None:
        self.signals.install()

    def reload_registry(self) -> None:
        """SIGHUP: read the registry again now, changed or not."""
        if self.admission is not None:
            log.info("SIGHUP: reloading the registry")
            self.notifier.reloading()
            self.admission.live.refresh(force=True)
            self.notifier.ready(self._status_line())

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's own error lines (e.g. "socket.accept() out of system resource", once
        per failed accept), at most one per kind per log_interval."""
        held = self._loop_log.admit(str(context.get("message", "unhandled"))[:80],
                                    time.monotonic())
        if held is not None:
            if held:
                context = {**context, "held_back": held}
            loop.default_exception_handler(context)

    async def serve(self) -> None:
        asyncio.get_running_loop().set_exception_handler(self._loop_exception)
        log.info("open files limit: %d", raise_open_files_limit())
        await self.writer.start()
        problem = await self.writer.problem()
        if problem is not None:
            log.warning("%s unreachable at start-up (%s): batches stay unacked, and their"
                        " gateways keep them, until it answers", self.writer.target, problem)
        tasks = [asyncio.create_task(self.pipeline.run(), name="pipeline")]
        try:
            await self._start_sources(tasks)
        except BaseException:
            await self._abandon(tasks)
            raise
        tasks.append(asyncio.create_task(self._health_loop(), name="health"))
        if self.metrics is not None:
            await self.metrics.start()
        if self.status_watcher is not None:
            self.status_watcher.start()
            tasks.append(asyncio.create_task(self.status_watcher.run(), name="status-watch"))
        if self.ops_page is not None:
            await self.ops_page.start()
        if self.admission is not None:
            tasks.append(asyncio.create_task(self._registry_loop(), name="registry"))
        if problem is not None:
            tasks.append(asyncio.create_task(self._until_database(), name="database"))
        # From the event loop: a loop that hangs stops it, and systemd restarts us.
        tasks.append(asyncio.create_task(self.notifier.watchdog_loop(), name="watchdog"))
        log.info("collector running%s", f" ({self.writer.target} unreachable)"
                 if problem is not None else "")
        self.started.set()
        self.notifier.ready(self._status_line(problem))
        try:
            await self._until_exit(tasks)
        finally:
            await self.shutdown(tasks)

    async def _start_sources(self, tasks: list[asyncio.Task[None]]) -> None:
        if self.alerts is not None:
            # There from the start, so `edge-collector alerts` can tell a running
            # collector that has saved nothing yet from a wrong --state-dir.
            self.alerts.store.dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            await self.alerts.start()
        if self.mqtt is not None:
            await self.mqtt.start()
            tasks.append(asyncio.create_task(self.mqtt.run(), name="mqtt-source"))
        if self.http is not None:
            c = self.http.config
            try:
                await self.http.start()
            except OSError as exc:
                why = os.strerror(exc.errno) if exc.errno else str(exc)
                raise StartupError(f"cannot listen on {c.host}:{c.port} (http.port in the config):"
                                   f" {why}") from None

    async def _abandon(self, tasks: list[asyncio.Task[None]]) -> None:
        """A start that failed half way: close what was opened, quietly."""
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for part in (self.http, self.mqtt, self.alerts, self.writer):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.close()

    async def _until_database(self) -> None:
        """Looks at a database unreachable at start-up until it answers, and says so."""
        while True:
            await asyncio.sleep(DATABASE_RETRY_S)
            if await self.writer.problem() is None:
                log.warning("%s reachable again: writing and acking", self.writer.target)
                self.notifier.status(self._status_line())
                return

    async def _until_exit(self, tasks: list[asyncio.Task[None]]) -> None:
        waiter = asyncio.create_task(self.should_exit.wait())
        # The database watch ends when the database answers; the others end the service.
        watched = [t for t in tasks if t.get_name() != "database"]
        done, _ = await asyncio.wait([waiter, *watched], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for t in done:
            if t is not waiter and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    def _status_line(self, problem: str | None = None) -> str:
        """systemd's STATUS= line."""
        s = self.pipeline.stats
        db = f"{self.writer.target} unreachable" if problem else f"writing {self.writer.target}"
        return f"{db}; {s.readings} readings in {s.batches} batches, {s.writes} writes"

    async def shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        self.notifier.stopping("stopping: finishing in-flight writes and acks")
        # Stop taking new batches first; what the pipeline holds gets written and acked.
        for t in tasks:
            if t.get_name() in ("mqtt-source", "health", "registry", "database", "status-watch",
                                "watchdog"):
                t.cancel()
        if self.http is not None:
            await self.http.close()  # answers the requests whose writes are still in flight
        await self.pipeline.close()
        pipeline_task = next(t for t in tasks if t.get_name() == "pipeline")
        try:
            await asyncio.wait_for(asyncio.shield(pipeline_task), self.config.shutdown_timeout)
        except TimeoutError:
            log.warning("shutdown timeout: %d points unwritten; gateways will resend them",
                        self.pipeline.pending_points)
            pipeline_task.cancel()
        except Exception:
            log.exception("pipeline failed during shutdown")
        await asyncio.sleep(0.2)  # let paho send the last acks
        if self.mqtt is not None:
            await self.mqtt.close()
        if self.alerts is not None:
            await self.alerts.close()
        if self.metrics is not None:
            await self.metrics.close()
        if self.ops_page is not None:
            await self.ops_page.close()
        if self.status_watcher is not None:
            await self.status_watcher.close()
        await self.writer.close()
        self.notifier.close()

    def health_point(self) -> Point:
        s = self.pipeline.stats
        fields: dict[str, int | float | str] = {**self.pipeline.health_fields()}
        tags = {"collector": "-"}
        refused: Counter[str] = Counter()
        if self.mqtt is not None and self.mqtt.client is not None:
            tags["collector"] = self.mqtt.config.client_id
            refused += self.mqtt.refused
            fields["mqtt_reconnects"] = max(0, self.mqtt.client.stats.connects - 1)
            # Batches past the incoming queue (left unacked: the broker or the gateway's
            # resend brings them back) and acks paho would not queue (the gateway resends).
            fields["mqtt_overflowed"] = self.mqtt.client.stats.overflowed
            fields["mqtt_acks_not_sent"] = self.mqtt.client.stats.publish_refused
            if (gate := self.mqtt.client.gate) is not None:
                # Times reading paused at the unanswered-batch limit (backpressure), and
                # the most batches ever held unanswered.
                fields["mqtt_read_pauses"] = gate.pauses
                fields["mqtt_unanswered_peak"] = gate.peak
        if self.http is not None:
            refused += self.http.refused
            fields.update(by_reason("http_connections_refused", self.http.guard.counts))
            for route in (self.http.airrohr, self.http.influx_write):
                if route is not None:
                    fields.update(route.health())
        fields["refused_batches"] = sum(refused.values())
        fields.update(by_reason("refused", refused))
        fields.update(by_reason("dead_letters", s.dead_letter_reasons))
        fields.update(by_reason("not_written", s.not_written))
        fields.update({
            "unencodable_points": s.unencodable_points,
            "failed_writes": s.failed_writes,
            "write_over_budget": s.over_budget,
            "alert_feed_errors": s.alert_feed_errors,
            "rate_limit_gateways": len(self.limiter),
            "rate_limit_forgotten": self.limiter.forgotten,
        })
        if self.alerts is not None:
            fields.update(self.alerts.health_fields())
        fields.update(self._registry_fields())
        if self.ops_page is not None:
            fields.update(self.ops_page.health_fields())
        if self.status_watcher is not None:
            fields.update(by_reason("status_ignored", self.status_watcher.book.ignored))
        return Point(HEALTH_MEASUREMENT, tags, fields, time.time_ns())

    def _registry_fields(self) -> dict[str, int | float | str]:
        if self.admission is None:
            return {"insecure": True}
        live = self.admission.live
        return {"registry_gateways": len(live.current.active()),
                "registry_reloads": live.stats.reloads,
                "registry_errors": live.stats.reload_errors,
                "site_overrides": self.admission.stats.site_overrides}

    async def _registry_loop(self) -> None:
        assert self.admission is not None
        while True:
            await asyncio.sleep(REFRESH_INTERVAL_S)
            self.admission.live.refresh()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval)
            now = time.monotonic()
            for source in (self.mqtt, self.http):
                if source is not None:
                    source.log.flush(now)
            with contextlib.suppress(Exception):
                await self.writer.write([self.health_point()])
