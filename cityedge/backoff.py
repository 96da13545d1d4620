"""Exponential backoff, sans-IO: the one rule every retry loop in cityedge uses.

The caller passes the random source (any ``(lo, hi) -> float``, normally
``random.uniform``) and does its own sleeping, so tests hand in a fixed source
and short bounds instead of patching module constants.

Jitter, after the AWS Architecture Blog's "Exponential Backoff And Jitter":
``full`` draws from (0, delay), which spreads a fleet that failed together (a
city's gateways after a broker restart); ``half`` draws from (delay/2, delay),
keeping a floor for one client probing a database; ``none`` waits the delay
itself (a serial port, where nothing else competes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Uniform = Callable[[float, float], float]
Jitter = Literal["full", "half", "none"]


@dataclass
class Backoff:
    """``next()`` gives the wait before the next attempt and doubles the delay up to
    ``maximum``; ``reset()`` after a success starts again at ``minimum``."""

    minimum: float
    maximum: float
    jitter: Jitter = "full"
    delay: float = field(init=False)

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.maximum:
            raise ValueError(f"backoff: need 0 < minimum <= maximum, got {self.minimum}, "
                             f"{self.maximum}")
        self.delay = self.minimum

    def next(self, uniform: Uniform) -> float:
        d = self.delay
        self.delay = min(d * 2, self.maximum)
        if self.jitter == "none":
            return d
        return uniform(0.0 if self.jitter == "full" else d / 2, d)

    def reset(self) -> None:
        self.delay = self.minimum


@dataclass
class Cooldown:
    """A link that counts as down until a time on the caller's clock, backing off per outage.

    ``failed(now, ...)`` takes the link down: the first failure of an outage
    takes the next backoff step; failures of requests that were already on
    their way when it went down do not step again (they fail together), but a
    Retry-After they carry still holds the link down at least that long, plus
    up to 20 % so a fleet told the same time does not return in lockstep.
    ``succeeded()`` (the other end answered) starts the next outage at the
    first step. Times are whatever clock the caller reads (``time.monotonic``).
    """

    backoff: Backoff
    until: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.until

    def failed(self, now: float, uniform: Uniform, retry_after: float | None = None) -> bool:
        """Hold the link down from ``now``; True if this failure took it down (it was up)."""
        was_up = self.ready(now)
        delay = self.backoff.next(uniform) if was_up else 0.0
        if retry_after is not None:
            delay = max(delay, retry_after * uniform(1.0, 1.2))
        self.until = max(self.until, now + delay)
        return was_up

    def succeeded(self) -> None:
        self.backoff.reset()
