"""The durable outbox: SQLite in WAL mode, one file per gateway. SQL only: what to
keep, drop, spare or call durable is decided in bookkeeping.py (its module doc
has the reasoning: durability levels, the drop policy, gaps, readings not stored).

Chosen by measurement (docs/outbox.md): flat cost per append from 1k to 1M
buffered readings, nothing lost in 424 kill -9 trials. TinyDB rewrites its
whole JSON file on every write (1.96 s per append at 100k readings), and its
caching middleware lost every reading since its last flush on kill.

Every ``append`` is its own committed transaction (synchronous=NORMAL);
``sync()`` (called every commit window) checkpoints, which fsyncs the WAL, and
raises ``durable_seq``. With ``commit_window = 0`` every append is fsynced
(synchronous=FULL). On a full disk (space.py) the outbox does not try to store
until ``RESUME_FREE_BYTES`` are free; acks (deletes) and checkpoints use the
reserve it released.

Size (~450 lines, over the ~400 of the style guide): the readings table, the
transactions and the full-disk retries all share one connection, its counters
and its full-disk state; the meta table's SQL is in meta.py, the decisions in
bookkeeping.py, and splitting further would pass that state back and forth.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from cityedge.uplink import Reading, SeqRanges, dump_fields
from cityedge.uplink.reading import StoredFields
from cityedge.uplink.timing import BootTime
from edge_agent.outbox import meta
from edge_agent.outbox.bookkeeping import (
    DROPS_MEASUREMENT,
    Depth,
    DropPolicy,
    DurableMark,
    Gap,
    HandOuts,
    Room,
    Unstored,
    drop_record,
    drop_target,
)
from edge_agent.outbox.space import (
    RESERVE_BYTES,
    RESUME_FREE_BYTES,
    OutboxUnusable,
    Reserve,
    StoreFailed,
    free_bytes,
    is_disk_full,
    private_files,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor TEXT NOT NULL,
    measurement TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    boot TEXT NOT NULL,
    mono_ns INTEGER NOT NULL,
    fields TEXT NOT NULL,
    size INTEGER NOT NULL,
    synced INTEGER NOT NULL DEFAULT 1
);
"""

# Bytes a row costs beyond its JSON fields (seq, times, names, b-tree cell);
# measured with page_count on 100k PMS5003 rows: 61 bytes, rounded up.
ROW_OVERHEAD = 64
# Rows the drop policy reads per query while it looks for victims.
DROP_CHUNK = 1000
__all__ = ["DROPS_MEASUREMENT", "SCHEMA", "Depth", "DropPolicy", "Gap", "Outbox"]


class Outbox:
    """Owns one SQLite connection; use it from one thread only."""

    def __init__(
        self,
        path: Path | str,
        *,
        fsync_every_append: bool = False,
        max_bytes: int | None = None,
        drop_policy: DropPolicy | None = None,
        reserve_bytes: int = RESERVE_BYTES,
    ) -> None:
        """Open or create; OutboxUnusable (one line: path and reason) if it cannot be."""
        self.path = Path(path)
        self.fsync_every_append = fsync_every_append
        self.reserve = Reserve(Path(f"{self.path}-reserve"), reserve_bytes)
        self.disk_full = False
        self.checkpoint_failures = 0
        self._unstored = Unstored()
        try:
            self._db = self._retry_full(self._connect, opening=True)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxUnusable(f"cannot open the outbox {self.path}: {exc}") from exc
        self.mark = DurableMark(self._last_seq(), fsync_every_append=fsync_every_append)
        self.sync()  # readings a kill left in the WAL are fsynced before they count
        if not self.reserve.take():
            self._enter_full()
        self.max_bytes = max_bytes
        self.appended_bytes = 0  # since open: the ingest rate, for "time until full"
        handed_out = meta.get(self._db, "handed_out")
        self.handed_out = HandOuts(SeqRanges.from_pairs(json.loads(handed_out or "[]")))
        self.drop_policy = drop_policy or DropPolicy()
        count, size = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM readings").fetchone()
        self.count, self.bytes = int(count), int(size)
        self._oldest_ns: int | None = self._first_time()
        self.dropped = Counter({k: int(v) for k, v in meta.by_prefix(self._db, "dropped").items()})

    @property
    def _synchronous(self) -> str:
        return "FULL" if self.fsync_every_append else "NORMAL"

    def _connect(self) -> sqlite3.Connection:
        private_files(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            # Checkpoints are ours to time (sync()); the automatic one would fsync mid-append.
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.executescript(SCHEMA)
            self._db = db
            self.epoch = meta.epoch(db)
        except BaseException:
            db.close()
            raise
        return db

    def _retry_full(self, fn: Callable[[], T], *, opening: bool = False) -> T:
        """Run a write that frees or keeps space (open, delete, checkpoint); on a full disk,
        once more after releasing the reserve (at open, the part kept for opening too)."""
        try:
            return fn()
        except (sqlite3.Error, OSError) as exc:
            if not is_disk_full(exc, self.path.parent) or not self.reserve.release(
                    opening=opening):
                raise
        self.disk_full = True
        return fn()

    def _enter_full(self) -> None:
        self.disk_full = True
        self.reserve.release()

    def _full_or_raise(self, exc: sqlite3.Error | OSError) -> None:
        """A write that may wait failed: on a full disk note it, on anything else re-raise."""
        if not is_disk_full(exc, self.path.parent):
            raise exc
        self._enter_full()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE .. COMMIT; on any failure roll back if SQLite has not already
        (it does on SQLITE_FULL) and restore the counters."""
        saved = self.count, self.bytes, self.appended_bytes, self._oldest_ns
        cur = self._db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self.count, self.bytes, self.appended_bytes, self._oldest_ns = saved
            raise

    @property
    def last_seq(self) -> int:
        return self.mark.last_seq

    @property
    def durable_seq(self) -> int:
        return self.mark.durable_seq

    @staticmethod
    def _save_handed_out(cur: meta.Db, seqs: SeqRanges) -> None:
        """This run's hand-outs, for the next run (bookkeeping.HandOuts says which)."""
        meta.put(cur, "handed_out", json.dumps(seqs.as_pairs()))

    def _last_seq(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='readings'").fetchone()
        return int(row[0]) if row else 0

    def append(self, readings: Sequence[Reading]) -> list[int]:
        """Store readings in one transaction; returns the seqs assigned to them."""
        if not readings:
            return []
        if self.disk_full and 0 <= free_bytes(self.path.parent) < RESUME_FREE_BYTES:
            raise self._not_stored(readings, disk_full=True, cause="waiting for free space")
        try:
            with self._transaction() as cur:
                seqs = [self._insert(cur, r) for r in readings]
                over = self.max_bytes is not None and self.bytes > self.max_bytes
                gaps = self._make_room(cur) if over else []
                self._save_unstored(cur)
        except (sqlite3.Error, OSError) as exc:
            full = is_disk_full(exc, self.path.parent)
            if full:
                self._enter_full()
            raise self._not_stored(readings, disk_full=full, cause=str(exc)) from exc
        self._unstored.clear()
        if self.disk_full:
            self.disk_full = False
            self.reserve.take()
        for gap in gaps:
            self.dropped[gap.sensor] += gap.count
        self.mark.appended(seqs[-1])
        return seqs

    def _insert(self, cur: sqlite3.Cursor, r: Reading) -> int:
        # Serialised here, once: the batch carries this text as it is (reading.py).
        fields = dump_fields(r.fields)
        size = (len(fields) if fields.isascii() else len(fields.encode())) + ROW_OVERHEAD
        cur.execute(
            "INSERT INTO readings"
            "(sensor, measurement, time_ns, boot, mono_ns, fields, size, synced)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (r.sensor, r.measurement, r.time_ns, r.boot, r.mono_ns, fields, size, int(r.synced)),
        )
        self.count += 1
        self.bytes += size
        self.appended_bytes += size
        if self._oldest_ns is None:
            self._oldest_ns = r.time_ns
        return int(cur.lastrowid or 0)

    def _make_room(self, cur: sqlite3.Cursor) -> list[Gap]:
        """Drop by policy (bookkeeping.Room) down to DROP_TO of the bound; record the gaps."""
        assert self.max_bytes is not None
        order = "seq"
        if self.drop_policy.kind == "priority" and self.drop_policy.priorities:
            cases = " ".join(
                f"WHEN '{m}' THEN {int(p)}" for m, p in self.drop_policy.priorities.items()
                if m.isidentifier()
            )
            order = f"CASE measurement {cases} ELSE 0 END, seq"
        room = Room(self.bytes - drop_target(self.max_bytes), self.handed_out)
        offset = 0
        while room.wanted > 0:
            batch = cur.execute(
                f"SELECT seq, sensor, measurement, time_ns, size FROM readings"
                f" WHERE measurement != ?"
                f" ORDER BY {order} LIMIT ? OFFSET ?",
                (DROPS_MEASUREMENT, DROP_CHUNK, offset),
            ).fetchall()
            if not batch:
                break  # only protected readings and drop records left
            offset += len(batch)
            room.offer(batch)
        cur.executemany("DELETE FROM readings WHERE seq = ?", [(v[0],) for v in room.victims])
        self.count -= len(room.victims)
        self.bytes -= room.freed
        self._oldest_ns = self._first_time()
        gaps = room.gaps()
        meta.open_gaps(cur, "gap", gaps)
        meta.add_dropped(cur, gaps)
        return gaps

    def _not_stored(self, readings: Sequence[Reading], *, disk_full: bool,
                    cause: str) -> StoreFailed:
        """Count readings an append could not store into their sensor's open gap."""
        self._unstored.add(readings)
        return StoreFailed(self.path, disk_full=disk_full,
                           free_bytes=free_bytes(self.path.parent), cause=cause)

    def _save_unstored(self, cur: sqlite3.Cursor) -> None:
        meta.open_gaps(cur, "unstored", self._unstored.gaps())

    @property
    def unstored(self) -> int:
        """Readings not stored and not yet recorded in the outbox as a gap."""
        return self._unstored.count

    def flush_gaps(self, *, final: bool = False) -> int:
        """Turn each sensor's open gap into one outbox_drops reading; returns how many.

        After a full disk it waits for free space as appends do (one gap per outage,
        not one per interval), except for the ``final`` flush before a stop: a few
        small rows, and the readings not stored are otherwise only in memory. If it
        fails the gaps stay open (0): the next flush that finds room writes them."""
        if (self.disk_full and not final
                and 0 <= free_bytes(self.path.parent) < RESUME_FREE_BYTES):
            return 0
        try:
            with self._transaction() as cur:
                self._save_unstored(cur)
                rows = meta.take_gaps(cur)
                for prefix, gap in rows:
                    self._insert(cur, drop_record(gap, prefix))
        except (sqlite3.Error, OSError) as exc:
            self._full_or_raise(exc)
            return 0
        self._unstored.clear()
        if rows:
            self.mark.changed(self._last_seq())
            if self.fsync_every_append:
                self.sync()
                self.mark.fsynced()
        return len(rows)

    def _first_time(self) -> int | None:
        """Time of the oldest waiting reading by seq (an index lookup, not a scan)."""
        row = self._db.execute("SELECT time_ns FROM readings ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def sync(self) -> int:
        """Make everything appended so far survive a power cut; returns the durable seq.

        It stays where it was when the checkpoint does not complete (a full disk, a
        reader holding it back): the next window tries again."""
        mark = self.mark.due()
        if mark is not None:
            try:
                busy, _log, _done = self._retry_full(
                    lambda: self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
            except (sqlite3.Error, OSError) as exc:
                self._full_or_raise(exc)
                busy = 1
            if busy:
                self.checkpoint_failures += 1
                return self.durable_seq
            self.mark.checkpointed(mark)
        return self.durable_seq

    def _rows(self, sql: str, args: Iterable[object]) -> list[Reading]:
        return [
            Reading(sensor, measurement, StoredFields(fields), time_ns, boot, mono_ns,
                    bool(synced), seq)
            for seq, sensor, measurement, time_ns, boot, mono_ns, fields, synced
            in self._db.execute(sql, tuple(args))
        ]

    _COLUMNS = "seq, sensor, measurement, time_ns, boot, mono_ns, fields, synced"

    def fetch_after(self, after: int, upto: int, limit: int) -> list[Reading]:
        """Readings to send; from here until their deletion the drop policy spares them."""
        return self._hand_out(self._rows(
            f"SELECT {self._COLUMNS} FROM readings WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (after, upto, limit),
        ))

    def _hand_out(self, rows: list[Reading]) -> list[Reading]:
        to_store = self.handed_out.hand_out(r.seq for r in rows)
        if to_store is not None:
            self.mark.changed()
            try:
                self._save_handed_out(self._db, to_store)
            except (sqlite3.Error, OSError) as exc:
                self._full_or_raise(exc)  # not stored: see HandOuts.stored
            else:
                self.handed_out.stored()
        return rows

    def fetch_seqs(self, seqs: SeqRanges, limit: int) -> list[Reading]:
        out: list[Reading] = []
        for lo, hi in seqs.ranges:
            out += self._rows(
                f"SELECT {self._COLUMNS} FROM readings WHERE seq BETWEEN ? AND ?"
                " ORDER BY seq LIMIT ?",
                (lo, hi, limit - len(out)),
            )
            if len(out) >= limit:
                break
        return self._hand_out(out)

    def delete(self, seqs: SeqRanges) -> int:
        """Remove acknowledged readings; returns how many were still here.

        ``seqs`` must be what the delivery window confirmed (outbox/window.py):
        seqs of one batch handed out here, never a peer's claim as it came.
        The cost is O(ranges), whatever the ranges span.
        """
        def delete() -> tuple[int, int]:
            removed = freed = 0
            with self._transaction() as cur:
                for lo, hi in seqs.ranges:
                    n, size = cur.execute(
                        "SELECT count(*), coalesce(sum(size), 0) FROM readings"
                        " WHERE seq BETWEEN ? AND ?", (lo, hi)).fetchone()
                    if n:
                        cur.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ?", (lo, hi))
                        removed, freed = removed + n, freed + size
                if (to_store := self.handed_out.to_store_on_delete(seqs)) is not None:
                    self._save_handed_out(cur, to_store)
            return removed, freed

        removed, freed = self._retry_full(delete)
        self.handed_out.deleted(seqs)
        if removed:
            self.mark.changed()
            self.count -= removed
            self.bytes -= freed
            self._oldest_ns = self._first_time()
        return removed

    # -- per-boot timing records (edge_agent/timebase.py decides them) ---------
    def boot_times(self) -> dict[str, BootTime]:
        return {boot: BootTime.from_json(json.loads(v))
                for boot, v in meta.by_prefix(self._db, "boot").items()}

    def save_boot_time(self, boot: str, record: BootTime) -> None:
        """Durable at once: readings are timed by it as soon as it exists. Its commit
        syncs the WAL itself (synchronous=FULL for this one write), so a reader holding
        back a checkpoint (``edge-agent status``) cannot leave it unsynced."""
        def save() -> None:
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                meta.put(self._db, f"boot:{boot}", json.dumps(record.to_json()))
            finally:
                self._db.execute(f"PRAGMA synchronous={self._synchronous}")
        self._retry_full(save)

    # -- where each sensor's readings come from (model and tags, as configured) ----
    def sensor_meta(self) -> dict[str, dict[str, str]]:
        return {k: json.loads(v) for k, v in meta.by_prefix(self._db, "sensor").items()}

    def save_sensor_meta(self, sensors: dict[str, dict[str, str]]) -> None:
        """Remembered past the config: readings of a sensor since removed from it still
        leave with their model and tags instead of being refused as an unknown sensor."""
        rows = [(f"sensor:{k}", json.dumps(v, ensure_ascii=False, sort_keys=True))
                for k, v in sensors.items()]
        if [(k, v) for k, v in rows if meta.get(self._db, k) != v]:
            try:
                with self._transaction() as cur:
                    cur.executemany(meta.PUT, rows)
            except (sqlite3.Error, OSError) as exc:
                self._full_or_raise(exc)  # saved at the next start

    def boots_waiting(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT DISTINCT boot FROM readings")}

    def first_held(self, boot: str, held_from: int) -> int | None:
        """Lowest seq of ``boot``'s unsynchronised readings taken at or after ``held_from``
        (monotonic ns): those whose time is not decided yet (Timebase.held_from)."""
        row = self._db.execute(
            "SELECT min(seq) FROM readings WHERE boot = ? AND synced = 0 AND mono_ns >= ?",
            (boot, held_from)).fetchone()
        return None if row[0] is None else int(row[0])

    def depth(self) -> Depth:
        return Depth(self.count, self.bytes, self._oldest_ns)

    def close(self) -> None:
        try:
            self.sync()
        finally:
            self._db.close()
            if self._unstored.count:  # the disk never took them: say so, once, by sensor
                log.error("outbox closed with %d readings not stored and not recorded as a"
                          " gap (the disk stayed full): %s", self._unstored.count,
                          ", ".join(f"{g.sensor}/{g.measurement} {g.count}"
                                    for g in self._unstored.gaps()))

