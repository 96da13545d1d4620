"""The collector's one lifecycle: start, serve, shut down gracefully (uvicorn's Server shape)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from cityedge.uplink.seal import KeyRing
from collector.alerts.runner import AlertRunner
from collector.config import LoadedConfig, make_writer
from collector.delivery import WritePipeline
from collector.lineprotocol import Point
from collector.sources.http import HttpSource
from collector.sources.mqtt import MqttSource

log = logging.getLogger(__name__)

HEALTH_MEASUREMENT = "cityedge_collector"


class CollectorService:
    """``keyring``: each gateway's seal key (cityedge/uplink/seal.py), from the operator's
    registry; acks and displays to a gateway are sealed with it. None: insecure, unsealed."""

    def __init__(self, loaded: LoadedConfig, keyring: KeyRing | None = None) -> None:
        self.config = loaded.config
        self.keyring = keyring
        self.writer = make_writer(loaded.config, loaded.doc)
        b = loaded.config.batching
        self.pipeline = WritePipeline(self.writer, max_points=b.max_points, linger=b.linger)
        c = loaded.config
        self.mqtt = MqttSource(c.mqtt, self.pipeline, keyring) if c.mqtt else None
        self.http = HttpSource(c.http, self.pipeline, keyring) if c.http else None
        self.alerts: AlertRunner | None = None
        if loaded.alerts is not None and loaded.alerts.config.enabled:
            mqtt = loaded.config.mqtt
            self.alerts = AlertRunner(loaded.alerts, write_points=self.pipeline.write_durably,
                                      mqtt=mqtt, holder=mqtt.client_id if mqtt else "collector",
                                      keyring=keyring)
            alerts = self.alerts
            self.pipeline.on_written = lambda points: alerts.feed(points, time.time_ns())
        self.should_exit = asyncio.Event()
        self.started = asyncio.Event()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig)

    def handle_exit(self, sig: int) -> None:
        if self.should_exit.is_set():
            log.warning("second %s: exiting now", signal.Signals(sig).name)
            raise SystemExit(1)
        log.info("%s: finishing in-flight writes, then exiting", signal.Signals(sig).name)
        self.should_exit.set()

    async def serve(self) -> None:
        await self.writer.start()
        if self.alerts is not None:
            await self.alerts.start()
        tasks = [asyncio.create_task(self.pipeline.run(), name="pipeline")]
        if self.mqtt is not None:
            await self.mqtt.start()
            tasks.append(asyncio.create_task(self.mqtt.run(), name="mqtt-source"))
        if self.http is not None:
            await self.http.start()
        tasks.append(asyncio.create_task(self._health_loop(), name="health"))
        log.info("collector running")
        self.started.set()
        try:
            await self._until_exit(tasks)
        finally:
            await self.shutdown(tasks)

    async def _until_exit(self, tasks: list[asyncio.Task[None]]) -> None:
        waiter = asyncio.create_task(self.should_exit.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for t in done:
            if t is not waiter and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    async def shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        # Stop taking new batches first; what the pipeline holds gets written and acked.
        for t in tasks:
            if t.get_name() in ("mqtt-source", "health"):
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
        await self.writer.close()

    def health_point(self) -> Point:
        s = self.pipeline.stats
        fields: dict[str, int | float | str] = {
            "batches": s.batches,
            "readings": s.readings,
            "writes": s.writes,
            "write_retries": s.write_retries,
            "dead_letters": s.dead_letters,
            "rejected_points": s.rejected_points,
            "pending_points": self.pipeline.pending_points,
            "last_write_ms": round(s.last_write_s * 1000, 3),
        }
        tags = {"collector": "-"}
        refused = 0
        if self.mqtt is not None and self.mqtt.client is not None:
            tags["collector"] = self.mqtt.config.client_id
            refused += sum(self.mqtt.refused.values())
            fields["mqtt_reconnects"] = max(0, self.mqtt.client.stats.connects - 1)
        if self.http is not None:
            refused += sum(self.http.refused.values())
        fields["refused_batches"] = refused
        if self.alerts is not None:
            fields.update(self.alerts.health_fields())
        return Point(HEALTH_MEASUREMENT, tags, fields, time.time_ns())

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval)
            with contextlib.suppress(Exception):
                await self.writer.write([self.health_point()])
