"""``lease: etcd``: the election's and the handed-over state's side of the wire (a thin adapter).

collector/alerts/etcd_election.py decides who leads and etcd_wire.py reads
and writes the gateway's JSON; this module only sends: one loop asks the
election for its next request, POSTs it to etcd's HTTP/JSON gateway
(aiohttp, no client library: four endpoints), and feeds the answer back with
the time the request was sent. A request that fails moves on to the next
configured endpoint. ``publish_state`` writes the open alerts for the next
leader, and ``write_ahead`` the state with the outbox of transitions pending
delivery (write_ahead.py), both fenced by the leader key's create revision
(our token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from collector.alerts import etcd_wire as wire
from collector.alerts.config import EtcdConfig
from collector.alerts.etcd_election import Campaign, EtcdElection, Grant, KeepAlive, Revoke
from collector.alerts.handover import MAX_STATE_BYTES, HandoverError, Header, Version, decode_header

log = logging.getLogger(__name__)

# How long start() waits for a first decision before the collector goes on
# (standing by until there is one): a grant and a campaign, with room for a slow etcd.
START_WAIT_S = 5.0
# How long close() waits for etcd to revoke our lease; past it the key expires by itself.
REVOKE_WAIT_S = 2.0


def boottime() -> float:
    """Seconds that go on counting while the host is suspended: the lease's clock.

    CLOCK_MONOTONIC stops during a suspend, so a leader suspended past its lead
    window would resume still leading by its own count, while etcd had expired
    its lease and another collector led. Linux's CLOCK_BOOTTIME counts the
    suspend; where there is none this is time.monotonic().
    """
    clock_id: int | None = getattr(time, "CLOCK_BOOTTIME", None)
    return time.monotonic() if clock_id is None else time.clock_gettime(clock_id)


@dataclass
class EtcdLeaseStats:
    states_published: int = 0
    states_fenced: int = 0  # refused by etcd: another leader's key (we were deposed)
    states_too_big: int = 0
    state_errors: int = 0  # state writes with no answer
    bad_states: int = 0  # handed-over states whose header is unreadable
    endpoint_switches: int = 0


class EtcdLease:
    """Implements collector.alerts.lease.Lease on etcd."""

    def __init__(self, config: EtcdConfig, holder: str, *,
                 monotonic: Callable[[], float] = boottime) -> None:
        if not holder:
            raise ValueError("an etcd lease needs a holder id")
        self.config = config
        self.keys = wire.Keys(config.prefix.rstrip("/"))
        self.holder = holder
        self.election = EtcdElection(holder, config.ttl)
        self.monotonic = monotonic
        self.on_change: Callable[[], None] | None = None
        self.stats = EtcdLeaseStats()
        self._endpoint = 0
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._states: list[tuple[Header, bytes]] = []
        self._outbox: bytes | None = None
        self._was_held = False
        self._decided = asyncio.Event()

    # -- the Lease interface -----------------------------------------------------------
    @property
    def held(self) -> bool:
        return self.election.leading(self.monotonic())

    @property
    def token(self) -> int | None:
        """The fencing token (the leader key's create revision) while we lead."""
        return self.election.token if self.held else None

    @property
    def term(self) -> tuple[int, str] | None:
        """(token, holder): the runner versions every save of the term it took over with it."""
        token = self.election.token
        return None if token is None else (token, self.holder)

    async def start(self, wait: float = START_WAIT_S) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout))
        self._task = asyncio.create_task(self._loop(), name="alerts-etcd-lease")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._decided.wait(), wait)
        if not self._decided.is_set():
            log.warning("alerts: no answer from etcd at %s within %g s; standing by",
                        self.url, wait)

    def poll(self) -> None:
        """Nothing to do: the lease runs its own task."""

    @property
    def url(self) -> str:
        return self.config.endpoints[self._endpoint % len(self.config.endpoints)]

    def describe(self) -> str:
        e = self.election
        return (f"etcd lease as {self.holder} on {self.url}: {e.phase.value}, "
                f"leader {e.leader_seen or '?'}, token {e.token or '-'}")

    def health_fields(self) -> dict[str, int]:
        e, w = self.election.stats, self.stats
        return {"lease_grants": e.grants, "lease_campaigns": e.campaigns,
                "lease_elected": e.elected, "lease_lapses": e.lapses,
                "lease_lost": e.leases_lost, "lease_failures": e.failures,
                "lease_states_published": w.states_published,
                "lease_states_fenced": w.states_fenced, "lease_states_too_big": w.states_too_big,
                "lease_state_errors": w.state_errors, "lease_bad_states": w.bad_states,
                "lease_endpoint_switches": w.endpoint_switches}

    def handed_over(self) -> list[tuple[Header, bytes]]:
        """The state etcd held when we won (read in the winning transaction), if any."""
        return list(self._states)

    def handed_over_outbox(self) -> bytes | None:
        """The outbox etcd held when we won (read in the winning transaction), if any."""
        return self._outbox

    async def write_ahead(self, token: int, state: bytes | None, outbox: bytes) -> bool:
        """Put the outbox (and the state) while etcd has our key: True if put, False if the
        key is not ours; raises the wire's, aiohttp's or a timeout's error on no answer."""
        doc = await self._post(wire.TXN, wire.write_ahead_body(self.keys, token, state, outbox))
        if not wire.put_fenced(doc):
            return False
        if state is not None:
            self.stats.states_published += 1
        return True

    async def publish_state(self, payload: bytes, version: Version) -> bool:
        """Write our alert state for the next leader, only while etcd has our key."""
        token = self.token
        if len(payload) > MAX_STATE_BYTES:
            self.stats.states_too_big += 1
            log.warning("alerts: state of %d bytes is over the %d-byte limit for etcd; not "
                        "handed over (a takeover restores an older one)",
                        len(payload), MAX_STATE_BYTES)
            return False
        if token is None or token != version.rank:
            return False
        try:
            doc = await self._post(wire.TXN, wire.fenced_put_body(self.keys, token, payload))
        except (wire.EtcdWireError, wire.LeaseNotFound, aiohttp.ClientError, TimeoutError) as exc:
            self.stats.state_errors += 1
            log.warning("alerts: handing the state over to etcd failed: %s", exc)
            return False
        if not wire.put_fenced(doc):
            self.stats.states_fenced += 1
            log.warning("alerts: etcd refused our state: the leader key is not ours (token %d)",
                        token)
            return False
        self.stats.states_published += 1
        return True

    async def close(self, wait: float = REVOKE_WAIT_S) -> None:
        """Revoke our lease (its key goes at once: a standby takes over), then stop."""
        lease = self.election.lease
        self.election.release()
        self._changed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is None:
            return
        if lease is not None:
            try:
                await asyncio.wait_for(self._post(wire.REVOKE, wire.lease_body(lease)), wait)
            except (wire.EtcdWireError, wire.LeaseNotFound, aiohttp.ClientError,
                    TimeoutError) as exc:
                log.warning("alerts: revoking our etcd lease failed (%s); the others take "
                            "over when it expires", exc)
        await self._session.close()

    # -- the loop ----------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the lease (nor the next takeover)
                log.exception("alerts: etcd lease step failed")
                self.election = _recovered(self.election)
                await asyncio.sleep(self.election.keepalive_every)

    async def _step(self) -> None:
        e = self.election
        now = self.monotonic()
        request = e.next_request(now)
        self._changed()
        if request is None:
            wake = e.wake_at(now)
            if e.leading(now):
                wake = min(wake, e.lead_until())
            await asyncio.sleep(max(0.01, wake - now))
            return
        sent = self.monotonic()
        try:
            doc = await self._send(request)
        except wire.LeaseNotFound:
            e.on_lease_unknown(sent)
        except (wire.EtcdWireError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            e.on_failed(sent)
            self._switch(exc)
        else:
            self._feed(request, doc, sent)
        self._changed()

    async def _send(self, request: Any) -> dict[str, Any]:
        if isinstance(request, Grant):
            return await self._post(wire.GRANT, wire.grant_body(request.ttl))
        if isinstance(request, KeepAlive):
            return await self._post(wire.KEEPALIVE, wire.lease_body(request.lease))
        if isinstance(request, Revoke):
            return await self._post(wire.REVOKE, wire.lease_body(request.lease))
        assert isinstance(request, Campaign)
        return await self._post(wire.TXN, wire.campaign_body(self.keys, request.lease,
                                                             self.holder))

    def _feed(self, request: Any, doc: dict[str, Any], sent: float) -> None:
        e = self.election
        if isinstance(request, Grant):
            e.on_granted(*wire.granted(doc), sent=sent)
        elif isinstance(request, KeepAlive):
            e.on_kept_alive(wire.kept_alive(doc), sent)
        elif isinstance(request, Revoke):
            e.on_revoked()
        else:
            answer = wire.campaigned(doc)
            if answer.won:
                self._states = self._read_state(answer.state)
                self._outbox = answer.outbox
            e.on_campaigned(won=answer.won, create_revision=answer.create_revision,
                            holder=answer.holder, sent=sent)
            self._decided.set()

    def _read_state(self, payload: bytes | None) -> list[tuple[Header, bytes]]:
        if not payload:
            return []
        try:
            return [(decode_header(payload), payload)]
        except HandoverError as exc:
            self.stats.bad_states += 1
            log.warning("alerts: ignoring the handed-over state in etcd: %s", exc)
            return []

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.post(self.url + path, json=body) as resp:
            text = await resp.text()
            return wire.parse(resp.status, text)

    def _switch(self, exc: BaseException) -> None:
        log.debug("alerts: etcd request to %s failed: %s", self.url, exc)
        if len(self.config.endpoints) > 1:
            self._endpoint += 1
            self.stats.endpoint_switches += 1

    def _changed(self) -> None:
        held = self.held
        if held != self._was_held:
            self._was_held = held
            if self.on_change is not None:
                self.on_change()


def _recovered(broken: EtcdElection) -> EtcdElection:
    """A fresh election after a bug, keeping the counters; the old lease expires by itself."""
    fresh = EtcdElection(broken.holder, int(broken.asked_ttl),
                         campaign_every=broken.campaign_every)
    fresh.stats = broken.stats
    return fresh
