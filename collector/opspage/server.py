"""The operations room's page, served by the collector on a listener of its own (read-only).

``GET /`` is a static page; its script (``app.js``) fetches ``state.json``
every ``refresh`` seconds and puts what it holds into text nodes, never
markup: gateway ids, site names and alert messages come from the field and
are untrusted. Everything is served from here (no CDN), under a content
security policy that allows this origin's script and style only. The
document is built by one background task every ``refresh`` seconds from
InfluxDB (the same queries as ``edge-collector fleet``) and the gateways'
retained status messages; requests only read the last one, so viewers add
no load on InfluxDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from aiohttp import web

from cityedge.uplink.status import GatewayStatus
from collector.config import OpsPageConfig
from collector.fleet import read
from collector.opspage.state import page_state
from collector.schema.setup import InfluxQuery, SetupError, Target

log = logging.getLogger(__name__)

STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
                               " connect-src 'self'; img-src 'self'; base-uri 'none';"
                               " form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _static(name: str) -> bytes:
    return resources.files("collector.opspage").joinpath("static", name).read_bytes()


class OpsPage:
    """``target``: the InfluxDB the collector writes (v1 API, for InfluxQL);
    ``health_rp``/``events_rp``: where gateway_health and alerts are kept (None: the
    default policy); ``statuses``: the gateways' status messages heard so far."""

    def __init__(self, config: OpsPageConfig, target: Target, health_rp: str | None,
                 events_rp: str | None,
                 statuses: Callable[[], Mapping[str, GatewayStatus]]) -> None:
        self.config = config
        self.query = InfluxQuery(target)
        self.database = target.database
        self.rps = (health_rp, events_rp)
        self.statuses = statuses
        self.files = {name: _static(name) for name in STATIC}
        self.state = page_state([], [], {}, now_ns=time.time_ns(), stale_s=config.stale,
                                refresh_s=config.refresh,
                                error="starting: no answer from InfluxDB yet")
        self.refreshes = 0
        self.refresh_errors = 0
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None

    def build(self, statuses: Mapping[str, GatewayStatus]) -> bytes:
        """One document, from InfluxDB now (blocking: run in a thread)."""
        now = time.time_ns()
        c = self.config
        try:
            health, alerts = read(self.query, self.database, *self.rps)
        except SetupError as exc:
            self.refresh_errors += 1
            return page_state([], [], {}, now_ns=now, stale_s=c.stale, refresh_s=c.refresh,
                              error=f"InfluxDB: {exc}")
        return page_state(health, alerts, statuses, now_ns=now, stale_s=c.stale,
                          refresh_s=c.refresh)

    async def _refresh_loop(self) -> None:
        while True:
            try:
                self.state = await asyncio.to_thread(self.build, dict(self.statuses()))
                self.refreshes += 1
            except Exception:
                self.refresh_errors += 1
                log.exception("operations page: refresh failed")
            await asyncio.sleep(self.config.refresh)

    def _file(self, name: str) -> Callable[[web.Request], Any]:
        async def handle(_: web.Request) -> web.Response:
            return web.Response(body=self.files[name], headers={
                **HEADERS, "Content-Type": f"{STATIC[name]}; charset=utf-8"})
        return handle

    async def _state(self, _: web.Request) -> web.Response:
        return web.Response(body=self.state, headers={
            **HEADERS, "Content-Type": "application/json; charset=utf-8"})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024)  # read-only: no request has a body
        app.router.add_get("/", self._file("index.html"))
        for name in STATIC:
            app.router.add_get(f"/{name}", self._file(name))
        app.router.add_get("/state.json", self._state)
        return app

    async def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_loop(), name="ops-page")
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.config.host, self.config.port).start()

    def health_fields(self) -> dict[str, int]:
        return {"ops_page_refreshes": self.refreshes,
                "ops_page_refresh_errors": self.refresh_errors}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._runner is not None:
            await self._runner.cleanup()
