"""The operations team's webhook endpoint in tests: an aiohttp server on a free loopback port."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from collector.notifiers.webhook import verify


class WebhookReceiver:
    """Records every POST to ``{url}`` or ``{url}/{who}`` (``who``: which collector sent it,
    "" for the plain URL). With a ``secret``, a POST whose signature does not verify is
    refused (401) and counted instead. While ``refuse`` is set, every POST is answered with
    that status and counted in ``refused``, not recorded (an endpoint that is down)."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.posts: list[tuple[str, dict[str, Any]]] = []  # (who, body)
        self.bad_signatures = 0
        self.refuse: int | None = None  # answer every POST with this status, not recorded
        self.retry_after: int | None = None  # and this Retry-After, if set
        self.refused = 0
        self._runner: web.AppRunner | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        return [body for _, body in self.posts]

    def states(self, who: str | None = None) -> list[tuple[str, str, int]]:
        """(state, alert id, event seq) of every notification, from one sender or all."""
        return [(e["state"], e["alert_id"], e["seq"]) for w, e in self.posts
                if who is None or w == who]

    async def _hook(self, request: web.Request) -> web.Response:
        payload = await request.read()
        if self.secret is not None and not verify(
                self.secret, request.headers.get("X-Cityedge-Signature", ""), payload,
                int(time.time())):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.refuse is not None:
            self.refused += 1
            headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
            return web.Response(status=self.refuse, headers=headers)
        self.posts.append((request.match_info.get("who", ""), json.loads(payload)))
        return web.Response(status=204)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/hook/{who}", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/hook"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
