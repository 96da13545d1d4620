"""The city's gateways: how many of each site kind, which sensors each carries, how often.

Counts are the design brief's ("Where it runs"): 2,145 apartment units in
three complexes, about 1,000 bus stops, and the dust zones of 7 districts
(155 gateways, so the city is 3,300). Sensors and rates are the shipped
firmware profiles' and the demo fleet's (simulators/fleet.py):

- dust zone: a Plantower PMS5003 on the roof and a PMS7003 on the pole, both
  streaming (about one frame a second), a Modbus climate sensor polled every
  30 s (climate_modbus ``interval``): 2.03 readings/s.
- bus stop: the information terminal's controller on Modbus, polled every 10 s
  (bus_terminal_modbus ``interval``), and a PMS7003 streaming: 1.1 readings/s.
- apartment unit: a Modbus sound-level meter read once a minute (LAeq 1 min,
  noise_meter_modbus ``interval``) and a PMSA003 polled every 2 s (its
  passive mode's ``interval``): 0.52 readings/s.

The whole city then takes about 2,520 readings/s, in one batch per gateway per
commit window (1 s, the agent's default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

APARTMENTS = 2145
BUS_STOPS = 1000
DUST_GATEWAYS = 155
DISTRICTS = ("강남구", "종로구", "마포구", "송파구", "영등포구", "노원구", "강서구")
COMPLEXES = ("상암 래미안", "잠실 엘스", "노원 현대")


@dataclass(frozen=True, slots=True)
class SensorPlan:
    id: str
    profile: str
    interval: float  # seconds between readings


@dataclass(frozen=True, slots=True)
class SitePlan:
    gateway: str
    district: str
    site: str
    kind: str
    sensors: tuple[SensorPlan, ...]

    @property
    def readings_per_s(self) -> float:
        return sum(1.0 / s.interval for s in self.sensors)


KIND_SENSORS: dict[str, tuple[SensorPlan, ...]] = {
    "dust_zone": (SensorPlan("pm-roof", "pms5003", 1.0), SensorPlan("pm-pole", "pms7003", 1.0),
                  SensorPlan("climate", "climate_modbus", 30.0)),
    "bus_stop": (SensorPlan("bit-controller", "bus_terminal_modbus", 10.0),
                 SensorPlan("pm-shelter", "pms7003", 1.0)),
    "apartment": (SensorPlan("noise-living", "noise_meter_modbus", 60.0),
                  SensorPlan("air-living", "pmsa003", 2.0)),
}


CITY = {"apartment": APARTMENTS, "bus_stop": BUS_STOPS, "dust_zone": DUST_GATEWAYS}


def city(scale: float = 1.0) -> list[SitePlan]:
    """The city's gateways, or ``scale`` of each kind (at least one of each)."""
    return _mixed({kind: max(1, round(n * scale)) for kind, n in CITY.items()})


def first(n: int) -> list[SitePlan]:
    """``n`` gateways (``n`` >= 3) in the city's proportions, at least one of each kind."""
    total = sum(CITY.values())
    counts = {kind: max(1, n * c // total) for kind, c in CITY.items()}
    while sum(counts.values()) < n:  # the remainder to the kinds furthest below their share
        kind = max(CITY, key=lambda k: n * CITY[k] / total - counts[k])
        counts[kind] += 1
    return _mixed(counts)


def _mixed(counts: dict[str, int]) -> list[SitePlan]:
    """Interleaved by share (each kind's k-th gateway at (k + 0.5) / its count), so any
    stretch of the list keeps the mix."""
    keyed = [((k + 0.5) / n, kind, _site(kind, k)) for kind, n in counts.items()
             for k in range(n)]
    return [site for _, _, site in sorted(keyed, key=lambda t: (t[0], t[1]))]


def _site(kind: str, i: int) -> SitePlan:
    district = DISTRICTS[i % len(DISTRICTS)]
    if kind == "apartment":
        complex_ = COMPLEXES[i % len(COMPLEXES)]
        gateway, site = f"gw-apt-{i:04d}", f"{complex_} {100 + i // 300}동 {i % 300 + 101}호"
    elif kind == "bus_stop":
        gateway, site = f"gw-bus-{i:04d}", f"정류장 {i // 100:02d}-{i % 100:03d}"
    else:
        gateway, site = f"gw-dust-{i:04d}", f"{district} 측정소 {i // len(DISTRICTS) + 1}"
    return SitePlan(gateway, district, site, kind, KIND_SENSORS[kind])


def load(sites: Sequence[SitePlan]) -> float:
    """Readings per second these gateways take together."""
    return sum(s.readings_per_s for s in sites)
