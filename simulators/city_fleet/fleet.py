"""Thousands of simulated gateways in one asyncio process, each on its own MQTT connection.

Each gateway (gateway.py) takes its sensors' readings, commits them every
commit window, and sends and resends batches through the agent's delivery
window; its connection (link.py) is one MQTT session per gateway, with the
agent's client id (``cityedge-gw-{id}``) and topics (cityedge/uplink/topics.py).

One task drives them all: the commit window is cut into ``SLICES`` slices and
each slice's gateways take readings, commit and send; an ack refills its
gateway's window at once. Faults (``Fault``) are applied to a share of the
gateways at a time after the start: ``outage`` (the link drops, no reconnect
for ``length`` s; readings pile up in the outbox), ``restart`` (the agent
restarts: window and batch ids start over, the outbox stays, as after a kill),
``skew`` (the wall clock jumps ``length`` s and is reported unsynchronised
from then on).

The fleet measures its own CPU (``process_time``) and reports it per thousand
gateways, so a bench can tell the fleet's cost from the collector's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

from cityedge import shipped
from cityedge.uplink import Topics
from cityedge.uplink.topics import DEFAULT_PREFIX
from edge_agent.decoding import Profile, load_profile
from simulators.city_fleet.gateway import (
    ACK_TIMEOUT_S,
    BATCH_SIZE,
    MAX_IN_FLIGHT,
    SimGateway,
    Values,
)
from simulators.city_fleet.link import Link
from simulators.city_fleet.sites import SitePlan
from simulators.frames import frame_spec
from simulators.values import generator_for

COMMIT_WINDOW_S = 1.0  # the agent's default commit_window
SLICES = 10
PING_EVERY_S = 30.0
RECONNECT_S = 1.0  # first reconnect delay (jittered up to twice this)
# Connections opened at once: Mosquitto's listen backlog and our own CPU.
CONNECT_CONCURRENCY = 100
# Slice lateness samples kept for the report (the newest; 1,000 s of slices).
MAX_TICKS_KEPT = 10_000

FaultKind = Literal["outage", "restart", "skew"]


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    at: float  # seconds after the start
    share: float = 1.0  # of the gateways, 0..1
    length: float = 10.0  # outage: seconds off the air; skew: seconds the clock jumps


@dataclass(frozen=True)
class FleetOptions:
    host: str
    port: int
    sites: tuple[SitePlan, ...]
    duration: float
    prefix: str = DEFAULT_PREFIX
    batch_size: int = BATCH_SIZE
    max_in_flight: int = MAX_IN_FLIGHT
    ack_timeout: float = ACK_TIMEOUT_S
    faults: tuple[Fault, ...] = ()
    seed: int = 1
    # After ``duration`` the sensors stop and the fleet waits this long for every ack.
    drain_timeout: float = 120.0
    username: Callable[[str], str | None] = lambda _gw: None
    password: Callable[[str], str | None] = lambda _gw: None
    start_ns: int | None = None  # the sensors' first readings (default: now)
    rate: float = 1.0  # readings this many times as often as the city's sites take them


@dataclass
class FleetReport:
    gateways: int
    wall_s: float
    connect_s: float  # of wall_s, until every gateway had tried its first connection
    cpu_s: float
    readings: int
    acked: int
    dropped: int
    unacked: int
    batches_sent: int
    resent_batches: int
    bad_acks: int
    reconnects: int
    connect_failures: int
    restarts: int
    ack_p50_ms: float
    ack_p99_ms: float
    age_p50_ms: float  # reading taken -> acked (queryable by then)
    age_p99_ms: float
    # How late the commit-window slices ran: a fleet short of CPU ticks late, and its
    # gateways then send fewer, larger batches than real ones would.
    tick_late_p50_ms: float
    tick_late_p99_ms: float
    per_gateway: dict[str, int] = field(default_factory=dict)  # readings taken, by gateway

    @property
    def core_share_per_1000(self) -> float:
        """Share of one core the fleet used per thousand gateways."""
        return self.cpu_s / self.wall_s / (self.gateways / 1000) if self.wall_s else 0.0


@cache
def _profile(profile: str) -> Profile:
    return load_profile(shipped.profiles_dir() / f"{profile}.yaml")


@cache
def _profile_template(profile: str) -> tuple[str, str]:
    p = _profile(profile)
    spec = frame_spec(p)
    measurements = {f.measurement or p.measurement for f in spec.fields}
    if len(measurements) != 1:
        raise ValueError(f"{profile}: a reading per measurement is not simulated")
    return p.model, measurements.pop()


def profile_values(profile: str, seed: int) -> tuple[str, str, Values]:
    """The model, measurement and drifting values (simulators/values.py) of a shipped profile."""
    model, measurement = _profile_template(profile)
    raw = generator_for(_profile(profile), seed)

    def as_the_agent_sends() -> dict[str, int | float | bool]:
        # A reading frame's numbers leave the agent's decoder as floats (decoding/_plans.py),
        # so every sensor model writes one type per field and models can share a measurement.
        return {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                for k, v in raw().items()}

    return model, measurement, as_the_agent_sends


class Fleet:
    def __init__(self, options: FleetOptions,
                 values_for: Callable[[str, int], tuple[str, str, Values]] = profile_values
                 ) -> None:
        self.o = options
        self.topics = Topics(options.prefix)
        start = options.start_ns or time.time_ns()
        self.gateways = [SimGateway(plan, values_for, start_ns=start, seed=options.seed * 100_003
                                    + i, batch_size=options.batch_size,
                                    max_in_flight=options.max_in_flight,
                                    ack_timeout=options.ack_timeout, rate=options.rate)
                         for i, plan in enumerate(options.sites)]
        self.links: dict[str, Link] = {}
        self.offline_until: dict[str, float] = {}
        self.sensing = True
        self.reconnects = 0
        self.connect_failures = 0
        self._rng = random.Random(options.seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._connect_s = 0.0
        self._late: deque[float] = deque(maxlen=MAX_TICKS_KEPT)

    # -- connections ------------------------------------------------------------
    async def _connect(self, gw: SimGateway) -> None:
        loop = asyncio.get_running_loop()
        o = self.o
        link = Link(f"cityedge-gw-{gw.id}", gw.id, ack_topic=self.topics.ack(gw.id),
                    status_topic=self.topics.status(gw.id),
                    on_message=lambda _t, payload: self._on_ack(gw, payload),
                    on_ready=lambda: self._pump(gw), on_lost=lambda: self._lost(gw),
                    username=o.username(gw.id), password=o.password(gw.id))
        self.links[gw.id] = link
        try:
            await loop.create_connection(lambda: link, o.host, o.port)
        except OSError:
            self.connect_failures += 1
            self._lost(gw)

    def _lost(self, gw: SimGateway) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        delay = max(self.offline_until.get(gw.id, 0.0) - now,
                    RECONNECT_S * (1 + self._rng.random()))
        self._spawn(self._reconnect(gw, delay))

    async def _reconnect(self, gw: SimGateway, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self._stopping:
            self.reconnects += 1
            await self._connect(gw)

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- delivery ---------------------------------------------------------------
    def _pump(self, gw: SimGateway) -> None:
        link = self.links.get(gw.id)
        if link is None or not link.ready:
            gw.window.expire(time.monotonic())  # batches still time out while away
            return
        up = self.topics.up(gw.id)
        for payload in gw.take_batches(time.monotonic(), time.time_ns(), time.monotonic_ns()):
            link.publish(up, payload)

    def _on_ack(self, gw: SimGateway, payload: bytes) -> None:
        if gw.on_ack(payload, time.monotonic(), time.monotonic_ns()):
            self._pump(gw)

    async def _ticks(self) -> None:
        n = len(self.gateways)
        slice_s = COMMIT_WINDOW_S / SLICES
        next_at = time.monotonic()
        k = 0
        last_ping = next_at
        while True:
            next_at += slice_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            self._late.append((time.monotonic() - next_at) * 1000.0)
            wall, mono = time.time_ns(), time.monotonic_ns()
            for gw in self.gateways[k * n // SLICES:(k + 1) * n // SLICES]:
                if self.sensing:
                    gw.take_readings(wall, mono)
                gw.commit()
                self._pump(gw)
            k = (k + 1) % SLICES
            if next_at - last_ping >= PING_EVERY_S:
                last_ping = next_at
                for link in self.links.values():
                    link.ping()

    # -- faults -----------------------------------------------------------------
    async def _fault(self, fault: Fault, started: float) -> None:
        await asyncio.sleep(max(0.0, started + fault.at - time.monotonic()))
        rng = random.Random(hash((self.o.seed, fault.kind, fault.at)))
        chosen = rng.sample(self.gateways, max(1, round(fault.share * len(self.gateways))))
        now = time.monotonic()
        for gw in chosen:
            link = self.links.get(gw.id)
            if fault.kind == "outage":
                self.offline_until[gw.id] = now + fault.length
                if link is not None:
                    link.close(graceful=False)
            elif fault.kind == "restart":
                gw.commit()  # a killed agent keeps every appended reading
                gw.restart()
                if link is not None:
                    link.close(graceful=False)
            else:
                gw.clock_skew_ns = int(fault.length * 1e9)

    # -- run --------------------------------------------------------------------
    async def run(self) -> FleetReport:
        cpu0, wall0 = time.process_time(), time.monotonic()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect(gw: SimGateway) -> None:
            async with gate:
                await self._connect(gw)

        await asyncio.gather(*(connect(gw) for gw in self.gateways))
        started = time.monotonic()
        self._connect_s = started - wall0
        ticks = asyncio.create_task(self._ticks())
        faults = [asyncio.create_task(self._fault(f, started)) for f in self.o.faults]
        try:
            await asyncio.sleep(self.o.duration)
            self.sensing = False
            deadline = time.monotonic() + self.o.drain_timeout
            while time.monotonic() < deadline and any(gw.depth for gw in self.gateways):
                await asyncio.sleep(0.2)
        finally:
            self._stopping = True
            for t in (ticks, *faults, *self._tasks):
                t.cancel()
            for t in (ticks, *faults):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            for link in self.links.values():
                link.close()
            await asyncio.sleep(0.1)
        return self._report(time.monotonic() - wall0, time.process_time() - cpu0)

    def _report(self, wall: float, cpu: float) -> FleetReport:
        lat = sorted(x for gw in self.gateways for x in gw.stats.latencies_ms)
        ages = sorted(x for gw in self.gateways for x in gw.stats.ages_ms)
        late = sorted(self._late)
        s = [gw.stats for gw in self.gateways]
        return FleetReport(
            gateways=len(self.gateways), wall_s=wall, connect_s=self._connect_s, cpu_s=cpu,
            readings=sum(x.readings for x in s), acked=sum(x.acked for x in s),
            dropped=sum(x.dropped for x in s), unacked=sum(gw.depth for gw in self.gateways),
            batches_sent=sum(x.batches_sent for x in s),
            resent_batches=sum(x.resent_batches for x in s),
            bad_acks=sum(x.bad_acks for x in s), reconnects=self.reconnects,
            connect_failures=self.connect_failures, restarts=sum(x.restarts for x in s),
            ack_p50_ms=_pct(lat, 0.5), ack_p99_ms=_pct(lat, 0.99),
            age_p50_ms=_pct(ages, 0.5), age_p99_ms=_pct(ages, 0.99),
            tick_late_p50_ms=_pct(late, 0.5), tick_late_p99_ms=_pct(late, 0.99),
            per_gateway={gw.id: gw.stats.readings for gw in self.gateways},
        )


def _pct(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list (0 when empty)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0
