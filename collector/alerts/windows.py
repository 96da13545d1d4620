"""Bounded per-series statistics on event time: rolling means, exceedance counts, seen seqs.

Every structure here has a hard size limit, because one collector carries a
city: a 24 h mean at one reading a second would otherwise keep 86,400 values
per sensor. Means are kept as step-aligned buckets of (sum, count); the
window at event time t holds the buckets whose start lies in (t - W, t].
"""

from __future__ import annotations

import bisect
from collections import OrderedDict

# Exceedance times kept per series for a count window; a count rule needs only
# "times" of them, so this only bounds a pathological stream.
MAX_HITS = 10_000
# Seq ranges remembered per (gateway, epoch): a live stream is one range; gaps
# come from backlogs draining behind live data (DESIGN invariant 7).
MAX_RANGES = 512
# (gateway, epoch) pairs remembered; least recently seen forgotten first.
MAX_SOURCES = 100_000


class MeanWindow:
    """Sum and count per step-aligned bucket; late values land in their bucket if still inside.

    Buckets are three parallel flat lists, not a list per bucket: a city's
    windows would otherwise be millions of small containers for Python's
    garbage collector to walk (full collections then pause the collector for
    hundreds of milliseconds; bench/alerts_bench.py shows it).
    """

    __slots__ = ("counts", "ks", "n", "step", "sums", "total", "weight")

    def __init__(self, step_ns: int, n: int) -> None:
        self.step = step_ns
        self.n = n
        self.ks: list[int] = []  # bucket indexes (start // step), increasing
        self.sums: list[float] = []
        self.counts: list[int] = []
        self.total = 0.0
        self.weight = 0

    def add(self, time_ns: int, value: float) -> bool:
        """Add a value; False when it is older than the window and was ignored."""
        k = time_ns // self.step
        ks = self.ks
        if not ks or k > ks[-1]:
            ks.append(k)
            self.sums.append(value)
            self.counts.append(1)
            floor = k - self.n
            if ks[0] <= floor:
                cut = bisect.bisect_right(ks, floor)
                del ks[:cut], self.sums[:cut], self.counts[:cut]
                self._recount()
            else:
                self.total += value
                self.weight += 1
            return True
        if k <= ks[-1] - self.n:
            return False
        i = bisect.bisect_left(ks, k)
        if ks[i] == k:
            self.sums[i] += value
            self.counts[i] += 1
        else:
            ks.insert(i, k)
            self.sums.insert(i, value)
            self.counts.insert(i, 1)
        self.total += value
        self.weight += 1
        return True

    def _recount(self) -> None:
        # Re-summing after each slide keeps float drift from subtract-as-you-go away.
        self.total = sum(self.sums)
        self.weight = sum(self.counts)

    def mean(self, min_coverage: float) -> float | None:
        """The mean, or None while fewer than min_coverage of the buckets hold data."""
        if not self.weight or len(self.ks) < min_coverage * self.n:
            return None
        return self.total / self.weight

    def dump(self) -> list[list[float]]:
        return [list(self.ks), list(self.sums), list(self.counts)]

    def load(self, data: list[list[float]]) -> None:
        ks, sums, counts = data
        self.ks = [int(k) for k in ks]
        self.sums = [float(x) for x in sums]
        self.counts = [int(c) for c in counts]
        self._recount()


class Hits:
    """Event times of exceedances; count() is how many lie in (t - window, t]."""

    __slots__ = ("times", "window")

    def __init__(self, window_ns: int) -> None:
        self.window = window_ns
        self.times: list[int] = []

    def add(self, time_ns: int) -> None:
        if not self.times or time_ns >= self.times[-1]:
            self.times.append(time_ns)
        else:
            bisect.insort(self.times, time_ns)
        if len(self.times) > MAX_HITS:
            del self.times[: len(self.times) - MAX_HITS]

    def count(self, time_ns: int) -> int:
        cut = bisect.bisect_right(self.times, time_ns - self.window)
        if cut:
            del self.times[:cut]
        return bisect.bisect_right(self.times, time_ns)


class SeqSet:
    """Seqs seen from one (gateway, epoch), as sorted inclusive ranges, at most MAX_RANGES."""

    __slots__ = ("his", "los")

    def __init__(self) -> None:
        self.los: list[int] = []
        self.his: list[int] = []

    def add(self, seq: int) -> bool:
        """Record seq; False if it was already there (a resend)."""
        los, his = self.los, self.his
        if his and seq == his[-1] + 1:  # the live stream: one comparison
            his[-1] = seq
            return True
        i = bisect.bisect_right(los, seq) - 1
        if i >= 0 and seq <= his[i]:
            return False
        if i >= 0 and his[i] + 1 == seq:
            his[i] = seq
        elif i + 1 < len(los) and los[i + 1] == seq + 1:
            los[i + 1] = seq
        else:
            los.insert(i + 1, seq)
            his.insert(i + 1, seq)
        j = i if i >= 0 else 0
        if j + 1 < len(los) and his[j] + 1 >= los[j + 1]:
            his[j] = his.pop(j + 1)
            los.pop(j + 1)
        if len(los) > MAX_RANGES:
            # Forget the oldest range: a resend from that far back counts twice,
            # which skews a mean by one reading; guessing "seen" could hide data.
            del los[0], his[0]
        return True


class Dedupe:
    """Resent readings count once: (gateway, epoch, seq) remembered with bounded memory."""

    def __init__(self, max_sources: int = MAX_SOURCES) -> None:
        self.sources: OrderedDict[tuple[str, str], SeqSet] = OrderedDict()
        self.max_sources = max_sources
        self.duplicates = 0

    def first_time(self, gateway: str, epoch: str, seq: int) -> bool:
        key = (gateway, epoch)
        seen = self.sources.get(key)
        if seen is None:
            seen = self.sources[key] = SeqSet()
            if len(self.sources) > self.max_sources:
                self.sources.popitem(last=False)
        elif len(self.sources) > 1:
            self.sources.move_to_end(key)
        if seen.add(seq):
            return True
        self.duplicates += 1
        return False

    def dump(self) -> list[list[object]]:
        return [[g, e, s.los, s.his] for (g, e), s in self.sources.items()]

    def load(self, rows: list[list[object]]) -> None:
        for g, e, los, his in rows:
            s = SeqSet()
            s.los, s.his = list(los), list(his)  # type: ignore[call-overload]
            self.sources[(str(g), str(e))] = s
