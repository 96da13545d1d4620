"""Plausible, drifting values for simulated sensors, by what each field measures.

Values drift as a bounded random walk from a seeded generator, so a run can be
replayed. Particulate values keep the physical ordering PM1 <= PM2.5 <= PM4 <=
PM10 and counts that fall with particle size, as real sensors report; a sound
level's Lmax is never below its LAeq; a bus terminal's door is mostly shut;
indoor CO2 and formaldehyde wander around what an occupied flat shows.
Every value is clamped to its field's ``valid`` range and quantized to what
the field can carry (``simulators.frames.quantize``), so a value logged by a
simulator is exactly the value the decoder reads back.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from edge_agent.decoding import FieldSpec, Profile
from simulators.frames import frame_spec, quantize

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


def _particulate(rng: random.Random, episode: Callable[[], float]) -> Callable[[], Values]:
    pm25 = Drift(rng, 1, 400, centre=18, step=1.5)

    def next_values() -> Values:
        base = pm25.next() * episode()
        v = {"pm2_5_ugm3": base, "pm1_0_ugm3": base * 0.68, "pm4_0_ugm3": base * 1.2,
             "pm10_ugm3": base * 1.45}
        for key in list(v):
            v[key.replace("_ugm3", "_cf1_ugm3")] = v[key] * 1.05
        for size, share in (("0_3", 160), ("0_5", 48), ("1_0", 9), ("2_5", 1.1), ("5_0", 0.3),
                            ("10", 0.08)):
            v[f"count_{size}um_per_0_1l"] = base * share
        for size, share in (("0_5", 2.2), ("1_0", 2.6), ("2_5", 2.7), ("4_0", 2.72),
                            ("10", 2.73)):
            v[f"count_pm{size}_per_cm3"] = base * share
        v["typical_particle_size_um"] = 0.4 + 0.002 * base
        return v

    return next_values


def _climate(rng: random.Random) -> Callable[[], Values]:
    temperature = Drift(rng, -10, 38, centre=16, step=0.1)
    humidity = Drift(rng, 15, 95, centre=55, step=0.4)
    pressure = Drift(rng, 980, 1040, centre=1012, step=0.1)

    def next_values() -> Values:
        return {"temperature_c": temperature.next(), "humidity_pct": humidity.next(),
                "pressure_hpa": pressure.next(), "enclosure_temp_c": temperature.value + 9}

    return next_values


def _noise(rng: random.Random) -> Callable[[], Values]:
    laeq = Drift(rng, 25, 70, centre=36, step=1.2)
    laeq5 = Drift(rng, 25, 70, centre=37, step=0.4)

    def next_values() -> Values:
        level = laeq.next()
        return {"laeq_1min_dba": level, "lmax_dba": level + 4 + abs(rng.gauss(0, 6)),
                "laeq_5min_dba": laeq5.next()}

    return next_values


def _gas(rng: random.Random) -> Callable[[], Values]:
    co2 = Drift(rng, 400, 2500, centre=750, step=15)
    formaldehyde = Drift(rng, 5, 120, centre=30, step=1.0)

    def next_values() -> Values:
        return {"co2_ppm": co2.next(), "formaldehyde_ugm3": formaldehyde.next()}

    return next_values


def _bus_terminal(rng: random.Random) -> Callable[[], Values]:
    temperature = Drift(rng, -5, 60, centre=24, step=0.2)
    voltage = Drift(rng, 22.0, 26.0, centre=24.1, step=0.05)
    state = {"display_on": 1.0, "door_open": 0.0}

    def next_values() -> Values:
        if rng.random() < 0.02:
            state["door_open"] = 1.0 - state["door_open"]
        state["display_on"] = 0.0 if rng.random() < 0.01 else 1.0
        return {"enclosure_temp_c": temperature.next(), "supply_voltage_v": voltage.next(),
                **state}

    return next_values


def _generic(rng: random.Random, specs: tuple[FieldSpec, ...]) -> Callable[[], Values]:
    """Every field wanders around the lower middle of its valid range (or 0..100)."""
    drifts = {}
    for spec in specs:
        low, high = spec.valid if spec.valid else (0.0, 100.0)
        span = high - low
        drifts[spec.name] = Drift(rng, low + span * 0.1, high - span * 0.1, low + span * 0.3,
                                  span * 0.01)
    return lambda: {name: d.next() for name, d in drifts.items()}


def _fit(spec: FieldSpec, value: float) -> int | float | bool:
    """``value`` inside the field's valid range and type, as the field carries it."""
    if spec.type.is_bool:
        return bool(value)
    low, high = spec.valid if spec.valid else (spec.type.min, spec.type.max)
    if not spec.is_text and not spec.type.is_float:  # the raw type (or mask) may be narrower
        ends = (spec.from_raw(spec.raw_min), spec.from_raw(spec.raw_max))
        low, high = max(low, min(ends)), min(high, max(ends))
    elif not spec.is_text:
        low = max(low, spec.type.min * spec.scale if spec.scale > 0 else low)
        high = min(high, spec.type.max * spec.scale if spec.scale > 0 else high)
    for candidate in (quantize(spec, min(high, max(low, value))),):
        if low <= candidate <= high:
            return candidate
    return quantize(spec, low)


def generator_for(
    profile: Profile, seed: int, episode: Callable[[], float] = lambda: 1.0
) -> Callable[[], Values]:
    """Values for the profile's first reading frame kind (every field, every measurement)."""
    rng = random.Random(seed)
    specs = frame_spec(profile).fields
    known: list[Callable[[], Values]] = [
        _particulate(rng, episode), _climate(rng), _noise(rng), _bus_terminal(rng),
        _gas(random.Random(seed ^ 0x6A5)),  # its own stream: the others' values stay as they were
    ]
    fallback = _generic(rng, specs)

    def next_values() -> Values:
        merged: Values = {}
        for source in known:
            merged.update({k: v for k, v in source().items() if k not in merged})
        extra = fallback()
        return {spec.name: _fit(spec, merged.get(spec.name, extra[spec.name])) for spec in specs}

    return next_values
