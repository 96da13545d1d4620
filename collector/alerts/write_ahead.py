"""``lease: etcd``: transitions written ahead to etcd before any notifier sees them (a thin shell).

outbox.py keeps the books; this module does the I/O around it. The runner
stages each transition for each notifier that takes it; one task writes: it
takes the next write from the outbox, dumps the alert state in the same step
(nothing runs in between, so the state holds exactly the transitions staged
so far), and puts both into etcd in one transaction fenced by our leader key
(EtcdLease.write_ahead). Only when etcd said yes do the transitions go to
their notifiers' queues. A notifier's outcome settles its entry, written as
soon as the writer is free, fenced the same way: settles made while a write
is in flight go together in the next one (batched under load, one etcd
round trip after the notifier's answer when idle, which keeps the window
for a repeat after a crash as short as it can be). A write etcd refuses
(another leader's key, or ours gone) drops everything staged: we never send
it, and the next leader, whose restored state lacks it, finds the transition
itself. A write with no answer is taken again while we lead.

On a takeover the outbox read in the winning transaction is delivered again,
with the same event ids and our token (docs/alerts.md says what a receiver
sees in the one window left), and their ``alerts`` points are written again
as the old leader made them (same time and tags: InfluxDB keeps one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from collector.alerts import etcd_wire as wire
from collector.alerts.delivery import Delivery
from collector.alerts.etcd_lease import EtcdLease
from collector.alerts.events import AlertEvent
from collector.alerts.handover import MAX_STATE_BYTES, HandoverError, Version, encode_state
from collector.alerts.outbox import (
    FULL,
    POINTS,
    Outbox,
    OutboxError,
    Write,
    decode,
    encode,
    restamped,
)

log = logging.getLogger(__name__)

# How soon a write etcd did not answer is tried again (while we lead).
RETRY_S = 0.2
WIRE_ERRORS = (wire.EtcdWireError, wire.LeaseNotFound, aiohttp.ClientError, TimeoutError,
               OSError)

StateDump = Callable[[], tuple[dict[str, Any], Version] | None]


class WriteAhead:
    def __init__(self, lease: EtcdLease, deliveries: Mapping[str, Delivery], *,
                 state: StateDump,
                 dead_letter: Callable[[str, AlertEvent, str, str], None],
                 rewrite: Callable[[AlertEvent, Callable[[], None]], None] = lambda _e, _d: None,
                 ) -> None:
        self.lease = lease
        self.deliveries = deliveries
        self.state = state  # the alert state to hand over and its version; None: not leading
        self.dead_letter = dead_letter
        self.rewrite = rewrite  # its `alerts` point again, then the callback once written
        self.core = Outbox()
        self.unreadable = 0  # outboxes read at a takeover that do not decode
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- from the runner -------------------------------------------------------------------
    def offer(self, delivery: Delivery, event: AlertEvent) -> None:
        """A transition for delivery, once it is in etcd; dead-lettered if the outbox is full."""
        if self.core.stage(delivery.name, event):
            self._kick()
            return
        log.warning("alerts: outbox full (%d pending); %s not notified to %s",
                    self.core.pending, event.event_id, delivery.name)
        self.dead_letter(delivery.name, event, FULL,
                         f"{self.core.pending} notifications pending delivery")

    def offer_point(self, event: AlertEvent) -> bool:
        """The transition's ``alerts`` point is on its way to InfluxDB: pending until
        ``point_written``, so a successor writes it again if we die first. False if full."""
        return self.core.stage(POINTS, event)

    def point_written(self, event: AlertEvent) -> None:
        self.settle(POINTS, event)

    def state_due(self) -> None:
        """A save: hand the state over too (through the same writer, in order)."""
        self.core.state_due()
        self._kick()

    def settle(self, notifier: str, event: AlertEvent) -> None:
        self.core.settle(notifier, event.event_id)
        self._kick()

    def taken_over(self) -> None:
        """We lead now: deliver what the last leader left pending, with our token."""
        token = self.lease.token
        payload = self.lease.handed_over_outbox()
        if token is None:
            return
        try:
            entries = decode(payload) if payload else ()
        except OutboxError as exc:
            self.unreadable += 1
            log.error("alerts: the outbox in etcd is unreadable (%s); nothing redelivered", exc)
            entries = ()
        restored = self.core.restore(entries)
        if restored:
            log.warning("alerts: %d notifications pending delivery from the last leader: %s",
                        len(restored), " ".join(f"{e.event.event_id}@{e.notifier}"
                                                for e in restored))
        for event_id in {e.event.event_id: None for e in restored}:
            event = next(e.event for e in restored if e.event.event_id == event_id)
            self.rewrite(event, lambda e=event: self.point_written(e))  # type: ignore[misc]
        for entry in restored:
            if entry.notifier == POINTS:
                continue
            delivery = self.deliveries.get(entry.notifier)
            if delivery is None:
                log.warning("alerts: pending %s for notifier %s, which is not configured; "
                            "dropped", entry.event.event_id, entry.notifier)
                self.core.settle(entry.notifier, entry.event.event_id)
                continue
            delivery.offer(restamped(entry, token))
        self._kick()

    async def flush(self, timeout: float) -> bool:
        """Wait until everything due is written (at a clean stop); False if not in time."""
        self._kick()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def health_fields(self) -> dict[str, int]:
        s = self.core.stats
        return {"alert_outbox_pending": self.core.pending, "alert_outbox_written": s.written,
                "alert_outbox_settled": s.settled, "alert_outbox_refused_full": s.refused_full,
                "alert_outbox_fenced": s.fenced, "alert_outbox_write_errors": s.write_errors,
                "alert_outbox_restored": s.restored, "alert_outbox_unreadable": self.unreadable}

    # -- the writer ----------------------------------------------------------------------
    def _kick(self) -> None:
        if self.core.due():
            self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        while True:
            if not self.core.due():
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            write = self.core.take()
            if write is not None and not await self._write(write):
                await asyncio.sleep(RETRY_S)

    async def _write(self, write: Write) -> bool:
        """One fenced write; False if it is to be tried again."""
        token = self.lease.token
        made = self.state() if write.with_state and token is not None else None  # same step
        if token is None or (write.with_state and (made is None or made[1].rank != token)):
            self._fenced(write, "we lead no more")
            return True
        state = None
        if made is not None:
            state = await self._encoded(*made)
        try:
            ok = await self.lease.write_ahead(token, state, encode(write.entries))
        except WIRE_ERRORS as exc:
            self.core.failed(write)
            log.warning("alerts: writing %d notifications ahead to etcd failed: %s",
                        len(write.released), exc)
            return False
        if not ok:
            self._fenced(write, f"etcd refused our token {token}")
            return True
        for entry in self.core.written(write):
            if entry.notifier != POINTS:  # the point went to the writer at once
                self.deliveries[entry.notifier].offer(entry.event)
        return True

    async def _encoded(self, alerts: dict[str, Any], version: Version) -> bytes | None:
        try:
            payload = await asyncio.to_thread(encode_state, alerts, version, time.time_ns())
        except HandoverError as exc:
            reason = str(exc)
        else:
            if len(payload) <= MAX_STATE_BYTES:
                return payload
            reason = f"{len(payload)} bytes, over the {MAX_STATE_BYTES}-byte limit"
        self.lease.stats.states_too_big += 1
        log.warning("alerts: state not handed over with the outbox (%s); a takeover "
                    "restores an older one", reason)
        return None

    def _fenced(self, write: Write, why: str) -> None:
        dropped = self.core.fenced(write)
        if dropped:
            log.warning("alerts: %s: %d notifications not written ahead, never sent by us",
                        why, dropped)
