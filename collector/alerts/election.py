"""Who evaluates alerts when collectors on several hosts share one broker: a sans-IO election.

Each candidate (a collector with ``lease: mqtt``) keeps a retained candidacy on
``{prefix}/collectors/alerts/lease/{holder}``, with a last will that clears it,
and subscribes to everyone's. The live candidacy with the lowest rank leads.
This module decides; collector/alerts/mqtt_lease.py moves the bytes. Nothing
here reads a clock: ``now`` (seconds on a clock that never goes back, for
every duration; the adapter's counts a suspend too) and ``wall_ns`` (only to
seed a rank) are passed in, as h11 is passed bytes.

The rules, and why they keep two leaders apart (docs/alerts.md, "Several
collectors", says the same for operators):

1. **Rank.** A candidate first sends itself a probe (not retained). When the
   probe comes back, every retained candidacy has come back before it (the
   broker answers one connection in order), and the candidate stands with
   ``rank = max(wall_ns, highest rank seen + 1)``. A newcomer therefore ranks
   after everyone already standing, whatever the hosts' clocks say: the
   leader changes only when the leader goes.
2. **Live.** Another holder's candidacy is live from its message until that
   holder's empty message (its will, or its release), or until it has not been
   refreshed for ``ghost_after`` (three keepalives; a candidacy whose holder
   died while the broker was down has no will left to clear it).
3. **Lead.** A candidate leads while its candidacy stands, came back at least
   ``settle`` ago (a candidacy published at the same moment as ours reaches us
   within that), is the lowest live rank, and its latest refresh that came back
   was *sent* less than one keepalive ago. The broker publishes a silent
   client's will only after one and a half keepalives (MQTT 5, 3.1.2.10)
   counted from the last packet it received, which was sent no earlier; so a
   leader cut off from the broker stops leading half a keepalive before anyone
   can learn that it is gone.
4. **No revival.** A candidacy that failed (connection lost, lead window
   lapsed, cleared under its holder) is withdrawn and never refreshed again;
   its holder probes anew and stands with a new, higher rank. A partitioned
   leader that comes back queues behind whoever took over.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass

from collector.alerts.errors import AlertError

WIRE_VERSION = 1
# Start-up only: how long a fresh candidacy waits before it may lead. Another
# candidacy published while ours was on its way reaches us within a round trip
# to the broker (milliseconds on a LAN); two seconds leave room for a loaded one.
SETTLE_S = 2.0
# A standing candidacy is re-sent this many times per keepalive: one lost or
# late refresh must not cost the lead window (one keepalive).
REFRESHES_PER_KEEPALIVE = 3
# Twice the broker's own 1.5 keepalives: only a candidacy no will can clear
# (its holder died while the broker was down) waits this long.
GHOST_KEEPALIVES = 3.0
# Refreshes awaiting their echo that we keep the send time of.
MAX_UNCONFIRMED = 16


class LeaseWireError(AlertError):
    """A lease message we cannot read (another process sent bad bytes); it is ignored, counted."""


@dataclass(frozen=True, slots=True)
class Candidacy:
    """A holder's claim, retained on its own topic.

    holder: the collector's id (its MQTT client id), also the topic's last level.
    rank: orders the candidates, lowest leads (wall-clock ns when the candidacy
        began, raised past every rank its holder had seen).
    beat: counts the refreshes of this candidacy; its echo confirms one send.
    """

    holder: str
    rank: int
    beat: int = 0

    def __post_init__(self) -> None:
        if not self.holder or self.rank < 0 or self.beat < 0:
            raise ValueError(f"bad candidacy {self!r}")


@dataclass(frozen=True, slots=True)
class Probe:
    """Sent (not retained) by a holder to itself; its echo says the retained candidacies are in.

    n: which probe of this holder (only the latest one counts).
    """

    holder: str
    n: int


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """An empty retained message on a holder's topic: its will, its release, or a ghost cleared."""

    holder: str


LeaseMessage = Candidacy | Probe | Withdrawn


def encode(message: LeaseMessage) -> tuple[bytes, bool]:
    """The payload for the holder's topic, and whether it is retained."""
    if isinstance(message, Withdrawn):
        return b"", True
    if isinstance(message, Probe):
        doc: dict[str, object] = {"v": WIRE_VERSION, "holder": message.holder, "probe": message.n}
        return json.dumps(doc).encode(), False
    doc = {"v": WIRE_VERSION, "holder": message.holder, "rank": message.rank, "beat": message.beat}
    return json.dumps(doc).encode(), True


def _count(doc: dict[str, object], key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LeaseWireError(f"{key} must be a count, got {value!r:.40}")
    return value


def decode(holder: str, payload: bytes) -> LeaseMessage:
    """A message from ``.../lease/{holder}``; raises LeaseWireError, never anything else."""
    if not payload:
        return Withdrawn(holder)
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the stack
        raise LeaseWireError("not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != WIRE_VERSION:
        raise LeaseWireError(f"not a version {WIRE_VERSION} lease message")
    if doc.get("holder") != holder:
        raise LeaseWireError(f"holder {doc.get('holder')!r:.40} on {holder!r}'s topic")
    if "probe" in doc:
        return Probe(holder, _count(doc, "probe"))
    return Candidacy(holder, _count(doc, "rank"), _count(doc, "beat"))


def leader_of(candidacies: Iterable[Candidacy]) -> Candidacy | None:
    """The lowest (rank, holder): every candidate that sees the same set picks the same one."""
    return min(candidacies, key=lambda c: (c.rank, c.holder), default=None)


class Phase(enum.Enum):
    OFFLINE = "offline"  # no connection to the broker
    PROBING = "probing"  # connected; our probe has not come back yet
    STANDING = "standing"  # our candidacy is out (it may or may not lead)
    RELEASED = "released"  # withdrawn for good: the collector is shutting down


@dataclass
class ElectionStats:
    probes: int = 0
    lapses: int = 0  # lead windows that ran out (no refresh came back in time)
    cleared_under_us: int = 0
    ghosts_cleared: int = 0


class Election:
    """One candidate's view. Inputs return the messages to publish, in order."""

    def __init__(self, holder: str, keepalive: float, settle: float = SETTLE_S) -> None:
        if not holder or keepalive <= 0 or settle < 0:
            raise ValueError("an election needs a holder, a keepalive > 0 and a settle >= 0")
        self.holder = holder
        self.lead_for = float(keepalive)
        self.refresh_every = keepalive / REFRESHES_PER_KEEPALIVE
        self.ghost_after = keepalive * GHOST_KEEPALIVES
        self.settle = settle
        self.phase = Phase.OFFLINE
        self.stats = ElectionStats()
        self.floor = 0  # the highest rank seen anywhere
        self.mine: Candidacy | None = None
        self.others: dict[str, tuple[Candidacy, float]] = {}  # holder -> (candidacy, heard at)
        self._probe_at = 0.0
        self._sent: dict[int, float] = {}  # beat -> when it was sent, until it comes back
        self._last_sent = 0.0
        self._stood_at = 0.0
        self._confirmed: float | None = None  # send time of the latest beat that came back
        self._settled_at: float | None = None

    # -- inputs ------------------------------------------------------------------
    def connected(self, now: float) -> list[LeaseMessage]:
        """A new connection (subscribed to every candidacy): start over with a probe."""
        if self.phase is Phase.RELEASED:
            return []
        self.others.clear()  # the retained ones come again
        return self._start_over(now)

    def disconnected(self) -> None:
        if self.phase is not Phase.RELEASED:
            self.phase = Phase.OFFLINE
            self.mine = None
            self._sent.clear()

    def note_rank(self, rank: int) -> None:
        """A rank seen elsewhere (the handed-over state's): our next candidacy ranks above it."""
        self.floor = max(self.floor, rank)

    def receive(self, message: LeaseMessage, now: float, wall_ns: int) -> list[LeaseMessage]:
        if self.phase in (Phase.OFFLINE, Phase.RELEASED):
            return []
        if isinstance(message, Probe):
            return self._on_probe(message, now, wall_ns)
        if isinstance(message, Candidacy):
            self.floor = max(self.floor, message.rank)
            if message.holder != self.holder:
                self.others[message.holder] = (message, now)
            elif self.mine is not None and message.rank == self.mine.rank:
                self._confirm(message.beat, now)
            # Any other candidacy of our own is from an earlier connection: ours replaces it.
            return []
        if message.holder != self.holder:
            self.others.pop(message.holder, None)
            return []
        if self.phase is Phase.STANDING:
            # Cleared under us: a stale will of an earlier connection, or a peer
            # that took us for a ghost. Never revive a candidacy: start over.
            self.stats.cleared_under_us += 1
            return self._start_over(now)
        return []  # the echo of our own withdrawal while probing

    def tick(self, now: float) -> list[LeaseMessage]:
        """Refresh, retry, lapse and clear ghosts; call it a few times per refresh interval."""
        out: list[LeaseMessage] = []
        if self.phase in (Phase.OFFLINE, Phase.RELEASED):
            return out
        if self._fresh(now):
            # Only a view kept current (our own refresh came back within a
            # keepalive) may call a silent candidacy dead and clear it.
            for holder, (_, heard) in list(self.others.items()):
                if now - heard >= self.ghost_after:
                    del self.others[holder]
                    self.stats.ghosts_cleared += 1
                    out.append(Withdrawn(holder))
        if self.phase is Phase.PROBING:
            if now - self._probe_at >= self.refresh_every:
                out += self._start_over(now)
            return out
        assert self.mine is not None
        if not self._fresh(now):
            self.stats.lapses += 1
            return out + self._start_over(now)
        if now - self._last_sent >= self.refresh_every:
            out.append(self._send(now, Candidacy(self.holder, self.mine.rank, self.mine.beat + 1)))
        return out

    def release(self) -> list[LeaseMessage]:
        """Step down for good (shutdown): publish the returned withdrawal, then disconnect."""
        was = self.phase
        self.phase = Phase.RELEASED
        self.mine = None
        return [] if was in (Phase.OFFLINE, Phase.RELEASED) else [Withdrawn(self.holder)]

    # -- queries ------------------------------------------------------------------
    def live(self, now: float) -> list[Candidacy]:
        out = [c for c, heard in self.others.values() if now - heard < self.ghost_after]
        if self.phase is Phase.STANDING and self.mine is not None:
            out.append(self.mine)
        return out

    def leader(self, now: float) -> str | None:
        """Who leads as far as this candidate can tell (None while it cannot tell)."""
        if self.phase is not Phase.STANDING:
            return None
        found = leader_of(self.live(now))
        return found.holder if found is not None else None

    def settled(self, now: float) -> bool:
        """Our candidacy came back and the settle time has passed: ``leading`` means something."""
        return (self.phase is Phase.STANDING and self._settled_at is not None
                and now >= self._settled_at)

    def leading(self, now: float) -> bool:
        return self.settled(now) and self._fresh(now) and self.leader(now) == self.holder

    @property
    def rank(self) -> int | None:
        return self.mine.rank if self.mine is not None else None

    # -- internals ---------------------------------------------------------------
    def _fresh(self, now: float) -> bool:
        """Our latest confirmed send (or, before any, our first send) is within the lead window."""
        if self.phase is not Phase.STANDING:
            return False
        since = self._confirmed if self._confirmed is not None else self._stood_at
        return now < since + self.lead_for

    def _start_over(self, now: float) -> list[LeaseMessage]:
        self.phase = Phase.PROBING
        self.mine = None
        self._sent.clear()
        self._confirmed = self._settled_at = None
        self.stats.probes += 1
        self._probe_at = now
        # Withdraw first: whatever candidacy of ours is still retained has failed.
        return [Withdrawn(self.holder), Probe(self.holder, self.stats.probes)]

    def _on_probe(self, probe: Probe, now: float, wall_ns: int) -> list[LeaseMessage]:
        if probe.holder != self.holder or self.phase is not Phase.PROBING:
            return []
        if probe.n != self.stats.probes:
            return []  # an earlier probe: only the latest one says everything is in
        self.phase = Phase.STANDING
        self._stood_at = now
        return [self._send(now, Candidacy(self.holder, max(wall_ns, self.floor + 1)))]

    def _send(self, now: float, candidacy: Candidacy) -> Candidacy:
        self.mine = candidacy
        self._sent[candidacy.beat] = now
        while len(self._sent) > MAX_UNCONFIRMED:
            del self._sent[min(self._sent)]
        self._last_sent = now
        return candidacy

    def _confirm(self, beat: int, now: float) -> None:
        sent = self._sent.pop(beat, None)
        if sent is None:
            return
        for older in [b for b in self._sent if b < beat]:
            del self._sent[older]
        self._confirmed = sent if self._confirmed is None else max(self._confirmed, sent)
        if self._settled_at is None:
            self._settled_at = now + self.settle
