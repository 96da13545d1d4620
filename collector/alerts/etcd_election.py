"""Who evaluates alerts when collectors on several hosts run: etcd's election recipe, sans-IO.

Each candidate (a collector with ``lease: etcd``) holds an etcd lease and,
in one transaction, creates ``{prefix}/leader`` bound to that lease if the
key does not exist (compare its create revision with 0). The one whose
transaction succeeds leads; the key's create revision is its **fencing
token**, which grows from one leader to the next (etcd's revision never goes
back). Everything the leader writes or notifies carries the token, and the
handed-over state is written only while the key still has that create
revision. This module decides; collector/alerts/etcd_lease.py moves the
bytes through etcd's HTTP/JSON gateway. Nothing here reads a clock: ``now``
(seconds on a clock that counts a suspend too) is passed in, as h11 is
passed bytes.

The rules (docs/alerts.md, "Several collectors", says the same for operators):

1. **One request at a time.** ``next_request(now)`` says what to send; the
   adapter sends it and feeds the answer (or the failure) back with the time
   it *sent* the request. Nothing else changes the state.
2. **The lead window.** etcd expires a lease ``ttl`` seconds after it last
   *received* a keepalive, which was after we sent it. A leader leads until
   ``ttl - margin`` after the send of its latest keepalive that etcd
   confirmed (or of the grant); so a leader cut off from etcd, or paused
   (SIGSTOP), stops leading before its key can expire and anyone else can
   create it.
3. **No revival.** A lease that lapsed, or that etcd no longer knows, is
   dropped (revoked if we can) and a new one granted; a deposed leader
   campaigns like any newcomer and, if it wins again, gets a new token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from collector.alerts.errors import AlertError

# Keepalives per lease TTL: etcd's own Go client (clientv3) sends one every TTL/3,
# so one lost or late keepalive does not cost the lease.
KEEPALIVES_PER_TTL = 3
# How much sooner than etcd a leader gives its lead up: clock rates of two hosts
# differ by far less than 1 % (NTP slews at most 0.05 %), plus a scheduling slip.
LEAD_MARGIN_FRACTION = 0.05
LEAD_MARGIN_MIN_S = 0.1
# A standby tries to take the key this often (seconds) at most: a leader killed
# with SIGKILL is replaced ttl + this after its last keepalive.
CAMPAIGN_EVERY_S = 0.5


class ElectionError(AlertError):
    """The adapter fed the election something it cannot use (a bug, not etcd's answer)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """Ask etcd for a new lease of ``ttl`` seconds."""

    ttl: int


@dataclass(frozen=True, slots=True)
class Campaign:
    """The transaction: create the leader key bound to ``lease`` unless it exists."""

    lease: int


@dataclass(frozen=True, slots=True)
class KeepAlive:
    lease: int


@dataclass(frozen=True, slots=True)
class Revoke:
    """Give a lease up: its key goes at once (a clean shutdown, or a lapsed lease)."""

    lease: int


Request = Grant | Campaign | KeepAlive | Revoke


class Phase(enum.Enum):
    NO_LEASE = "no lease"  # we must be granted one
    STANDBY = "standby"  # we hold a lease; someone else holds the key
    LEADER = "leader"  # we created the key: we lead while the window lasts
    RELEASED = "released"  # shutting down: never campaign again


@dataclass
class ElectionStats:
    grants: int = 0
    campaigns: int = 0
    elected: int = 0
    lapses: int = 0  # lead windows (or standby leases) that ran out unconfirmed
    leases_lost: int = 0  # etcd said our lease is gone
    failures: int = 0  # requests that got no usable answer


class EtcdElection:
    """One candidate's view. ``next_request`` then one of the ``on_*`` answers, in turn."""

    def __init__(self, holder: str, ttl: int, *, campaign_every: float = CAMPAIGN_EVERY_S) -> None:
        if not holder or ttl < 1 or campaign_every <= 0:
            raise ValueError("an election needs a holder, a ttl >= 1 s and a campaign period")
        self.holder = holder
        self.ttl = float(ttl)  # etcd may grant more (its minimum TTL); we use what it grants
        self.asked_ttl = ttl
        self.campaign_every = campaign_every
        self.phase = Phase.NO_LEASE
        self.stats = ElectionStats()
        self.lease: int | None = None
        self.token: int | None = None  # the leader key's create revision, while we lead
        self.leader_seen = ""  # who holds the key, as the last campaign saw it
        self._confirmed = 0.0  # send time of the latest answer that proves the lease alive
        self._kept_at = 0.0  # send time of the latest keepalive
        self._campaigned_at: float | None = None
        self._revoke: int | None = None  # a lease to give up before anything else
        self._pending: Request | None = None

    # -- what to send -------------------------------------------------------------------
    @property
    def keepalive_every(self) -> float:
        return self.ttl / KEEPALIVES_PER_TTL

    @property
    def margin(self) -> float:
        return max(LEAD_MARGIN_MIN_S, self.ttl * LEAD_MARGIN_FRACTION)

    def next_request(self, now: float) -> Request | None:
        """The request to send now, or None: ask again at ``wake_at``."""
        if self._pending is not None:
            raise ElectionError(f"{self._pending} is still awaiting its answer")
        self._expire(now)
        request = self._choose(now)
        self._pending = request
        return request

    def wake_at(self, now: float) -> float:
        """When ``next_request`` will have something to send (at most a keepalive away)."""
        if self.phase is Phase.RELEASED:
            return now + self.ttl
        if self.phase is Phase.NO_LEASE or self._revoke is not None:
            return now
        due = self._kept_at + self.keepalive_every
        if self.phase is Phase.STANDBY:
            last = self._campaigned_at
            due = min(due, now if last is None else last + self.campaign_every)
        return max(now, due)

    def _choose(self, now: float) -> Request | None:
        if self._revoke is not None:
            return Revoke(self._revoke)
        if self.phase is Phase.RELEASED:
            return None
        if self.phase is Phase.NO_LEASE:
            return Grant(self.asked_ttl)
        assert self.lease is not None
        if now >= self._kept_at + self.keepalive_every:
            return KeepAlive(self.lease)
        if self.phase is Phase.STANDBY and (
                self._campaigned_at is None or now >= self._campaigned_at + self.campaign_every):
            return Campaign(self.lease)
        return None

    # -- the answers --------------------------------------------------------------------
    def on_granted(self, lease: int, ttl: int, sent: float) -> None:
        self._answer(Grant)
        if lease <= 0 or ttl <= 0:
            raise ElectionError(f"lease {lease} of ttl {ttl} is no grant")
        if self.phase is Phase.RELEASED:
            self._revoke = lease  # granted while we were shutting down
            return
        self.stats.grants += 1
        self.lease, self.ttl = lease, float(ttl)
        self._confirmed = self._kept_at = sent
        self._campaigned_at = None
        self.phase = Phase.STANDBY

    def on_kept_alive(self, ttl: int, sent: float) -> None:
        """etcd's answer: the lease's remaining TTL, 0 if it no longer knows the lease."""
        self._answer(KeepAlive)
        self._kept_at = sent
        if self.phase in (Phase.NO_LEASE, Phase.RELEASED):
            return
        if ttl <= 0:
            self.stats.leases_lost += 1
            self._drop(revoke=False)
            return
        self._confirmed = max(self._confirmed, sent)

    def on_campaigned(self, *, won: bool, create_revision: int, holder: str,
                      sent: float) -> None:
        """The transaction's answer: won, or lost to whoever holds the key (its revision)."""
        self._answer(Campaign)
        self._campaigned_at = sent
        self.stats.campaigns += 1
        self.leader_seen = holder
        if self.phase is not Phase.STANDBY:
            if won and self.lease is not None:
                self._revoke = self.lease  # won after we let go: give the key up at once
            return
        if won:
            if create_revision <= 0:
                raise ElectionError(f"won with create revision {create_revision}")
            self.stats.elected += 1
            self.token = create_revision
            self.phase = Phase.LEADER

    def on_lease_unknown(self, sent: float) -> None:
        """etcd refused a request naming our lease: it has expired or was revoked."""
        refused = self._pending
        self._answer(None)
        if isinstance(refused, Revoke):
            self._revoke = None  # already gone: nothing left to give up (else asked forever)
        self._kept_at = max(self._kept_at, sent)
        if self.phase in (Phase.STANDBY, Phase.LEADER):
            self.stats.leases_lost += 1
            self._drop(revoke=False)

    def on_revoked(self) -> None:
        self._answer(Revoke)
        self._revoke = None

    def on_failed(self, sent: float) -> None:
        """No usable answer (timeout, connection refused, a 5xx): try again when due."""
        failed = self._pending
        self._answer(None)
        self.stats.failures += 1
        if isinstance(failed, KeepAlive):
            self._kept_at = sent  # retried one keepalive period later: not in a tight loop
        elif isinstance(failed, Campaign):
            self._campaigned_at = sent
        elif isinstance(failed, Revoke):
            self._revoke = None  # it expires by itself

    # -- shutting down ------------------------------------------------------------------
    def release(self) -> None:
        """Step down for good: the next request revokes our lease (its key goes at once)."""
        if self.lease is not None and self.phase in (Phase.STANDBY, Phase.LEADER):
            self._revoke = self.lease
        self.phase = Phase.RELEASED
        self.lease = self.token = None

    # -- queries ------------------------------------------------------------------------
    def leading(self, now: float) -> bool:
        return self.phase is Phase.LEADER and now < self._confirmed + self.ttl - self.margin

    def lead_until(self) -> float:
        """When the lead window closes unless a keepalive is confirmed (meaningful if leading)."""
        return self._confirmed + self.ttl - self.margin

    # -- internals ----------------------------------------------------------------------
    def _answer(self, kind: type | None) -> None:
        if self._pending is None or (kind is not None and not isinstance(self._pending, kind)):
            raise ElectionError(f"an answer to {kind} while awaiting {self._pending}")
        self._pending = None

    def _expire(self, now: float) -> None:
        lapsed_leader = self.phase is Phase.LEADER and not self.leading(now)
        lapsed_standby = self.phase is Phase.STANDBY and now >= self._confirmed + self.ttl
        if lapsed_leader or lapsed_standby:
            self.stats.lapses += 1
            self._drop(revoke=True)

    def _drop(self, *, revoke: bool) -> None:
        if revoke and self.lease is not None:
            self._revoke = self.lease  # if it still lives, its key goes now, not at expiry
        self.phase = Phase.NO_LEASE
        self.lease = self.token = None
