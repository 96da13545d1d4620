"""The HTTP listener that serves a Prometheus registry: the agent's and the collector's.

Both expose their counters the same way (GET on one path, Prometheus's text format,
no access log: a scrape every few seconds would fill an SD card), so the listener is
written once and each side hands it its registry.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# A scrape is a GET: no body worth reading.
MAX_REQUEST_BYTES = 1024


class MetricsListener:
    """``registry`` at http://host:port/path while started."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, path: str) -> None:
        self.registry = registry
        self.host, self.port, self.path = host, port, path
        self._runner: web.AppRunner | None = None

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def _handle(self, _: web.Request) -> web.Response:
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_get(self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
