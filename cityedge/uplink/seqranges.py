"""Compact sets of sequence numbers, as sorted inclusive ranges.

Acks name thousands of seqs; as ranges a contiguous batch costs two numbers.
Every operation here works on the ranges, never on the seqs they stand for:
an ack may name ``[[1, 2**62]]``, and turning that into a set (or walking it)
would never finish. Set algebra (``intersection``, ``difference``, ``union``)
costs O(ranges of both), membership O(log ranges), ``len`` O(ranges); only
``__iter__`` walks the seqs, and ``take`` walks at most a bounded number.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SeqRanges:
    """Sorted, non-overlapping, non-adjacent inclusive ranges ``((lo, hi), ...)``."""

    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, seqs: Iterable[int]) -> SeqRanges:
        out: list[tuple[int, int]] = []
        for s in sorted(set(seqs)):
            if out and s == out[-1][1] + 1:
                out[-1] = (out[-1][0], s)
            else:
                out.append((s, s))
        return cls(tuple(out))

    @classmethod
    def from_pairs(cls, pairs: Iterable[Iterable[int]]) -> SeqRanges:
        """Normalise arbitrary (possibly overlapping) pairs; raises ValueError on lo > hi."""
        spans: list[tuple[int, int]] = []
        for pair in pairs:
            lo, hi = pair
            if lo > hi:
                raise ValueError(f"range [{lo}, {hi}] has lo > hi")
            spans.append((lo, hi))
        spans.sort()
        return cls(_merge_sorted(spans))

    def __iter__(self) -> Iterator[int]:
        """Every seq, in order: only for ranges known to be small (a batch's own)."""
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def take(self, limit: int) -> list[int]:
        """The first ``limit`` seqs, in order: bounded whatever the ranges span."""
        out: list[int] = []
        for lo, hi in self.ranges:
            if len(out) >= limit:
                break
            out.extend(range(lo, min(hi, lo + limit - len(out) - 1) + 1))
        return out

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int) or isinstance(seq, bool):
            return False
        # The last range starting at or before seq is the only one that can hold it.
        i = bisect.bisect_right(self.ranges, (seq, _INF)) - 1
        return i >= 0 and self.ranges[i][1] >= seq

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def intersection(self, other: SeqRanges) -> SeqRanges:
        """Seqs in both, in O(ranges of both)."""
        out: list[tuple[int, int]] = []
        a, b = self.ranges, other.ranges
        i = j = 0
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if lo <= hi:
                out.append((lo, hi))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return SeqRanges(tuple(out))

    def difference(self, other: SeqRanges) -> SeqRanges:
        """Seqs in this and not in ``other``, in O(ranges of both)."""
        out: list[tuple[int, int]] = []
        b = other.ranges
        j = 0
        for lo, hi in self.ranges:
            start = lo
            while j < len(b) and b[j][1] < start:
                j += 1
            k = j
            while k < len(b) and b[k][0] <= hi:
                if b[k][0] > start:
                    out.append((start, b[k][0] - 1))
                start = max(start, b[k][1] + 1)
                if b[k][1] > hi:
                    break
                k += 1
            j = k
            if start <= hi:
                out.append((start, hi))
        return SeqRanges(tuple(out))

    def union(self, other: SeqRanges) -> SeqRanges:
        """Seqs in either, in O(ranges of both)."""
        return SeqRanges(_merge_sorted(sorted(self.ranges + other.ranges)))

    def as_pairs(self) -> list[list[int]]:
        return [[lo, hi] for lo, hi in self.ranges]


# Compares above any seq, for bisecting on (seq, ...) tuples.
_INF = float("inf")


def _merge_sorted(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in spans:
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)
