"""The backoff rule (cityedge/backoff.py): time and randomness passed in, nothing patched."""

from __future__ import annotations

import pytest

from cityedge.backoff import Backoff


def top(lo: float, hi: float) -> float:
    return hi


def bottom(lo: float, hi: float) -> float:
    return lo


def test_delay_doubles_to_the_cap_and_reset_starts_again() -> None:
    b = Backoff(0.5, 4.0, "none")
    assert [b.next(top) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next(top) == 0.5


@pytest.mark.parametrize(("jitter", "lows"), [
    ("full", [0.0, 0.0, 0.0]), ("half", [0.5, 1.0, 1.0]), ("none", [1.0, 2.0, 2.0]),
])
def test_jitter_bounds(jitter: str, lows: list[float]) -> None:
    b = Backoff(1.0, 2.0, jitter)  # type: ignore[arg-type]
    assert [b.next(bottom) for _ in range(3)] == lows
    b.reset()
    assert [b.next(top) for _ in range(3)] == [1.0, 2.0, 2.0]


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_bounds_are_checked(lo: float, hi: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(lo, hi)
