"""The alert engine's state stays bounded whatever readings arrive (clock periods, members).

Each test feeds what a misbehaving or hostile writer could send and checks the
state kept and the counters that say what was refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collector.alerts import Engine, load_rules
from collector.alerts.clock import ClockHours
from tests.unit.alerts.timeline import H, M, R, at

ROOT = Path(__file__).resolve().parents[3]
RULE_FILES = sorted(str(p) for p in (ROOT / "configs" / "rules").glob("*.yaml"))
PM25 = "pm2_5_ugm3"


def _clock(engine: Engine, rule: str = "pm2_5_advisory") -> object:
    ri = engine.index[rule]
    (member,) = engine.members[ri].values()
    assert member.clock is not None
    return member.clock


# -- clock-hour periods: bounded by the rule's backfill, not by what arrives ---------------
def test_late_readings_beyond_backfill_are_refused_after_a_live_first_reading() -> None:
    engine = Engine(load_rules(RULE_FILES))
    now = at("03-04 10:30")
    engine.advance(now)
    engine.readings([R(now, {PM25: 10.0}).point()])  # live: the 09:00 hour is judged
    keep = engine.rules.by_name["pm2_5_advisory"].clock.keep  # type: ignore[union-attr]
    engine.readings([R(now - (i + 2) * H, {PM25: 80.0}).point() for i in range(300)])
    clock = _clock(engine)
    assert len(clock.ks) <= keep + 1  # type: ignore[attr-defined]
    # The readings within the backfill are kept; the others counted, for both PM2.5 rules.
    assert engine.clock.too_old == 2 * (300 - (keep - 1))


def test_a_backlog_after_the_fresh_reading_walks_only_the_kept_periods(
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(load_rules(RULE_FILES))
    back = at("03-11 12:00")
    engine.advance(back)
    engine.readings([R(back, {PM25: 20.0}).point()])
    walked: list[int] = []
    clock = _clock(engine)
    walk = ClockHours._walk

    def counting(self: ClockHours, *args: Any, through: int) -> Any:
        walked.append(through - args[2] + 1)  # args: spec, step, first period, ...
        return walk(self, *args, through=through)

    monkeypatch.setattr(ClockHours, "_walk", counting)
    start = at("03-04 12:00")
    engine.readings([R(t, {PM25: 20.0}).point() for t in range(start, back, 10 * M)])
    keep = engine.rules.by_name["pm2_5_advisory"].clock.keep  # type: ignore[union-attr]
    assert len(clock.ks) <= keep + 1  # type: ignore[attr-defined]
    assert max(walked, default=0) <= keep + 1
