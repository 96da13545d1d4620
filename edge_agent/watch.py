"""The agent's own watch: what a technician must find in the journal, said once.

Every ``WATCH_S`` it looks at the uplink (uplink_watch.py: one line when it goes
down, a reminder while it stays down, one when it is back, each with the outbox's
depth) and at readings not stored (a full disk: the first failure is logged where
it happens, agent.py; here a reminder with the running count, free space and the
outbox's limit every ``REMIND_S``). It also answers ``edge-agent status``
(status.py) for as long as the agent runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from edge_agent.outbox.space import free_bytes
from edge_agent.status import StatusServer
from edge_agent.uplink_watch import REMIND_S, UplinkWatch

if TYPE_CHECKING:
    from edge_agent.agent import Agent

log = logging.getLogger("edge_agent.agent")

# Seconds between two looks.
WATCH_S = 2.0


def uplink_target(agent: Agent) -> str:
    """The uplink as a technician names it: the broker's host:port, or the collector's URL."""
    u = agent.config.uplink
    if u.kind == "http":
        return f"collector {u.http.url}"
    return f"MQTT broker {u.mqtt.host}:{u.mqtt.port}"


class Watch:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.uplink = UplinkWatch(uplink_target(agent), time.monotonic())
        self._failing_since: float | None = None  # wall clock of the first reading not stored
        self._reminded_at = 0.0
        self.server: StatusServer | None = None

    @property
    def status_errors(self) -> Counter[str]:
        return self.server.errors if self.server is not None else Counter()

    async def run(self) -> None:
        server = self.server = StatusServer(self.agent, self)
        await server.start()
        try:
            while True:
                await asyncio.sleep(WATCH_S)
                await self.tick()
        finally:
            await server.close()

    async def tick(self) -> None:
        a = self.agent
        assert a.outbox is not None
        now = time.monotonic()
        waiting = (await a.io_call(a.outbox.depth)).readings
        up = a.transport.ready()
        line = self.uplink.observe(up, now, "" if up else a.transport.problem(), waiting)
        if line is not None:
            log.log(line.level, line.text)
        self._not_stored(now)
        a.notifier.status(a.status_line())  # systemctl status shows it

    def _not_stored(self, now: float) -> None:
        a = self.agent
        if not a.failing_run:
            self._failing_since = None
            return
        if self._failing_since is None:
            self._failing_since, self._reminded_at = time.time(), now  # agent.py said it
            return
        if now - self._reminded_at < REMIND_S:
            return
        self._reminded_at = now
        assert a.outbox is not None
        free = free_bytes(a.outbox_path.parent)
        limit = (a.outbox.max_bytes or 0) / 1024 / 1024
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._failing_since))
        log.error("outbox: %d readings not stored since %s (free space %.1f MB; outbox limit"
                  " %.0f MB); counted per sensor, recorded as a gap once storing works",
                  a.failing_run, since, free / 1024 / 1024, limit)
