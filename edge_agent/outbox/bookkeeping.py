"""The outbox's bookkeeping, sans-IO: what the drop policy may take, the gaps it leaves,
and which seqs may leave the gateway. The SQLite store (store.py) reads rows, asks here,
and writes what it is told; nothing here touches a file or a clock.

Durability has two levels, both needed by the delivery promise (``DurableMark``):
every append is its own committed transaction, so a killed agent loses nothing
it appended; a checkpoint (every commit window) fsyncs the WAL and raises
``durable_seq``. Only readings up to ``durable_seq`` may leave the gateway, so a
power cut can lose at most one window and never a reading that InfluxDB already
has (its seq would be reused otherwise). With ``commit_window = 0`` every append
is fsynced and durable at once. A checkpoint that does not complete leaves
``durable_seq`` where it was.

The outbox is bounded (``max_bytes``). When an append would pass the bound, the
drop policy removes readings (oldest first, or lowest priority first) down to
``DROP_TO`` of the bound (``Room``), never one handed out for sending
(``HandOuts``), and adds them, in the same transaction, to the open gap of their
sensor and measurement (meta: count, first and last time and seq). Every health
interval each open gap becomes one reading (measurement ``outbox_drops``, field
``of_measurement``; ``drop_record``), so a full outbox costs one small record per
sensor and measurement per interval, and the data team sees exactly what was
lost. Drop records themselves are never dropped.

A full disk is a second way to lose readings: an append that finds no room is
rolled back and its readings join an open gap of their own (``Unstored``, meta key
``unstored:``, kept in memory until a write works again, then written in that
write's transaction). It becomes the same ``outbox_drops`` reading, with
``reason`` ``not_stored`` instead of ``outbox_full`` and seqs 0 (those readings
never had one).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cityedge.uplink import Reading, SeqRanges

DROPS_MEASUREMENT = "outbox_drops"
# When full, drop down to this share of the bound, so that a full outbox does
# not run a delete with every append.
DROP_TO = 0.9
# Why readings went missing (field ``reason`` of an outbox_drops reading), by meta key prefix.
GAP_REASONS = {"gap": "outbox_full", "unstored": "not_stored"}
_GAP_FIELDS = ("count", "first_ns", "last_ns", "first_seq", "last_seq")

# A row the drop policy may take: (seq, sensor, measurement, time_ns, size), in policy order.
Candidate = tuple[int, str, str, int, int]


@dataclass(frozen=True, slots=True)
class Depth:
    readings: int
    bytes: int
    oldest_ns: int | None


@dataclass(frozen=True, slots=True)
class DropPolicy:
    """Which readings go first when the outbox is full."""

    kind: Literal["oldest", "priority"] = "oldest"
    # measurement -> priority; lower goes first, unlisted measurements are 0.
    priorities: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Gap:
    """Readings of one sensor and measurement dropped: the data team's "why is this missing"."""

    sensor: str
    measurement: str
    count: int
    first_ns: int
    last_ns: int
    first_seq: int
    last_seq: int

    def key(self, prefix: str) -> str:
        """Its meta key, ``<prefix>:<sensor>:<measurement>``."""
        return f"{prefix}:{self.sensor}:{self.measurement}"

    def doc(self) -> dict[str, int]:
        """Its meta value (sensor and measurement are in the key)."""
        return {k: getattr(self, k) for k in _GAP_FIELDS}

    @classmethod
    def from_meta(cls, key: str, doc: dict[str, int]) -> tuple[str, Gap]:
        """(prefix, gap) of a meta entry; sensor ids may hold ':', measurement names may not."""
        prefix, rest = key.split(":", 1)
        sensor, measurement = rest.rsplit(":", 1)
        return prefix, cls(sensor, measurement, **doc)

    def merge(self, other: Gap) -> Gap:
        return Gap(self.sensor, self.measurement, self.count + other.count,
                   min(self.first_ns, other.first_ns), max(self.last_ns, other.last_ns),
                   min(self.first_seq, other.first_seq), max(self.last_seq, other.last_seq))


def merged(open_gap: Gap | None, gap: Gap) -> Gap:
    """A gap joined to the open one of its sensor and measurement, if any."""
    return gap if open_gap is None else open_gap.merge(gap)


def gaps_of(victims: Iterable[Candidate]) -> list[Gap]:
    """One gap per sensor and measurement of the dropped rows, sorted by both."""
    by_kind: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for seq, sensor, measurement, time_ns, _size in victims:
        by_kind.setdefault((sensor, measurement), []).append((seq, time_ns))
    return [
        Gap(sensor, measurement, len(items), min(t for _, t in items),
            max(t for _, t in items), min(s for s, _ in items), max(s for s, _ in items))
        for (sensor, measurement), items in sorted(by_kind.items())
    ]


def drop_time(gap: Gap, reason: str) -> int:
    """Just after the last dropped reading: a pure function of stored data, so the
    point never moves on a resend. The measurement's own offset (and the reason's,
    for readings not stored) keeps two gaps of one sensor from landing on the same
    timestamp."""
    kind = gap.measurement if reason == "outbox_full" else f"{gap.measurement}/{reason}"
    return gap.last_ns + 1 + zlib.crc32(kind.encode()) % 1000


def drop_record(gap: Gap, prefix: str) -> Reading:
    """The ``outbox_drops`` reading an open gap (meta key ``prefix``) becomes."""
    reason = GAP_REASONS[prefix]
    return Reading(
        sensor=gap.sensor,
        measurement=DROPS_MEASUREMENT,
        fields={
            "dropped": gap.count,
            "of_measurement": gap.measurement,
            "reason": reason,
            "first_time_ns": gap.first_ns,
            "last_time_ns": gap.last_ns,
            "first_seq": gap.first_seq,
            "last_seq": gap.last_seq,
        },
        time_ns=drop_time(gap, reason),
        boot="",
        mono_ns=0,
    )


class Unstored:
    """Readings not stored while the disk was full, one open gap per sensor and measurement."""

    def __init__(self) -> None:
        self._gaps: dict[tuple[str, str], Gap] = {}

    def add(self, readings: Sequence[Reading]) -> None:
        for r in readings:
            key = (r.sensor, r.measurement)
            self._gaps[key] = merged(self._gaps.get(key),
                                     Gap(r.sensor, r.measurement, 1, r.time_ns, r.time_ns, 0, 0))

    def gaps(self) -> list[Gap]:
        return list(self._gaps.values())

    def clear(self) -> None:
        """They were written with a transaction that committed."""
        self._gaps.clear()

    @property
    def count(self) -> int:
        return sum(g.count for g in self._gaps.values())


def _without(seqs: set[int], gone: SeqRanges) -> set[int]:
    """``seqs`` less ``gone``, walking whichever is smaller: never a range wider than the set."""
    if not seqs or not gone:
        return seqs
    if len(gone) <= len(seqs):
        seqs.difference_update(gone)
        return seqs
    return {q for q in seqs if q not in gone}


class HandOuts:
    """Seqs handed out for sending and not deleted (acked) yet: any of them may still land,
    so the drop policy never takes them (it would count them lost).

    The previous run's are spared too (they may wait at the broker), but only this run's
    are stored for the next (``hand_out`` and ``delete`` say what to store): protection
    spans two runs, so restarts during a long outage cannot pile it up until only fresh
    readings are left to drop. The stored set is not fsynced on its own: a power cut can
    forget the last commit window's (then one of those dropped and landing is counted
    twice; nothing is lost)."""

    def __init__(self, before: Iterable[int] = ()) -> None:
        self.this_run: set[int] = set()
        self.before: set[int] = set(before)
        self._stored = False  # has this run stored its own set yet?

    def __contains__(self, seq: int) -> bool:
        return seq in self.this_run or seq in self.before

    def hand_out(self, seqs: Iterable[int]) -> SeqRanges | None:
        """Seqs read for sending; returns the set to store for the next run, or None when
        none is new."""
        fresh = set(seqs) - self.this_run
        if not fresh:
            return None
        self.this_run |= fresh
        return SeqRanges.of(self.this_run)

    def stored(self) -> None:
        """The set ``hand_out`` returned was stored. (Not stored, on a full disk: the next
        run does not spare these; one dropped and landing is counted twice.)"""
        self._stored = True

    def to_store_on_delete(self, gone: SeqRanges) -> SeqRanges | None:
        """What to store in the transaction that deletes ``gone``: this run's less ``gone``,
        or None (nothing stored yet this run: the previous run's set stays for the next)."""
        return SeqRanges.of(_without(set(self.this_run), gone)) if self._stored else None

    def deleted(self, gone: SeqRanges) -> None:
        """The delete committed: ``gone`` can no longer land twice. Until then they stay
        handed out: if the delete fails, they go out again."""
        self.this_run = _without(self.this_run, gone)
        self.before = _without(self.before, gone)


def drop_target(max_bytes: int) -> int:
    return int(max_bytes * DROP_TO)


class Room:
    """Victims for one append over the bound: rows are offered in policy order (drop
    records and oldest/priority order are the store's query); handed-out seqs are skipped
    and taking stops once ``excess`` bytes are freed."""

    def __init__(self, excess: int, spared: HandOuts) -> None:
        self.wanted = excess
        self.spared = spared
        self.victims: list[Candidate] = []
        self.freed = 0

    def offer(self, rows: Iterable[Candidate]) -> None:
        for row in rows:
            if self.wanted <= 0:
                return
            if row[0] in self.spared:
                continue
            self.victims.append(row)
            self.freed += row[4]
            self.wanted -= row[4]

    def gaps(self) -> list[Gap]:
        return gaps_of(self.victims)


class DurableMark:
    """``last_seq`` stored, ``durable_seq`` fsynced (see the module doc). A change since the
    last checkpoint makes it ``dirty``; at open it is dirty, so that readings a kill left in
    the WAL unsynced are fsynced (one checkpoint) before they count as durable (a power cut
    right after the restart could otherwise lose readings InfluxDB already has and reuse
    their seqs). On a full disk nothing counts as durable until a checkpoint works."""

    def __init__(self, last_seq: int, *, fsync_every_append: bool) -> None:
        self.last_seq = last_seq
        self.durable_seq = 0
        self.dirty = True
        self.fsync_every_append = fsync_every_append

    def appended(self, last_seq: int) -> None:
        self.last_seq = max(last_seq, self.last_seq)
        if self.fsync_every_append:
            self.durable_seq = self.last_seq
        else:
            self.dirty = True

    def changed(self, last_seq: int | None = None) -> None:
        """A write that a checkpoint must cover (a delete, a hand-out, drop records)."""
        if last_seq is not None:
            self.last_seq = last_seq
        self.dirty = True

    def fsynced(self) -> None:
        """Every commit was fsynced on its own (``fsync_every_append``)."""
        self.durable_seq = self.last_seq

    def due(self) -> int | None:
        """The seq a checkpoint started now makes durable, or None when nothing changed."""
        return self.last_seq if self.dirty else None

    def checkpointed(self, mark: int) -> None:
        self.dirty = False
        self.durable_seq = mark
