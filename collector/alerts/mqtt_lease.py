"""``lease: mqtt``: the election's and the alert state's side of the wire (a thin adapter).

collector/alerts/election.py decides who leads; this module only moves bytes.
It holds its own connection (client id ``{client_id}-lease``, the collector's
broker, credentials and keepalive, a clean session, and a last will that
empties our candidacy), subscribes to the alert state and to every
candidacy, feeds the election what arrives, publishes what the election
returns (QoS 0: a lost message is covered by the next refresh, and nothing
stale is resent after a reconnect), ticks it, and keeps the newest alert
state messages for a takeover (collector/alerts/handover.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from cityedge.mqtt import Message, MqttClient, MqttOptions, Will
from cityedge.uplink import Topics
from collector.alerts.election import (
    SETTLE_S,
    Election,
    LeaseMessage,
    LeaseWireError,
    Phase,
    Withdrawn,
    decode,
    encode,
)
from collector.alerts.errors import UsageError
from collector.alerts.handover import (
    MAX_STATE_BYTES,
    HandoverError,
    Header,
    Version,
    decode_header,
    keep,
)
from collector.alerts.mqtt_feed import BrokerConfig

log = logging.getLogger(__name__)

# How long start() waits for the election to settle before the collector goes
# on (standing by until it does): the settle time plus a few round trips.
START_WAIT_S = SETTLE_S + 8.0
# How long close() waits to see its candidacy emptied; past it the others wait
# for the candidacy to go stale (GHOST_KEEPALIVES) instead.
RELEASE_WAIT_S = 3.0


def boottime() -> float:
    """Seconds that go on counting while the host is suspended: the lease's clock.

    CLOCK_MONOTONIC stops during a suspend, so a leader suspended past its lead
    window would resume still leading by its own count, while the broker had
    dropped it and another collector led. Linux's CLOCK_BOOTTIME counts the
    suspend; where there is none this is time.monotonic().
    """
    clock_id: int | None = getattr(time, "CLOCK_BOOTTIME", None)
    return time.monotonic() if clock_id is None else time.clock_gettime(clock_id)


@dataclass
class MqttLeaseStats:
    bad_messages: int = 0
    states_published: int = 0
    states_too_big: int = 0
    states_republished: int = 0


class MqttLease:
    """Implements collector.alerts.lease.Lease over the collectors' broker."""

    def __init__(self, config: BrokerConfig, holder: str, *, settle: float = SETTLE_S,
                 monotonic: Callable[[], float] = boottime,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix)
        try:
            self.own_topic = self.topics.alert_lease(holder)
        except ValueError as exc:
            raise UsageError(f"alerts lease: the collector id {exc}") from None
        self.holder = holder
        self.election = Election(holder, config.keepalive, settle)
        self.monotonic, self.wall_ns = monotonic, wall_ns
        self.on_change: Callable[[], None] | None = None
        self.stats = MqttLeaseStats()
        self.client: MqttClient | None = None
        self._generation = -1
        self._was_held = False
        self._last_rank: int | None = None
        self._states: list[tuple[Header, bytes]] = []  # newest first (handover.keep)
        self._published: tuple[Version, bytes] | None = None
        self._released: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- the Lease interface -----------------------------------------------------------
    @property
    def held(self) -> bool:
        return (self.client is not None and self.client.connected.is_set()
                and self.election.leading(self.monotonic()))

    @property
    def term(self) -> tuple[int, str] | None:
        """The rank we stand (or last stood) with. The runner takes it once, when it takes
        over, and versions every save of that term with it: after a step-down the
        election stands again at once with a higher rank, which is not the term those
        saves belong to."""
        return None if self._last_rank is None else (self._last_rank, self.holder)

    def note_rank(self, rank: int) -> None:
        self.election.note_rank(rank)

    async def start(self, wait: float = START_WAIT_S) -> None:
        c = self.config
        self._released = asyncio.Event()
        self.client = MqttClient(MqttOptions(
            host=c.host, port=c.port, client_id=f"{c.client_id}-lease", keepalive=c.keepalive,
            username=c.username, password=c.password, clean_start=True, session_expiry=0,
            will=Will(self.own_topic, b"", qos=0, retain=True), tls=c.tls,
            # The state first: its rank is in by the time our probe comes back.
            subscriptions=[(self.topics.alert_state(), 1),
                           (self.topics.alert_lease_subscription(), 0)]))
        self.client.on_connect = self._on_connect
        self.client.start()
        self._tasks = [asyncio.create_task(self._read_loop(), name="alerts-lease-read"),
                       asyncio.create_task(self._timer_loop(), name="alerts-lease-timer")]
        deadline = self.monotonic() + wait
        while not self.election.settled(self.monotonic()) and self.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not self.election.settled(self.monotonic()):
            log.warning("alerts: no lease decision from %s:%d within %g s (%s); standing by",
                        c.host, c.port, wait, self.client.stats.last_error or "no answer")

    def poll(self) -> None:
        """Nothing to do: the lease runs its own tasks."""

    def describe(self) -> str:
        now = self.monotonic()
        others = sorted(h for h in self.election.others if h != self.holder)
        return (f"mqtt lease as {self.holder} on {self.config.host}:{self.config.port}: "
                f"{self.election.phase.value}, leader {self.election.leader(now) or '?'}, "
                f"other candidates {', '.join(others) or 'none'}")

    def health_fields(self) -> dict[str, int]:
        """The wire's counters and the election's: unusable messages, state hand-overs,
        lead windows that lapsed, and stale holders cleared."""
        e, w = self.election.stats, self.stats
        return {"lease_bad_messages": w.bad_messages, "lease_states_published":
                w.states_published, "lease_states_too_big": w.states_too_big,
                "lease_states_republished": w.states_republished, "lease_probes": e.probes,
                "lease_lapses": e.lapses, "lease_cleared_under_us": e.cleared_under_us,
                "lease_ghosts_cleared": e.ghosts_cleared}

    def handed_over(self) -> list[tuple[Header, bytes]]:
        """The newest alert state messages seen on the broker (their headers read), newest
        first; a takeover restores the first one that decodes and restores."""
        return list(self._states)

    def publish_state(self, payload: bytes, version: Version) -> bool:
        """Retain our alert state for the next leader; only while we hold the lease."""
        if len(payload) > MAX_STATE_BYTES:
            self.stats.states_too_big += 1
            log.warning("alerts: state of %d bytes is over the %d-byte limit for a retained "
                        "message; not handed over (a takeover restores an older one)",
                        len(payload), MAX_STATE_BYTES)
            return False
        if not self.held or self.client is None:
            return False
        if not self.client.publish(self.topics.alert_state(), payload, qos=1, retain=True):
            return False
        self._published = (version, payload)
        self.stats.states_published += 1
        return True

    async def close(self, wait: float = RELEASE_WAIT_S) -> None:
        """Withdraw (so a standby takes over at once), then disconnect."""
        if self.client is None:
            return
        withdrawal = self.election.release()
        self._changed()
        if withdrawal and self.client.connected.is_set() and self._released is not None:
            self._send(withdrawal)
            try:
                await asyncio.wait_for(self._released.wait(), wait)
            except TimeoutError:
                log.warning("alerts: our lease candidacy was not seen withdrawn within %g s; "
                            "the other collectors take over when it goes stale", wait)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.client.close()

    # -- what arrives ---------------------------------------------------------------------
    def handle(self, message: Message) -> None:
        if message.topic == self.topics.alert_state():
            self._on_state(message.payload)
            return
        holder = self.topics.alert_lease_holder(message.topic)
        if holder is None:
            return
        try:
            lease_message = decode(holder, message.payload)
        except LeaseWireError as exc:
            self.stats.bad_messages += 1
            log.warning("alerts: ignoring a lease message on %s: %s", message.topic, exc)
            return
        if self.election.phase is Phase.RELEASED:
            if lease_message == Withdrawn(self.holder) and self._released is not None:
                self._released.set()
            return
        self._send(self.election.receive(lease_message, self.monotonic(), self.wall_ns()))
        self._changed()

    def _on_state(self, payload: bytes) -> None:
        if not payload:
            self._states = []  # emptied by hand: there is nothing to hand over
            return
        try:
            header = decode_header(payload)
        except HandoverError as exc:
            self.stats.bad_messages += 1
            log.warning("alerts: ignoring the alert state message: %s", exc)
            return
        self.election.note_rank(header.version.rank)
        self._states = keep(self._states, header, payload)
        mine = self._published
        if mine is not None and header.version < mine[0] and self.held and self.client:
            # A deposed leader's late save replaced ours: put ours back.
            self.stats.states_republished += 1
            self.client.publish(self.topics.alert_state(), mine[1], qos=1, retain=True)

    def _on_connect(self) -> None:
        assert self.client is not None
        self._generation = self.client.generation
        self._send(self.election.connected(self.monotonic()))
        self._changed()

    async def _read_loop(self) -> None:
        assert self.client is not None
        while True:
            message = await self.client.get()
            if message.generation != self._generation:
                continue  # from a connection already gone
            try:
                self.handle(message)
            except Exception:  # a message we failed on must not stop the lease: count, go on
                self.stats.bad_messages += 1
                log.exception("alerts: a lease message on %s failed", message.topic)

    async def _timer_loop(self) -> None:
        assert self.client is not None
        period = min(1.0, max(0.05, self.election.refresh_every / 4))
        while True:
            await asyncio.sleep(period)
            try:
                if not self.client.connected.is_set() and self.election.phase in (
                        Phase.PROBING, Phase.STANDING):
                    self.election.disconnected()
                self._send(self.election.tick(self.monotonic()))
                self._changed()
            except Exception:  # one bad tick must not stop the lease (nor the next takeover)
                log.exception("alerts: lease tick failed")

    def _send(self, messages: list[LeaseMessage]) -> None:
        if self.client is None:
            return
        for m in messages:
            payload, retain = encode(m)
            self.client.publish(self.topics.alert_lease(m.holder), payload, qos=0, retain=retain)

    def _changed(self) -> None:
        if self.election.rank is not None:
            self._last_rank = self.election.rank
        held = self.held
        if held != self._was_held:
            self._was_held = held
            if self.on_change is not None:
                self.on_change()
