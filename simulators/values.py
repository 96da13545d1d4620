"""Plausible, drifting values for simulated sensors, by measurement kind.

Values drift as a bounded random walk from a seeded generator, so a run can
be replayed. Particulate values keep the physical ordering PM1 <= PM2.5 <=
PM10 and counts that fall with particle size, as real Plantower output does.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from edge_agent.decoding import Profile

Values = dict[str, float]


class Drift:
    """A random walk in [low, high] with mean reversion toward ``centre``."""

    def __init__(self, rng: random.Random, low: float, high: float, centre: float, step: float):
        self.rng, self.low, self.high, self.centre, self.step = rng, low, high, centre, step
        self.value = centre

    def next(self) -> float:
        pull = (self.centre - self.value) * 0.05
        self.value = min(self.high, max(self.low, self.value + pull + self.rng.gauss(0, self.step)))
        return self.value


def particulate(rng: random.Random, profile: Profile, episode: Callable[[], float]) -> Callable[[], Values]:
    pm25 = Drift(rng, 1, 400, centre=18, step=1.5)
    names = [f.name for f in profile.fields]

    def next_values() -> Values:
        base = pm25.next() * episode()
        v = {
            "pm2_5_ugm3": base,
            "pm1_0_ugm3": base * 0.68,
            "pm10_ugm3": base * 1.45,
        }
        for key in list(v):
            v[key.replace("_ugm3", "_cf1_ugm3")] = v[key] * 1.05
        v["count_0_3um_per_0_1l"] = base * 160
        v["count_0_5um_per_0_1l"] = base * 48
        v["count_1_0um_per_0_1l"] = base * 9
        v["count_2_5um_per_0_1l"] = base * 1.1
        v["count_5_0um_per_0_1l"] = base * 0.3
        v["count_10um_per_0_1l"] = base * 0.08
        return {k: round(x) for k, x in v.items() if k in names}

    return next_values


def generic(rng: random.Random, profile: Profile) -> Callable[[], Values]:
    """Every field wanders around the middle of its valid range (or 0..100)."""
    drifts = {}
    for f in profile.fields:
        low, high = (f.valid if getattr(f, "valid", None) else (0.0, 100.0))
        span = high - low
        drifts[f.name] = Drift(rng, low + span * 0.1, high - span * 0.1, low + span * 0.3, span * 0.01)

    def next_values() -> Values:
        return {name: d.next() for name, d in drifts.items()}

    return next_values


def generator_for(profile: Profile, seed: int, episode: Callable[[], float] = lambda: 1.0
                  ) -> Callable[[], Values]:
    rng = random.Random(seed)
    if profile.measurement == "particulate":
        return particulate(rng, profile, episode)
    return generic(rng, profile)
