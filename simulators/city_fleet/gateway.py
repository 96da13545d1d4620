"""One simulated gateway, sans-IO: its sensors' readings, its outbox, its delivery window.

The outbox is held in memory but keeps the real one's rules (DESIGN invariants
1-3, 6): seqs are assigned one by one, readings become sendable only at a
commit (``commit``, every commit window), an epoch names the outbox, and it is
bounded (``max_readings``); past the bound the oldest unsent readings are
dropped and counted, never silently. What to send, what is in flight and what
is due again is the agent's own bookkeeping (edge_agent/outbox/window.py), and
batches and acks are the uplink's (cityedge/uplink): encode_batch, decode_ack.

The shell (fleet.py) calls ``tick(now_s, wall_ns)`` once per commit window,
``take_batches`` when the link is up, and ``on_ack`` for each ack.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cityedge.uplink import (
    Ack,
    Batch,
    PayloadError,
    Reading,
    SeqRanges,
    decode_ack,
    encode_batch,
)
from edge_agent.outbox.window import DeliveryWindow, Resend, SendNew
from simulators.city_fleet.sites import SitePlan

# Default uplink settings of the agent (edge_agent/config.py UplinkConfig).
BATCH_SIZE = 500
MAX_IN_FLIGHT = 4
ACK_TIMEOUT_S = 15.0
# An outbox holds days of readings on a gateway; a simulated one holds this many
# (a day of the busiest site kind at 2 readings/s) before it drops the oldest.
MAX_OUTBOX_READINGS = 200_000
# Publish -> ack latencies kept for percentiles, per gateway (the newest).
MAX_LATENCIES = 256

Values = Callable[[], dict[str, int | float | bool]]


@dataclass(slots=True)
class SimSensor:
    id: str
    model: str
    measurement: str
    interval_ns: int
    values: Values
    next_ns: int


@dataclass(slots=True)
class GatewayStats:
    readings: int = 0  # taken from sensors
    dropped: int = 0  # outbox full, oldest dropped (counted, as the outbox's gaps are)
    acked: int = 0  # deleted after an ack
    batches_sent: int = 0
    resent_batches: int = 0
    bad_acks: int = 0  # undecodable, or for another outbox
    restarts: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # publish -> ack, per batch
    # reading taken -> its ack, per reading: the ack leaves the collector after InfluxDB
    # accepted the write, so the reading was queryable by then (an upper bound).
    ages_ms: list[float] = field(default_factory=list)


class SimGateway:
    """A gateway of ``plan``; ``values_for(profile, seed)`` gives each sensor's values."""

    def __init__(self, plan: SitePlan, values_for: Callable[[str, int], tuple[str, str, Values]],
                 *, start_ns: int, seed: int, batch_size: int = BATCH_SIZE,
                 max_in_flight: int = MAX_IN_FLIGHT, ack_timeout: float = ACK_TIMEOUT_S,
                 max_readings: int = MAX_OUTBOX_READINGS, epoch: str | None = None,
                 rate: float = 1.0) -> None:
        """``rate``: readings come this many times as often as the site plan says."""
        self.plan = plan
        self.id = plan.gateway
        rng = random.Random(seed)
        self.epoch = epoch or f"{rng.getrandbits(64):016x}"
        self.boot = f"{rng.getrandbits(32):08x}"
        self.rng = rng
        self.sensors: list[SimSensor] = []
        for k, s in enumerate(plan.sensors):
            model, measurement, values = values_for(s.profile, seed * 16 + k)
            interval = int(s.interval * 1e9 / rate)
            # Sensors started at some moment within their interval, not all at once.
            self.sensors.append(SimSensor(s.id, model, measurement, interval, values,
                                          start_ns + rng.randrange(interval)))
        self.meta = {s.id: {"model": s.model} for s in self.sensors}
        self.site = {"district": plan.district, "site": plan.site, "kind": plan.kind}
        self.batch_size, self.max_in_flight, self.ack_timeout = (batch_size, max_in_flight,
                                                                  ack_timeout)
        self.max_readings = max_readings
        self.outbox: dict[int, Reading] = {}
        self.seq = 0
        self.durable_seq = 0
        self.clock_skew_ns = 0  # a fault: the wall clock is off and not synchronised
        self.stats = GatewayStats()
        self._sent_at: dict[int, float] = {}
        self.window = self._new_window()

    def _new_window(self) -> DeliveryWindow:
        # After a restart the window is empty and batch ids start anywhere (as the agent's).
        self._batch_id = self.rng.randrange(1 << 30)
        self._sent_at.clear()
        return DeliveryWindow(max_in_flight=self.max_in_flight, ack_timeout=self.ack_timeout,
                              batch_size=self.batch_size, durable_seq=self.durable_seq)

    # -- readings ---------------------------------------------------------------
    def preload(self, readings: Iterable[Reading]) -> None:
        """Readings already in the outbox (an identity test, a backlog), committed."""
        for r in readings:
            self.seq = max(self.seq, r.seq)
            self.outbox[r.seq] = r
            self.stats.readings += 1
        self.durable_seq = self.seq
        self.window = self._new_window()

    def take_readings(self, wall_ns: int, mono_ns: int) -> None:
        """Every reading each sensor has taken up to ``wall_ns``, stored with its seq."""
        skew = self.clock_skew_ns
        for s in self.sensors:
            while s.next_ns <= wall_ns:
                self.seq += 1
                self.outbox[self.seq] = Reading(
                    sensor=s.id, measurement=s.measurement, fields=s.values(),
                    time_ns=s.next_ns + skew, boot=self.boot,
                    mono_ns=mono_ns - (wall_ns - s.next_ns), synced=not skew, seq=self.seq)
                self.stats.readings += 1
                s.next_ns += s.interval_ns
        self._bound()

    def _bound(self) -> None:
        """Past ``max_readings``, drop the oldest (the outbox's default policy), counted. A
        dropped reading still in flight is simply not there when its ack comes."""
        over = len(self.outbox) - self.max_readings
        if over <= 0:
            return
        for seq in list(self.outbox)[:over]:
            del self.outbox[seq]
        self.stats.dropped += over

    def commit(self) -> None:
        """The commit window closed: everything taken so far may leave the gateway."""
        self.durable_seq = self.seq

    def restart(self) -> None:
        """The agent restarted: committed readings stay, the window and batch ids start over,
        readings taken since the last commit are lost with the process (at most one window)."""
        for seq in range(self.durable_seq + 1, self.seq + 1):
            self.outbox.pop(seq, None)
        self.seq = self.durable_seq
        self.stats.restarts += 1
        self.window = self._new_window()

    # -- uplink -----------------------------------------------------------------
    def take_batches(self, now_s: float, wall_ns: int, mono_ns: int) -> list[bytes]:
        """Expire late batches, then fill the window: the payloads to publish now."""
        self.stats.resent_batches += self.window.expire(now_s)
        out: list[bytes] = []
        while (plan := self.window.plan(self.durable_seq)) is not None:
            if isinstance(plan, SendNew):
                rows = self._fetch_after(plan.after, plan.upto, plan.limit)
                if not rows:
                    self.window.advance(plan, plan.upto)
                    continue
            else:
                assert isinstance(plan, Resend)
                rows = self._fetch_seqs(plan.seqs, plan.limit)
                if not rows:
                    continue
            self._batch_id += 1
            batch = self._batch(rows, wall_ns, mono_ns)
            out.append(encode_batch(batch))
            self.window.sent(batch.batch_id, batch.all_seqs(), now_s, plan)
            self._sent_at[batch.batch_id] = now_s
            self.stats.batches_sent += 1
        return out

    def _fetch_after(self, after: int, upto: int, limit: int) -> list[Reading]:
        rows: list[Reading] = []
        outbox = self.outbox
        for seq in range(after + 1, upto + 1):
            r = outbox.get(seq)
            if r is not None:
                rows.append(r)
                if len(rows) >= limit:
                    break
        return rows

    def _fetch_seqs(self, seqs: SeqRanges, limit: int) -> list[Reading]:
        rows: list[Reading] = []
        for lo, hi in seqs.ranges:
            for seq in range(lo, hi + 1):
                r = self.outbox.get(seq)
                if r is not None:
                    rows.append(r)
                    if len(rows) >= limit:
                        return rows
        return rows

    def _batch(self, rows: list[Reading], wall_ns: int, mono_ns: int) -> Batch:
        used = {r.sensor for r in rows}
        return Batch(gateway=self.id, epoch=self.epoch, batch_id=self._batch_id,
                     sent_ns=wall_ns + self.clock_skew_ns, clock_synced=not self.clock_skew_ns,
                     boot=self.boot, mono_ns=mono_ns, site=self.site,
                     sensors={k: v for k, v in self.meta.items() if k in used},
                     readings=tuple(rows))

    def on_ack(self, payload: bytes, now_s: float, mono_ns: int | None = None) -> int:
        """Apply an ack (unsealed: the fleet runs without a registry); returns readings
        deleted. With ``mono_ns`` (the clock ``take_readings`` got), each deleted reading's
        age is noted (``ages_ms``): by the monotonic clock, so a skewed wall clock does not
        count."""
        try:
            ack: Ack = decode_ack(payload)
        except PayloadError:
            self.stats.bad_acks += 1
            return 0
        if ack.gateway != self.id or ack.epoch != self.epoch:
            self.stats.bad_acks += 1
            return 0
        result = self.window.acked(ack.batch_id, ack.seqs)
        sent = self._sent_at.pop(ack.batch_id, None)
        if sent is not None and result.known:
            lat = self.stats.latencies_ms
            if len(lat) >= MAX_LATENCIES:
                del lat[: MAX_LATENCIES // 2]
            lat.append((now_s - sent) * 1000.0)
        deleted = 0
        ages = self.stats.ages_ms
        for lo, hi in result.confirmed.ranges:
            for seq in range(lo, hi + 1):
                r = self.outbox.pop(seq, None)
                if r is not None:
                    deleted += 1
                    if mono_ns is not None:
                        if len(ages) >= MAX_LATENCIES:
                            del ages[: MAX_LATENCIES // 2]
                        ages.append((mono_ns - r.mono_ns) / 1e6)
        self.stats.acked += deleted
        if len(self._sent_at) > 4 * MAX_LATENCIES:  # ids of batches resent under new ids
            for bid in list(self._sent_at)[: 2 * MAX_LATENCIES]:
                del self._sent_at[bid]
        return deleted

    @property
    def depth(self) -> int:
        return len(self.outbox)
