"""The agent's side of time anchoring: save, commit and use what timebase.py proposes.

timebase.py decides (sans-IO) when a boot gets its anchor and how long its
unsynchronised readings are held; this shell feeds it the clocks and the
collector's time answers, saves each proposal in the outbox before it is
used (two phases: a record the disk did not take is never used), asks the
collector for its clock while the boot has no anchor (a *probe*: an empty
batch), and tells the sender how far it may read (``sendable_seq``): readings
whose time is not decided yet wait.

Outbox calls go through ``io`` (the agent's outbox thread), so nothing here
blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from cityedge.logthrottle import LogThrottle
from cityedge.uplink import Ack
from cityedge.uplink.timing import BootTime
from edge_agent.clock import Clock
from edge_agent.outbox import Outbox
from edge_agent.timebase import Timebase

log = logging.getLogger(__name__)

# Seconds between time probes while the boot has no anchor.
PROBE_INTERVAL_S = 5.0
# Probes whose answer is awaited: older ones are forgotten (their answer, if
# it ever comes, is not taken); 16 probes are 80 s of an unanswered link.
MAX_PROBES = 16

IoCall = Callable[..., Awaitable[Any]]


class TimeAnchoring:
    """One per agent; ``open`` once the outbox is open, then ``update`` every commit window."""

    def __init__(self, clock: Clock, io: IoCall, *, hold_max_s: float) -> None:
        self.clock = clock
        self._io = io
        self.hold_max_ns = int(hold_max_s * 1e9)
        self.outbox: Outbox | None = None
        self.timebase: Timebase | None = None
        self.synced_now = clock.synced()
        self._hold_cap: int | None = None
        self._lock = asyncio.Lock()
        # Records of past boots settled at start but not saved yet (a full disk).
        self.boots_to_save: dict[str, BootTime] = {}
        self.save_failures = 0  # time records not saved (tried again)
        self._log = LogThrottle(log, level=logging.ERROR)
        self.probes: dict[int, int] = {}  # time-probe batch id -> monotonic ns sent
        self._last_probe = -PROBE_INTERVAL_S
        self.answers_refused: Counter[str] = Counter()  # by reason

    async def open(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.timebase = Timebase(self.clock.boot, await self._io(outbox.boot_times),
                                 hold_max_ns=self.hold_max_ns, now_mono=time.monotonic_ns())
        seen = await self._io(outbox.boots_waiting)
        self.boots_to_save = self.timebase.settle_old_boots(seen)
        for boot in self.boots_to_save:
            log.warning("boot %s never got a time anchor: its readings go flagged"
                        " time_unverified", boot)
        await self.update()

    def boots(self, readings_boots: set[str]) -> dict[str, BootTime]:
        """The records a batch carries for the unsynchronised readings' boots."""
        if self.timebase is None:
            return {}
        return {b: bt for b in readings_boots if (bt := self.timebase.boots.get(b)) is not None}

    async def _save(self, boot: str, record: BootTime) -> bool:
        """Save a proposed record, then commit it; False (and nothing used) if it could not
        be saved: a full disk does not stop the agent, the record is proposed again."""
        assert self.outbox is not None and self.timebase is not None
        try:
            await self._io(self.outbox.save_boot_time, boot, record)
        except (sqlite3.Error, OSError) as exc:
            self.save_failures += 1
            self._log.note("save", f"cannot store the time record of boot {boot}"
                           f" ({self.save_failures} failures so far); it is tried again and"
                           f" not used until stored: {exc}", time.monotonic())
            return False
        self.timebase.commit(boot, record)
        return True

    async def update(self, collector_time: int | None = None,
                     at_mono: int | None = None) -> None:
        """Anchor the boot (NTP, or the collector's clock), or declare a timed-out hold.

        One at a time (the sync and ack loops both call it): each proposal is made from
        the committed state and saved before the next is made."""
        async with self._lock:
            await self._update_locked(collector_time, at_mono)

    async def _update_locked(self, collector_time: int | None, at_mono: int | None) -> None:
        assert self.outbox is not None and self.timebase is not None
        for boot, old in list(self.boots_to_save.items()):
            if await self._save(boot, old):
                del self.boots_to_save[boot]
        self.synced_now = self.clock.synced()
        mono, wall = time.monotonic_ns(), time.time_ns()
        record = (self.timebase.on_synced(mono, wall) if self.synced_now else
                  self.timebase.on_collector_time(at_mono or mono, collector_time)
                  if collector_time else self.timebase.on_tick(mono))
        if record is not None and await self._save(self.clock.boot, record):
            log.info("boot %s: %s", self.clock.boot, record)
        held_from = self.timebase.held_from()
        if held_from is None:
            self._hold_cap = None
        else:
            durable = self.outbox.durable_seq
            first = await self._io(self.outbox.first_held, self.clock.boot, held_from)
            self._hold_cap = durable if first is None else min(durable, first - 1)

    def sendable_seq(self, durable_seq: int) -> int:
        """Durable, and timed: readings whose time is not decided yet wait (timebase.py)."""
        return durable_seq if self._hold_cap is None else min(durable_seq, self._hold_cap)

    def probe_due(self, link_ready: bool) -> bool:
        """Unanchored and unsynchronised: time to ask the collector for its clock?"""
        if self.timebase is None or self.timebase.current.anchor is not None:
            return False
        now = time.monotonic()
        if now - self._last_probe < PROBE_INTERVAL_S or not link_ready:
            return False
        self._last_probe = now
        return True

    def probe_sent(self, batch_id: int) -> None:
        self.probes[batch_id] = time.monotonic_ns()
        while len(self.probes) > MAX_PROBES:
            del self.probes[next(iter(self.probes))]

    async def answer(self, ack: Ack, in_flight: bool, probe_sent: int | None) -> None:
        """Anchor an unanchored boot on the collector's clock, if the answer deserves it.

        Taken only from an ack that answers a probe or a batch in flight (the
        transport already refused unsealed ones when a key is set) and only if
        its time is plausible (timebase.py); anything else is refused, counted
        by reason and logged once per reason.
        """
        assert ack.time_ns is not None
        if self.timebase is None or self.timebase.current.anchor is not None:
            self.probes.clear()
            return
        reason = ("not_in_flight" if not in_flight
                  else None if self.timebase.plausible(ack.time_ns) else "implausible")
        if reason is not None:
            # A refused answer leaves its probe open: the collector's may still come.
            self.answers_refused[reason] += 1
            if self.answers_refused[reason] == 1:
                log.warning("time answer refused (%s): %d ns in the ack of batch %d; later ones"
                            " are counted, not logged", reason, ack.time_ns, ack.batch_id)
            return
        self.probes.pop(ack.batch_id, None)
        # For a probe, the collector's clock was read about half way through the
        # round trip; for any other ack, just before receipt.
        now = time.monotonic_ns()
        await self.update(collector_time=ack.time_ns,
                          at_mono=(probe_sent + now) // 2 if probe_sent else now)

    def trusted_now_ns(self) -> int | None:
        """Wall time if the clock is synchronised or anchored this boot; else None."""
        if self.synced_now:
            return time.time_ns()
        anchor = self.timebase.current.anchor if self.timebase else None
        return None if anchor is None else anchor.wall_ns + time.monotonic_ns() - anchor.mono_ns

    @property
    def anchor_source(self) -> str:
        anchor = self.timebase.current.anchor if self.timebase else None
        return "none" if anchor is None else anchor.source
