"""Who evaluates: the runner's lease, taking it over (restoring the newest state), stepping down.

With a lease (``lease: file`` or ``lease: etcd``, lease.py) only the holder
evaluates and notifies; the others stand by and take over when it goes. The
lease is checked before every evaluation (``check``), and the fencing token
before every notification (``fence``), so a holder that lost it (a partition,
a pause) stops at once; on taking over, the newest state is restored: our
own files, or one handed over through etcd (takeover.py, off the event
loop). Nothing is evaluated until that state is in: readings fed meanwhile
are counted as standby points, as before the takeover.

``Leadership`` holds that state and the versions of what a holder saves; the
runner (runner.py) asks it whether to evaluate, and it calls back into the
runner to install a restored engine and to save.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from collector.alerts.config import AlertsConfig
from collector.alerts.engine import Engine
from collector.alerts.errors import UsageError
from collector.alerts.etcd_lease import EtcdLease
from collector.alerts.events import AlertEvent
from collector.alerts.handover import HandoverError, Version, encode_state
from collector.alerts.health import RunnerStats
from collector.alerts.lease import FileLease, Lease
from collector.alerts.rules import RuleSet
from collector.alerts.store import StateStore
from collector.alerts.takeover import local_state, newest_state, restored_or_empty

log = logging.getLogger("collector.alerts.runner")  # its records, as before the split


def make_lease(config: AlertsConfig, store: StateStore, holder: str) -> Lease | None:
    """The lease the alerts section asks for (``lease:``), or None for a single collector."""
    kind = config.lease_kind
    if kind == "file":
        return FileLease(store.dir / "alerts.lease", holder)
    if kind == "etcd":
        bad = [u for u in config.etcd.endpoints if not u.startswith(("http://", "https://"))]
        if not config.etcd.endpoints or bad:
            raise UsageError("alerts: etcd.endpoints needs one or more http:// or https:// "
                             f"URLs of etcd's client port, got {config.etcd.endpoints!r}")
        return EtcdLease(config.etcd, holder)
    return None


class Leadership:
    """The lease as the runner sees it: whether we evaluate now, and what our saves are."""

    def __init__(self, lease: Lease | None, store: StateStore, rules: RuleSet, stats: RunnerStats,
                 *, install: Callable[[Engine], None], save: Callable[[], Awaitable[None]],
                 save_lock: asyncio.Lock, led: Callable[[], None]) -> None:
        self.lease = lease
        self.store = store
        self.rules = rules
        self.stats = stats
        self._install = install  # a restored engine goes into the runner
        self._save = save
        self._save_lock = save_lock  # the runner's: one save at a time, in order
        self._led = led  # we lead now: the runner saves (and hands over) at once
        self.leading = lease is None
        self.closing = False
        self._saves = 0  # this process's saves: the n of a handed-over state's version
        # (rank, holder) of the lease term whose engine we hold, taken when we took over:
        # every save of that engine, a step-down's and the last one included, is
        # versioned with it, never with a later candidacy's rank.
        self._term: tuple[int, str] | None = None
        self.stepdown_save = False  # our latest since the step-down is not saved yet
        self._restoring: asyncio.Task[None] | None = None  # a takeover restoring state
        if lease is not None:
            lease.on_change = self._lease_changed

    def restore_local(self) -> None:
        self._install(restored_or_empty(self.rules, *local_state(self.store)))

    async def start(self) -> None:
        """Restore our files (no lease), or join the lease and lead from the start if we can."""
        if self.lease is None:
            self.restore_local()
            return
        await self.lease.start()
        self.check()
        if self._restoring is not None:
            await asyncio.wait([self._restoring])  # lead from the start if we can
        if not self.leading:
            log.info("alerts: standing by; %s", self.lease.describe())

    def poll(self) -> None:
        """Once a tick: let a lease that must ask try to take it."""
        if self.lease is not None and not self.closing:
            self.lease.poll()

    def check(self) -> bool:
        """Do we evaluate now? Takes over (restoring state) or steps down on a change.

        While a takeover restores state we hold the lease but do not evaluate yet:
        what is fed meanwhile is counted as standby points, as before the takeover.
        """
        if self.lease is None or self.closing:
            return self.leading
        held = self.lease.held
        if held and not self.leading and self._restoring is None:
            self._take_over()
        elif not held and self._restoring is not None:
            self._restoring.cancel()
            self._restoring = None
            log.warning("alerts: lost the lease while restoring state; standing by (%s)",
                        self.lease.describe())
        elif not held and self.leading:
            self.leading = False
            self.stats.stepdowns += 1
            self.stepdown_save = True  # our latest, for our files (not handed over)
            log.warning("alerts: lost the lease; standing by (%s)", self.lease.describe())
        return held and self.leading

    def fence(self, event: AlertEvent) -> bool:
        """May this event be notified now? Only with the token it was made under, while the
        lease is still ours: a deposed (or paused and woken) leader's events never go out."""
        if self.lease is None or self.lease.term is None:
            return True  # no lease, or one without terms (file): nothing to fence
        return self.lease is not None and self.lease.token == event.fencing_token

    @property
    def token(self) -> int:
        """The token to stamp on what we write and notify now (0: a lease without one)."""
        token = self.lease.token if self.lease is not None else None
        return token or 0

    def _lease_changed(self) -> None:
        self.check()  # take over (or step down) now, not at the next reading or tick

    def _take_over(self) -> None:
        """Restore the newest state, then lead: at once from the shared files with a lease
        that hands nothing over (``file``, as at start); off the event loop otherwise."""
        assert self.lease is not None
        self.stats.takeovers += 1
        term = self.lease.term
        if term is None:
            log.warning("alerts: took over the lease; restoring state from %s", self.store.dir)
            self.restore_local()
            self._lead(None)
        else:
            self._restoring = asyncio.create_task(self._restore_newest(term),
                                                  name="alerts-takeover")

    async def _restore_newest(self, term: tuple[int, str]) -> None:
        assert self.lease is not None
        try:
            if self.stepdown_save:  # the last term's latest first, under that term's version
                await self._save()
            async with self._save_lock:  # no save of ours is half-written while we read
                pass
            engine, source = await newest_state(self.rules, self.store,
                                                self.lease.handed_over())
        except Exception:  # a bug: stand by, and try again at the next check
            log.exception("alerts: taking over failed")
            self._restoring = None
            return
        self._restoring = None
        if self.closing or not self.lease.held:
            log.warning("alerts: lost the lease while restoring state; standing by")
            return
        log.warning("alerts: took over the lease; restoring state from %s", source)
        self._install(engine)
        self._lead(term)

    def _lead(self, term: tuple[int, str] | None) -> None:
        self._term = term
        self.leading = True
        self._led()  # save (and hand over) under our own version at once

    def next_version(self) -> Version | None:
        """The version of the save being made (None: nothing is handed over); call once
        per save, under the runner's save lock. Any step-down save is being made now."""
        self.stepdown_save = False
        term = self._term
        if term is None:
            return None
        self._saves += 1
        return Version(term[0], term[1], self._saves)

    def handover_version(self) -> Version | None:
        """The version of a state handed over now (by the outbox's writer), while we lead
        with a term; None otherwise. Counts with the saves: a higher n is a later dump."""
        term = self._term
        if term is None or not self.leading:
            return None
        self._saves += 1
        return Version(term[0], term[1], self._saves)

    async def hand_over(self, alerts: dict[str, Any], version: Version) -> None:
        assert self.lease is not None
        try:
            payload = await asyncio.to_thread(encode_state, alerts, version, time.time_ns())
        except HandoverError as exc:
            log.warning("alerts: %s; not handed over (a takeover restores an older one)", exc)
            return
        await self.lease.publish_state(payload, version)  # only if etcd still has our key

    async def stop(self) -> bool:
        """The last check (step down if we lost it), then neither check nor take the lease
        again; a takeover still restoring is dropped. True if a last save is due."""
        if self.leading:
            self.check()
        self.closing = True
        if self._restoring is not None:  # nothing evaluated yet: nothing new to save
            self._restoring.cancel()
            await asyncio.wait([self._restoring])
            self._restoring = None
        return self.leading or self.stepdown_save

    async def release(self) -> None:
        """Give the lease up: a standby takes over at once."""
        if self.lease is not None:
            self.leading = False
            await self.lease.close()

    def describe(self) -> str:
        return self.lease.describe() if self.lease else "none"
