"""Scripted timelines for alert tests: readable times in, compact exact events out.

``at("03-04 21:59")`` is Asia/Seoul local time on 2024-03-04 (a Monday);
``run()`` feeds steps to an engine (ticking the clock to each step's arrival)
and returns ``(local time, rule, state, value)`` tuples, so a test's expected
list reads as the timeline it checks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from collector.alerts import AlertEvent, Engine, Status
from collector.lineprotocol import Identity, Point

SEOUL = ZoneInfo("Asia/Seoul")
S = 1_000_000_000
M = 60 * S
H = 60 * M
_seq = itertools.count(1)


def at(text: str) -> int:
    """"MM-DD HH:MM[:SS]" in 2024, Seoul time -> ns."""
    day, clock = text.split(" ")
    parts = [int(x) for x in clock.split(":")] + [0]
    month, dom = (int(x) for x in day.split("-"))
    dt = datetime(2024, month, dom, parts[0], parts[1], parts[2], tzinfo=SEOUL)
    return int(dt.timestamp()) * S


def local(time_ns: int) -> str:
    dt = datetime.fromtimestamp(time_ns // S, SEOUL)
    text = dt.strftime("%m-%d %H:%M")
    return text + (f":{dt.second:02d}" if dt.second else "")


@dataclass(frozen=True)
class R:
    """A reading at ``t`` with ``fields``; arrives at ``arrival`` (default: when taken)."""

    t: int
    fields: Mapping[str, float | bool | str]
    measurement: str = "particulate"
    sensor: str = "pm-1"
    gateway: str = "gw-1"
    district: str = "강남구"
    site: str = "역삼초등학교"
    site_kind: str = "dust_zone"
    model: str = "pms5003"
    arrival: int | None = None
    seq: int | None = None
    epoch: str = "00ab"
    extra: Mapping[str, str] = field(default_factory=dict)

    def point(self) -> Point:
        tags = {"district": self.district, "site": self.site, "site_kind": self.site_kind,
                "gateway": self.gateway, "sensor": self.sensor, "model": self.model, **self.extra}
        seq = self.seq if self.seq is not None else next(_seq)
        return Point(self.measurement, tags, dict(self.fields), self.t,
                     Identity(seq, self.epoch))


@dataclass(frozen=True)
class Tick:
    t: int


@dataclass(frozen=True)
class St:
    gateway: str
    online: bool
    t: int


Step = R | Tick | St


def feed(engine: Engine, steps: Iterable[Step]) -> list[AlertEvent]:
    out: list[AlertEvent] = []
    for s in steps:
        if isinstance(s, Tick):
            out += engine.tick(s.t)
        elif isinstance(s, St):
            out += engine.tick(s.t)
            out += engine.status(Status(s.gateway, s.online, s.t))
        else:
            out += engine.tick(s.arrival if s.arrival is not None else s.t)
            out += engine.readings([s.point()])
    return out


def brief(events: Iterable[AlertEvent]) -> list[tuple[str, str, str, float]]:
    return [(local(e.time_ns), e.rule, e.state, round(e.value, 3)) for e in events]


def run(engine: Engine, steps: Iterable[Step]) -> list[tuple[str, str, str, float]]:
    return brief(feed(engine, steps))


def every(start: int, end: int, step: int, fields: Mapping[str, float | bool] | None = None,
          **kw: object) -> list[R]:
    """Readings from start (inclusive) to end (exclusive) every step, all with the same values."""
    return [R(t, fields or {}, **kw) for t in range(start, end, step)]  # type: ignore[arg-type]
