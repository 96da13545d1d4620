"""Compact sets of sequence numbers, as sorted inclusive ranges.

Acks name thousands of seqs; as ranges a contiguous batch costs two numbers.
"""

from __future__ import annotations

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
        out: list[tuple[int, int]] = []
        for lo, hi in spans:
            if out and lo <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return cls(tuple(out))

    def __iter__(self) -> Iterator[int]:
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and any(lo <= seq <= hi for lo, hi in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def as_pairs(self) -> list[list[int]]:
        return [[lo, hi] for lo, hi in self.ranges]
