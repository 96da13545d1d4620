"""Means over completed clock periods (a station's hourly means), per series, bounded.

Korean PM advisories are defined on a station's completed clock-hour means
(시간평균): "the hourly mean is 75 or more for 2 consecutive hours". A rule
with ``mean: {clock: true, ...}`` keeps, per series, the sum, count and the
coverage slots of each local clock period (the file's time zone), and judges
a period once it is complete: at the series' first in-order reading at or
after the period's end, or when the engine's clock passes the end by the
rule's ``late_after`` (a station that went quiet). A period counts only when
at least ``min_coverage`` of its slots hold a reading and it has at least
``min_count`` readings; an uncovered period breaks a pending run and never
lifts a firing alert.

Readings that arrive after their period was judged (a backlog) change the
kept periods and the judgement is replayed from the kept base; a different
outcome is reported as a backfilled change (the engine marks its events
late). A period first judged on readings that arrived late (a backlog that
drains in order) makes backfilled changes too: they are not news either.
Only ``keep`` periods are kept per series; older ones are folded
into the base state.

Nothing here knows rules or levels: the caller passes ``step``, which maps
(status, run, mean or None, period start) to the next (status, run).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

# Member statuses, shared by the rolling and the clock paths.
OK, PENDING, HELD = 0, 1, 2
S_NS = 1_000_000_000

Step = Callable[[int, int, float | None, int], tuple[int, int]]


class ClockSpec:
    """A rule's clock-mean options, compiled: period, coverage slots, how many periods to keep."""

    __slots__ = ("_off", "_off_key", "keep", "min_count", "min_slots", "n_slots", "period",
                 "slot", "zone")

    def __init__(self, zone: ZoneInfo, period_ns: int, slot_ns: int, *, min_coverage: float,
                 min_count: int, keep: int) -> None:
        self.zone = zone
        self.period = period_ns
        self.slot = slot_ns
        self.n_slots = period_ns // slot_ns
        self.min_slots = min_coverage * self.n_slots
        self.min_count = max(min_count, 1)
        self.keep = keep
        self._off_key = -1
        self._off = 0

    def _offset(self, time_ns: int) -> int:
        # One-slot cache: readings come roughly in time order, offsets change rarely.
        key = time_ns // self.period
        if key != self._off_key:
            delta = datetime.fromtimestamp(time_ns // S_NS, UTC).astimezone(self.zone).utcoffset()
            self._off = int(delta.total_seconds()) * S_NS if delta is not None else 0
            self._off_key = key
        return self._off

    def index(self, time_ns: int) -> int:
        """The local clock period time_ns falls in (period start, inclusive)."""
        return (time_ns + self._offset(time_ns)) // self.period

    def start(self, k: int) -> int:
        t = k * self.period
        return t - self._offset(t - self._offset(t))

    def end(self, k: int) -> int:
        return self.start(k + 1)

    def slot_of(self, time_ns: int) -> int:
        return ((time_ns + self._offset(time_ns)) % self.period) // self.slot


@dataclass(frozen=True, slots=True)
class Change:
    """The member's status changed, as judged on the period ending at time_ns."""

    time_ns: int
    status: int
    value: float
    late: bool = False  # judged on readings that arrived late (a backlog): backfilled


class ClockHours:
    """One series' kept periods: parallel lists of period index, sum, count and slot bits."""

    __slots__ = ("base_k", "base_run", "base_status", "counts", "done", "ks", "late", "run",
                 "slots", "status", "sums")

    def __init__(self) -> None:
        self.ks: list[int] = []
        self.sums: list[float] = []
        self.counts: list[int] = []
        self.slots: list[int] = []
        self.late: list[bool] = []  # some reading of the period arrived late
        self.done: int | None = None  # the last period judged
        self.status, self.run = OK, 0  # after `done`
        self.base_k: int | None = None  # the state after this (forgotten) period...
        self.base_status, self.base_run = OK, 0  # ...is this

    def add(self, spec: ClockSpec, time_ns: int, value: float, late: bool) -> int | None:
        """Add a reading to its period; None when the period is older than the kept ones.

        Kept means after the base and less than ``keep`` periods before the last
        judged one: older periods are out of the rule's backfill however long
        ago the base moved (a first reading, a data gap), so a replay walks at
        most ``keep`` periods and a series keeps at most ``keep`` judged ones.
        """
        k = spec.index(time_ns)
        if self.base_k is not None and k <= self.base_k:
            return None
        if self.done is not None and k <= self.done - spec.keep:
            return None
        bit = 1 << spec.slot_of(time_ns)
        ks = self.ks
        i = len(ks) - 1 if ks and ks[-1] == k else bisect.bisect_left(ks, k)
        if i < len(ks) and ks[i] == k:
            self.sums[i] += value
            self.counts[i] += 1
            self.slots[i] |= bit
            self.late[i] |= late
        else:
            ks.insert(i, k)
            self.sums.insert(i, value)
            self.counts.insert(i, 1)
            self.slots.insert(i, bit)
            self.late.insert(i, late)
        return k

    def mean(self, spec: ClockSpec, i: int) -> tuple[float | None, float]:
        """(the mean if the period is covered else None, the mean of what it holds)."""
        raw = self.sums[i] / self.counts[i]
        covered = (self.slots[i].bit_count() >= spec.min_slots
                   and self.counts[i] >= spec.min_count)
        return (raw if covered else None), raw

    def _walk(self, spec: ClockSpec, step: Step, k: int, status: int, run: int, *,
              through: int) -> tuple[int, int, list[Change]]:
        """Judge periods k..through in order from (status, run); the changes on the way."""
        changes: list[Change] = []
        ks = self.ks
        i = bisect.bisect_left(ks, k)
        while k <= through:
            has_data = i < len(ks) and ks[i] == k
            mean, raw = self.mean(spec, i) if has_data else (None, 0.0)
            new_status, new_run = step(status, run, mean, spec.start(k))
            if new_status != status:
                changes.append(Change(spec.end(k), new_status, mean if mean is not None else raw,
                                      has_data and self.late[i]))
            if not has_data and (new_status, new_run) == (status, run):
                # A second empty period changes nothing either: skip to the next data.
                k = ks[i] if i < len(ks) else through + 1
                continue
            status, run = new_status, new_run
            i += has_data
            k += 1
        return status, run, changes

    def evaluate(self, spec: ClockSpec, step: Step, through: int) -> list[Change]:
        """Judge the periods after ``done`` up to ``through`` (inclusive), in order."""
        if self.done is not None and through <= self.done:
            return []
        start = self.done + 1 if self.done is not None else (self.ks[0] if self.ks else through)
        self.status, self.run, changes = self._walk(spec, step, start, self.status, self.run,
                                                    through=through)
        self.done = through
        self._trim(spec, step)
        return changes

    def replay(self, spec: ClockSpec, step: Step) -> Change | None:
        """Judge the kept periods again from the base (a late reading changed one).

        Returns the net change of status, timed at the end of the period that
        began the new status, or None when the outcome is unchanged.
        """
        if self.done is None or not self.ks:
            return None
        start = self.base_k + 1 if self.base_k is not None else self.ks[0]
        status, run, changes = self._walk(spec, step, start, self.base_status, self.base_run,
                                          through=self.done)
        old, self.status, self.run = self.status, status, run
        self._trim(spec, step)
        if status == old:
            return None
        last = changes[-1] if changes else Change(spec.end(self.done), status, 0.0)
        return Change(last.time_ns, last.status, last.value, late=True)

    def _trim(self, spec: ClockSpec, step: Step) -> None:
        assert self.done is not None
        while self.ks and self.ks[0] <= self.done and (
                len(self.ks) > spec.keep or self.ks[0] <= self.done - spec.keep):
            k = self.ks[0]
            start = self.base_k + 1 if self.base_k is not None else k
            self.base_status, self.base_run, _ = self._walk(spec, step, start, self.base_status,
                                                            self.base_run, through=k)
            self.base_k = k
            del self.ks[0], self.sums[0], self.counts[0], self.slots[0], self.late[0]

    def due(self, spec: ClockSpec, late_ns: int) -> int | None:
        """When the engine's clock must judge this series (a quiet station); None: nothing due."""
        if self.ks and (self.done is None or self.ks[-1] > self.done):
            return spec.end(self.ks[-1]) + late_ns
        if self.status == PENDING and self.done is not None:
            return spec.end(self.done + 1) + late_ns  # an empty period withdraws it
        return None

    def dump(self) -> list[object]:
        return [self.ks, self.sums, self.counts, self.slots, self.late, self.done, self.status,
                self.run, self.base_k, self.base_status, self.base_run]

    def load(self, data: list[object]) -> None:
        ks, sums, counts, slots, late, done, status, run, base_k, base_status, base_run = data
        self.ks = [int(x) for x in ks]  # type: ignore[attr-defined]
        self.sums = [float(x) for x in sums]  # type: ignore[attr-defined]
        self.counts = [int(x) for x in counts]  # type: ignore[attr-defined]
        self.slots = [int(x) for x in slots]  # type: ignore[attr-defined]
        self.late = [bool(x) for x in late]  # type: ignore[attr-defined]
        self.done = None if done is None else int(done)  # type: ignore[call-overload]
        self.status, self.run = int(status), int(run)  # type: ignore[call-overload]
        self.base_k = None if base_k is None else int(base_k)  # type: ignore[call-overload]
        self.base_status = int(base_status)  # type: ignore[call-overload]
        self.base_run = int(base_run)  # type: ignore[call-overload]
