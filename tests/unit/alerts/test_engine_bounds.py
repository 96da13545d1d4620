"""The alert engine's state stays bounded whatever readings arrive (clock periods, members).

Each test feeds what a misbehaving or hostile writer could send and checks the
state kept and the counters that say what was refused.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from collector.alerts import Engine, load_rules
from collector.alerts.clock import ClockHours
from collector.alerts.errors import RuleError
from collector.alerts.replay import ReadingsError, read_csv
from collector.alerts.table import EngineLimits
from tests.alerts_helpers import rules_from_text
from tests.unit.alerts.timeline import SEOUL, H, M, R, at, feed, local

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


# -- a reading from the far future is not live and moves nothing -------------------------
def test_a_far_future_reading_does_not_poison_the_series() -> None:
    engine = Engine(load_rules(RULE_FILES))
    t0 = at("03-04 10:00")
    events = feed(engine, [R(t0 + 5 * 365 * 24 * H, {PM25: 10.0}, arrival=t0)])
    for i, v in enumerate([80.0, 90.0, 90.0]):
        events += feed(engine, [R(t0 + i * H + j * 5 * M, {PM25: v}) for j in range(12)])
    fired = [(local(e.time_ns), e.state, e.late) for e in events if e.rule == "pm2_5_advisory"]
    assert fired == [("03-04 11:00", "pending", False), ("03-04 12:00", "firing", False)]
    assert engine.counts["future"] == 1
    assert len(_clock(engine).ks) == 3  # type: ignore[attr-defined]  # the three real hours


def test_a_reading_within_the_skew_is_live() -> None:
    engine = Engine(load_rules(RULE_FILES), EngineLimits(max_future_ns=5 * M))
    t0 = at("03-04 10:00")
    engine.advance(t0)
    engine.readings([R(t0 + 4 * M, {PM25: 10.0}).point(), R(t0 + 6 * M, {PM25: 10.0}).point()])
    ri = engine.index["pm2_5_advisory"]
    (member,) = engine.members[ri].values()
    assert member.last_t == t0 + 4 * M
    assert engine.counts["future"] == 1


# -- members: a bounded table per rule ----------------------------------------------------
PM_RULE = ("defaults: {flap: {enabled: false}}\nrules:\n"
           "  - {name: pm, kind: threshold, field: v, above: 150, clear: 100}\n")


def test_new_series_beyond_the_cap_evict_the_least_recently_seen_quiet_ones() -> None:
    engine = Engine(load_rules(RULE_FILES), EngineLimits(max_members=10))
    t0 = at("03-04 10:00")
    for n in range(100):
        feed(engine, [R(t0 + n * M, {PM25: 10.0, "pm10_ugm3": 20.0}, sensor=f"s{n}")])
    assert max(len(table) for table in engine.members) == 10
    ri = engine.index["pm2_5_advisory"]
    assert [k[1] for k in engine.members[ri]] == [f"s{n}" for n in range(90, 100)]
    assert engine.tables.evicted > 0 and engine.tables.refused == 0


def test_a_member_with_an_alert_is_never_evicted_and_a_full_table_refuses() -> None:
    engine = Engine(rules_from_text(PM_RULE), EngineLimits(max_members=3))
    t0 = at("03-04 10:00")
    events = feed(engine, [R(t0, {"v": 200.0}, sensor="hot"), R(t0, {"v": 10.0}, sensor="a")])
    events += feed(engine, [R(t0 + M, {"v": 10.0}, sensor=f"s{n}") for n in range(5)])
    assert set(k[1] for k in engine.members[0]) == {"hot", "s3", "s4"}
    events += feed(engine, [R(t0 + 2 * M, {"v": 200.0}, sensor=f"h{n}") for n in range(2)])
    assert set(k[1] for k in engine.members[0]) == {"hot", "h0", "h1"}
    before = engine.tables.refused
    events += feed(engine, [R(t0 + 3 * M, {"v": 10.0}, sensor="late-comer")])
    assert engine.tables.refused == before + 1  # all three fire: the new series is refused
    events += feed(engine, [R(t0 + 4 * M, {"v": 10.0}, sensor="hot")])
    assert [(e.scope["sensor"], e.state) for e in events] == [
        ("hot", "firing"), ("h0", "firing"), ("h1", "firing"), ("hot", "resolved")]
    assert len(engine.open) == 2


def test_the_gateway_directory_is_bounded() -> None:
    engine = Engine(rules_from_text(PM_RULE), EngineLimits(max_gateways=5))
    t0 = at("03-04 10:00")
    feed(engine, [R(t0 + n, {"v": 1.0}, gateway=f"gw-{n}") for n in range(50)])
    assert list(engine.directory) == [f"gw-{n}" for n in range(45, 50)]
    assert engine.tables.gateways_forgotten == 45


# -- sources: the shipped sensor_silent rule watches cityedge gateways' sensors only -------
def test_line_protocol_and_airrohr_series_ending_is_not_a_silent_sensor() -> None:
    engine = Engine(load_rules(RULE_FILES))
    t0 = at("03-04 10:00")
    points = [replace(R(t0, {"cpu_usage": 1.5}, measurement="procstat", sensor=f"t{i:012x}",
                        gateway="gw-telegraf").point(), source="line_protocol")
              for i in range(3)]
    points.append(replace(R(t0, {PM25: 10.0}, sensor="sds011", gateway="esp8266-1").point(),
                          source="airrohr"))
    points.append(R(t0, {PM25: 10.0}, sensor="pm-1", gateway="gw-1").point())  # an agent's
    engine.advance(t0)
    engine.readings(points)
    silent = [e.scope["sensor"] for e in engine.tick(t0 + 11 * M) if e.rule == "sensor_silent"]
    assert silent == ["pm-1"]


def test_a_rule_names_the_sources_it_takes() -> None:
    rules = rules_from_text(
        "rules:\n  - {name: lp, kind: threshold, field: v, above: 1, sources: [line_protocol]}\n")
    engine = Engine(rules)
    t0 = at("03-04 10:00")
    engine.advance(t0)
    events = engine.readings([R(t0, {"v": 5.0}, sensor="a").point(),
                              replace(R(t0, {"v": 5.0}, sensor="b").point(),
                                      source="line_protocol")])
    assert [e.scope["sensor"] for e in events] == ["b"]


def test_a_readings_file_says_the_source_per_row() -> None:
    text = ("time,measurement,gateway,sensor,source,v\n"
            "0,m,gw,a,,1\n0,m,gw,b,line_protocol,1\n")
    items = list(read_csv(text, SEOUL))
    assert [p.source for _, p in items] == ["uplink", "line_protocol"]  # type: ignore[union-attr]
    with pytest.raises(ReadingsError, match="source"):
        list(read_csv("time,measurement,source,v\n0,m,mqtt,1\n", SEOUL))


@pytest.mark.parametrize(("sources", "says"), [
    ("[mqtt]", "expected one of 'uplink', 'line_protocol', 'airrohr'"),
    ("[]", "expected at least one")])
def test_a_rule_file_names_known_sources(sources: str, says: str) -> None:
    with pytest.raises(RuleError, match=says):
        rules_from_text(f"rules:\n  - {{name: s, kind: silence, after: 1m, sources: {sources}}}\n")


def test_a_forgotten_member_takes_its_resolved_group_along() -> None:
    engine = Engine(rules_from_text(PM_RULE), EngineLimits(max_members=1))
    t0 = at("03-04 10:00")
    events = feed(engine, [R(t0, {"v": 200.0}, sensor="x"), R(t0 + M, {"v": 10.0}, sensor="x")])
    assert [e.state for e in events] == ["firing", "resolved"]
    assert list(engine.groups[0]) == [("gw-1", "x")]
    feed(engine, [R(t0 + 2 * M, {"v": 10.0}, sensor="y")])
    assert list(engine.members[0]) == [("gw-1", "y")] and engine.groups[0] == {}
