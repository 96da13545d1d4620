"""The backoff rule (cityedge/backoff.py): time and randomness passed in, nothing patched."""

from __future__ import annotations

import pytest

from cityedge.backoff import Backoff, Cooldown


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


def test_cooldown_steps_once_per_outage_on_the_callers_clock() -> None:
    c = Cooldown(Backoff(1.0, 4.0, "half"))
    assert c.ready(0.0)
    assert c.failed(10.0, top)  # took the link down: the first step
    assert not c.ready(10.5) and c.ready(11.0)
    # A request already on its way fails too: no second step.
    assert not c.failed(10.2, top)
    assert c.until == 11.0
    assert c.failed(11.0, top)  # the next outage: 2 s
    assert c.until == 13.0
    c.succeeded()
    assert c.failed(20.0, bottom)  # an answer came between: back to [0.5, 1]
    assert c.until == 20.5


def test_cooldown_holds_at_least_retry_after_plus_jitter() -> None:
    c = Cooldown(Backoff(0.5, 30.0, "half"))
    c.failed(0.0, top, retry_after=10.0)
    assert c.until == 12.0  # 10 s and up to 20 % more
    assert not c.failed(1.0, bottom, retry_after=20.0)  # already down; told to wait longer
    assert c.until == 21.0
    assert not c.failed(2.0, bottom, retry_after=1.0)  # never shortened
    assert c.until == 21.0
