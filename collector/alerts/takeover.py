"""Taking over the alert lease: the newest saved state, restored off the event loop.

A collector that takes over with ``lease: etcd`` restores the newest state it
can use: the state its lease read from etcd in the transaction that made it
leader (handover.py), if it is newer than the collector's own files and
decodes and restores; else its own files. The statistics file (tens of
megabytes for a city) is read only when the files win: a state from etcd
starts the windows empty.

Reading, inflating, parsing and filling the new engine run in worker
threads, so the lease's own tasks, the notifiers and the collector's writes
go on meanwhile. One limit: Python's json parser holds the interpreter lock
while it parses, so the parse of a big statistics file still pauses the
event loop for its length (as it does at start-up). The runner evaluates
nothing until the new engine is in (leadership.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from collector.alerts.engine import Engine
from collector.alerts.errors import UsageError
from collector.alerts.handover import Header, Version, decode_alerts, remote_is_newer
from collector.alerts.rules import RuleSet
from collector.alerts.snapshot import restore
from collector.alerts.store import StateStore

log = logging.getLogger(__name__)

# What restore() raises on saved state it cannot apply (of another version, or garbled).
RESTORE_ERRORS = (UsageError, ValueError, KeyError, TypeError)


def restored(rules: RuleSet, alerts: dict[str, Any] | None,
             stats: dict[str, Any] | None) -> Engine:
    """A new engine holding the saved state; raises whatever bad state makes restore() raise."""
    engine = Engine(rules)
    for warning in restore(engine, alerts, stats):
        log.warning("alerts: %s", warning)
    return engine


def restored_or_empty(rules: RuleSet, alerts: dict[str, Any] | None,
                      stats: dict[str, Any] | None) -> Engine:
    """The saved state, or an empty engine if it cannot be applied (never keeps us down)."""
    try:
        return restored(rules, alerts, stats)
    except RESTORE_ERRORS as exc:
        log.error("alerts: starting without saved state: %s", exc)
        return Engine(rules)


def _read(load: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    try:
        return load()
    except UsageError as exc:  # a state file we cannot read must not keep alerting down
        log.error("alerts: %s; going on without that file", exc)
        return None


def local_state(store: StateStore) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Our files (alerts.json, alerts.stats.json); a file we cannot read counts as none."""
    return _read(store.load_alerts), _read(store.load_stats)


async def newest_state(rules: RuleSet, store: StateStore,
                       handed_over: Sequence[tuple[Header, bytes]]) -> tuple[Engine, str]:
    """A new engine holding the newest usable state, and where that state came from."""
    alerts = await asyncio.to_thread(_read, store.load_alerts)
    local = Version.from_dict(alerts.get("handover")) if alerts else None
    for header, payload in handed_over:  # newest first
        if not remote_is_newer(header.version, local):
            break
        v = header.version
        try:
            decoded = await asyncio.to_thread(decode_alerts, payload)
            engine = await asyncio.to_thread(restored, rules, decoded, None)  # windows refill
        except Exception as exc:  # whatever a bad message holds, we fall back
            log.error("alerts: the handed-over state (%s's save %d) is unusable: %s",
                      v.holder, v.n, exc)
            continue
        return engine, f"etcd ({v.holder}'s save {v.n}, {header.open_alerts} open)"
    stats = await asyncio.to_thread(_read, store.load_stats)
    engine = await asyncio.to_thread(restored_or_empty, rules, alerts, stats)
    return engine, str(store.dir)
