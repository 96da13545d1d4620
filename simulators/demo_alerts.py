"""The demo's alert side: a dust episode it plays, and what people would see of it.

``Episode`` multiplies one sensor's particulate values for a while, as a
yellow-dust day does. ``AlertWatch`` plays the city's receivers on its own
thread and event loop: the operations team's webhook endpoint (a real aiohttp
server that checks the HMAC signature), the bus stops' terminals (their
display files, which the agents rewrite when a display is shown or cleared)
and a broker subscription, with a collector's account, to the terminals'
display acks. A display downlink itself is readable by its gateway alone
(the broker's ACL), so it is seen where it arrives: on the terminal. Each
event is kept with the time it arrived, so the live view can show how long
after the reading that caused it the alert reached each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from rich.table import Table

from cityedge.mqtt import MqttClient
from cityedge.uplink import Topics
from cityedge.uplink.topics import DEFAULT_PREFIX
from collector.notifiers.mqtt_downlink.message import SHOW_STATES
from collector.notifiers.webhook.payload import SIGNATURE_HEADER, verify
from simulators.demo_secure import Link

# Package data (pyproject.toml), found the same way from a clone or an install.
RULES_FILE = Path(str(resources.files("simulators").joinpath("demo_rules.yaml")))
WEBHOOK_SECRET = "cityedge-demo"  # a demo secret: the receiver runs on loopback
# How often the terminals' display files are looked at; each records when it was written.
BOARD_POLL_S = 0.1
# Board changes kept per terminal (a demo's episode makes a handful).
BOARD_HISTORY = 256


@dataclass
class Episode:
    """``factor`` times the usual dust from ``at`` to ``at + length`` seconds after ``start()``."""

    at: float
    length: float
    factor: float = 20.0  # PM10 near 500 ug/m3: a heavy yellow-dust day
    started: float | None = None

    def start(self) -> None:
        self.started = time.monotonic()

    def phase(self) -> str:
        if self.started is None:
            return "waiting"
        elapsed = time.monotonic() - self.started
        if elapsed < self.at:
            return f"in {self.at - elapsed:.0f} s"
        if elapsed < self.at + self.length:
            return f"running, {self.at + self.length - elapsed:.0f} s left"
        return "over"

    def multiplier(self) -> float:
        if self.started is None:
            return 1.0
        elapsed = time.monotonic() - self.started
        return self.factor if self.at <= elapsed < self.at + self.length else 1.0


@dataclass
class Seen:
    """One alert event as the receivers saw it; times are wall ns of arrival."""

    event: dict[str, Any]
    webhook_ns: int
    on_screen: dict[str, int] = field(default_factory=dict)  # gateway -> its board changed
    acks: dict[str, tuple[str, int]] = field(default_factory=dict)  # gateway -> (result, arrival)

    def after(self, arrival_ns: int) -> float:
        """Seconds from the reading that caused the event to an arrival."""
        return (arrival_ns - int(self.event["time_ns"])) / 1e9


class AlertWatch:
    """``link``: a collector's account (it may read display acks); ``terminals``: gateway ->
    its terminal's display file."""

    def __init__(self, link: Link, terminals: dict[str, Path],
                 prefix: str = DEFAULT_PREFIX) -> None:
        self.link, self.terminals, self.topics = link, terminals, Topics(prefix)
        self.events: dict[str, Seen] = {}  # event id -> what arrived
        # gateway -> (written at, alert id -> display id on screen), in order
        self.boards: dict[str, deque[tuple[int, dict[str, str]]]] = {
            gateway: deque(maxlen=BOARD_HISTORY) for gateway in terminals}
        self.acks: dict[str, dict[str, tuple[str, int]]] = {}
        self.bad_signatures = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="alert-watch", daemon=True)
        self._error: BaseException | None = None

    # -- the thread ---------------------------------------------------------------
    def start(self, timeout: float = 15) -> str:
        """Start the receivers; returns the webhook URL for the collector's config."""
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"alert receivers did not start: {self._error}")
        return self.url

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        client = MqttClient(self.link.options("cityedge-demo-alert-watch",
                                              [(self.topics.down_ack("+"), 1)]))
        client.start()
        await client.wait_connected(10)
        self._ready.set()
        tasks = [asyncio.create_task(self._read(client)), asyncio.create_task(self._boards())]
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await client.close()
            await runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        arrived = time.time_ns()
        payload = await request.read()
        if not verify(WEBHOOK_SECRET, request.headers.get(SIGNATURE_HEADER, ""), payload,
                      arrived // 10**9):
            self.bad_signatures += 1
            return web.Response(status=401)
        doc = json.loads(payload)
        self.events.setdefault(doc["event_id"], Seen(doc, arrived))
        return web.Response(status=204)

    async def _read(self, client: MqttClient) -> None:
        while True:
            message = await client.get()
            arrived = time.time_ns()
            gateway = message.topic.split("/")[-2]
            try:
                doc = json.loads(message.payload)
                msg_id = str(doc["id"])
            except (ValueError, KeyError, TypeError):
                continue
            self.acks.setdefault(msg_id, {}).setdefault(gateway, (str(doc.get("result")),
                                                                  arrived))

    async def _boards(self) -> None:
        while True:
            for gateway, path in self.terminals.items():
                self._look(gateway, path)
            await asyncio.sleep(BOARD_POLL_S)

    def _look(self, gateway: str, path: Path) -> None:
        """Record the terminal's board if the agent wrote a new one (``updated_ns``)."""
        try:
            board = json.loads(path.read_bytes())
            written = int(board["updated_ns"])
            showing = {str(d["alert_id"]): str(d["id"]) for d in board["showing"]}
        except (OSError, ValueError, KeyError, TypeError):
            return
        changes = self.boards[gateway]
        if not changes or changes[-1][0] != written:
            changes.append((written, showing))

    def _on_screen(self, event: dict[str, Any]) -> dict[str, int]:
        """gateway -> when its terminal put the event's display up (a show) or took the
        alert's display down (any other state)."""
        out: dict[str, int] = {}
        show = event["state"] in SHOW_STATES
        for gateway, changes in self.boards.items():
            before: dict[str, str] = {}
            for written, showing in list(changes):
                if show and event["event_id"] in showing.values():
                    out[gateway] = written
                    break
                if (not show and written >= event["time_ns"]
                        and event["alert_id"] in before and event["alert_id"] not in showing):
                    out[gateway] = written
                    break
                before = showing
        return out

    # -- what the live view shows ---------------------------------------------------
    def timeline(self) -> list[Seen]:
        out = []
        for event_id, seen in list(self.events.items()):
            seen.on_screen = self._on_screen(seen.event)
            seen.acks = dict(self.acks.get(event_id, {}))
            out.append(seen)
        return sorted(out, key=lambda s: (s.event["time_ns"], s.webhook_ns))

    def table(self, episode: Episode, terminal: tuple[str, Path] | None) -> Table:
        """The last events; times are seconds after the reading that caused each."""
        t = Table(title=f"alerts (dust episode at the bus stop: {episode.phase()})", expand=True)
        t.add_column("reading", no_wrap=True)
        t.add_column("alert")
        t.add_column("state", no_wrap=True)
        for col in ("webhook", "on screen", "ack"):
            t.add_column(col, justify="right", no_wrap=True)
        for seen in self.timeline()[-6:]:
            e = seen.event
            screen = " ".join(f"{seen.after(ns):.2f}s" for ns in seen.on_screen.values())
            acks = " ".join(f"{result} {seen.after(ns):.2f}s" for result, ns in seen.acks.values())
            t.add_row(datetime.fromtimestamp(e["time_ns"] / 1e9).strftime("%H:%M:%S"),
                      f"{e['rule']} {e.get('scope', {}).get('district', '')}",
                      f"{e['state']} {e.get('value', 0):.0f}",
                      f"{seen.after(seen.webhook_ns):.2f}s", screen or "-", acks or "-")
        if terminal is not None:
            t.caption = f"{terminal[0]} terminal shows: {showing(terminal[1])}"
        return t


def showing(display_file: Path) -> str:
    try:
        board = json.loads(display_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "(nothing yet)"
    texts = [d.get("text", "") for d in board.get("showing", [])]
    return " | ".join(texts) if texts else "(nothing)"
