"""The shipped PM advisories and warnings on scripted timelines of completed clock hours.

대기환경보전법 시행규칙 별표 7 (configs/rules/dust.yaml, docs/alerts.md): a
주의보 when a station's hourly mean is at or over the limit for 2 consecutive
hours, lifted when an hourly mean is below the lifting level; a 경보 goes back
to 주의보 below the advisory level. Seoul time; 2024-03-04 is a Monday. Each
expected event is (when the engine emitted it, its event time, rule, state,
value): the first is the delay that remains, the second the hour the
regulation names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from collector.alerts import AlertEvent, Engine, load_rules
from collector.alerts.errors import RuleError
from collector.alerts.snapshot import dump_alerts, restore
from collector.alerts.store import StateStore
from tests.alerts_helpers import load_state, rules_from_text, stats_text
from tests.unit.alerts.timeline import H, M, R, Step, Tick, at, brief, feed, local

ROOT = Path(__file__).resolve().parents[3]
RULE_FILES = sorted(str(p) for p in (ROOT / "configs" / "rules").glob("*.yaml"))
PM_RULES = ("pm10_advisory", "pm10_warning", "pm2_5_advisory", "pm2_5_warning")
PM10, PM25 = "pm10_ugm3", "pm2_5_ugm3"

Event = tuple[str, str, str, str, float]


def hours(field: str, means: Sequence[float], start: str = "03-04 10:00", offset: int = 0,
          **kw: object) -> list[Step]:
    """Twelve readings per clock hour (every 5 min from start + offset), one value per hour."""
    t0 = at(start)
    return [R(t0 + i * H + j * 5 * M + offset, {field: v}, **kw)  # type: ignore[arg-type]
            for i, v in enumerate(means) for j in range(12)]


def timeline(steps: Iterable[Step], engine: Engine | None = None,
             rules: Sequence[str] = PM_RULES) -> list[Event]:
    """(emitted at, event time, rule, state, value) of the named rules' events."""
    engine = engine or Engine(load_rules(RULE_FILES))
    out: list[Event] = []
    for s in steps:
        arrival = s.arrival if isinstance(s, R) and s.arrival is not None else s.t
        for e in feed(engine, [s]):
            if e.rule in rules:
                out.append((local(arrival), local(e.time_ns), e.rule, e.state, e.value))
    return out


def then(field: str, value: float, t: str) -> R:
    """One reading that completes the hour before it."""
    return R(at(t), {field: value})


# -- the trigger: two consecutive hourly means, judged when the second hour completes -----

def test_80_then_70_is_no_advisory() -> None:
    steps = [*hours(PM25, [80, 70, 20]), then(PM25, 20, "03-04 13:00")]
    assert timeline(steps) == [
        ("03-04 11:00", "03-04 11:00", "pm2_5_advisory", "pending", 80.0),
        ("03-04 12:00", "03-04 12:00", "pm2_5_advisory", "inactive", 70.0),  # withdrawn
    ]


def test_80_90_gives_the_advisory_at_12_and_lifts_on_the_first_hour_below_35() -> None:
    steps = [*hours(PM25, [80, 90, 40, 35, 34]), then(PM25, 20, "03-04 15:00")]
    assert timeline(steps) == [
        ("03-04 11:00", "03-04 11:00", "pm2_5_advisory", "pending", 80.0),
        ("03-04 12:00", "03-04 12:00", "pm2_5_advisory", "firing", 90.0),
        # 13-14 is exactly 35: not below, the advisory stays; 14-15 is 34: lifted at 15:00.
        ("03-04 15:00", "03-04 15:00", "pm2_5_advisory", "resolved", 34.0),
    ]


@pytest.mark.parametrize(("rule", "field", "limit", "clear"), [
    ("pm10_advisory", PM10, 150, 100),
    ("pm10_warning", PM10, 300, 150),
    ("pm2_5_advisory", PM25, 75, 35),
    ("pm2_5_warning", PM25, 150, 75),
])
def test_both_sides_of_every_limit(rule: str, field: str, limit: float, clear: float) -> None:
    # Hourly means are rounded half up first: limit - 0.51 is below it, limit - 0.5 reaches it.
    below = [*hours(field, [limit - 0.51, limit - 0.51]), then(field, 0, "03-04 12:00")]
    assert [e[3] for e in timeline(below, rules=[rule])] == []
    reach = hours(field, [limit - 0.5, limit, clear - 0.5, clear - 0.51])
    reach.append(then(field, 0, "03-04 14:00"))
    assert timeline(reach, rules=[rule]) == [
        ("03-04 11:00", "03-04 11:00", rule, "pending", limit),
        ("03-04 12:00", "03-04 12:00", rule, "firing", limit),
        # clear - 0.5 rounds to clear: not below it, stays; clear - 0.51 is below: lifted.
        ("03-04 14:00", "03-04 14:00", rule, "resolved", clear - 1),
    ]


# -- warnings fall back to advisories ------------------------------------------------------

@pytest.mark.parametrize(("field", "means", "advisory", "warning"), [
    (PM25, [160, 170, 80, 75, 74, 35, 34], "pm2_5_advisory", "pm2_5_warning"),
    (PM10, [310, 300, 160, 150, 149, 100, 99], "pm10_advisory", "pm10_warning"),
])
def test_a_warning_falls_back_to_the_advisory(field: str, means: list[float], advisory: str,
                                              warning: str) -> None:
    steps = [*hours(field, means), then(field, 0, "03-04 17:00")]
    first, second = float(means[0]), float(means[1])
    assert timeline(steps) == [
        ("03-04 11:00", "03-04 11:00", advisory, "pending", first),
        ("03-04 11:00", "03-04 11:00", warning, "pending", first),
        ("03-04 12:00", "03-04 12:00", advisory, "firing", second),
        ("03-04 12:00", "03-04 12:00", warning, "firing", second),
        # The warning stays while hourly means reach the advisory level (12-13, 13-14)
        # and ends with the first hour below it; the advisory stays on...
        ("03-04 15:00", "03-04 15:00", warning, "resolved", float(means[4])),
        # ...until its own lifting level: 15-16 is at it, 16-17 below.
        ("03-04 17:00", "03-04 17:00", advisory, "resolved", float(means[6])),
    ]


def test_the_displays_say_warning_then_advisory() -> None:
    engine = Engine(load_rules(RULE_FILES))
    events = feed(engine, [*hours(PM25, [160, 170, 60]), then(PM25, 60, "03-04 13:00")])
    shown = [(local(e.time_ns), e.state, e.display) for e in events
             if e.rule in PM_RULES and e.notify]
    assert shown == [("03-04 12:00", "firing", "강남구 초미세먼지 주의보 - 외출을 자제하세요"),
                     ("03-04 12:00", "firing", "강남구 초미세먼지 경보 - 실외활동을 금지하세요"),
                     ("03-04 13:00", "resolved", "강남구 초미세먼지 경보 - 실외활동을 금지하세요")]
    open_now = [g.rule.name for g in engine.open_alerts()]
    assert open_now == ["pm2_5_advisory"]


# -- the delay that remains -------------------------------------------------------------------

def test_known_with_the_first_reading_after_the_hour() -> None:
    # A station reporting at :03, :08, ...: the 11-12 hour is judged by the 12:03 reading.
    steps = [*hours(PM25, [80, 90], offset=3 * M), R(at("03-04 12:03"), {PM25: 90})]
    assert timeline(steps)[-1] == ("03-04 12:03", "03-04 12:00", "pm2_5_advisory", "firing",
                                   90.0)


def test_a_quiet_station_is_judged_when_late_after_has_passed() -> None:
    # Nothing after 11:55: the hour is final at 12:10 (late_after 10m in dust.yaml).
    steps = [*hours(PM25, [80, 90]), Tick(at("03-04 12:09:59")), Tick(at("03-04 12:10"))]
    assert timeline(steps)[-1] == ("03-04 12:10", "03-04 12:00", "pm2_5_advisory", "firing",
                                   90.0)
    # A pending run is withdrawn when the next hour ends empty (13:00 + 10 min).
    steps = [*hours(PM25, [20, 80]), Tick(at("03-04 12:10")), Tick(at("03-04 13:09:59")),
             Tick(at("03-04 13:10"))]
    assert timeline(steps) == [
        ("03-04 12:10", "03-04 12:00", "pm2_5_advisory", "pending", 80.0),
        ("03-04 13:10", "03-04 13:00", "pm2_5_advisory", "inactive", 0.0)]


# -- coverage: an hour counts with 9 of its twelve 5-minute slots --------------------------

@pytest.mark.parametrize(("n", "fires"), [(8, False), (9, True)])
def test_an_hour_counts_with_three_quarters_of_its_slots(n: int, fires: bool) -> None:
    steps: list[Step] = [*hours(PM25, [80])]
    steps += [R(at("03-04 11:00") + j * 5 * M, {PM25: 90}) for j in range(n)]
    steps.append(then(PM25, 90, "03-04 12:00"))
    states = [e[3] for e in timeline(steps)]
    assert states == (["pending", "firing"] if fires else ["pending", "inactive"])


def test_an_uncovered_hour_does_not_lift_a_firing_advisory() -> None:
    steps = [*hours(PM25, [80, 90]), then(PM25, 20, "03-04 12:00"),  # 12-13: one reading
             *hours(PM25, [20], start="03-04 13:00"), then(PM25, 20, "03-04 14:00")]
    assert [(e[1], e[3]) for e in timeline(steps)] == [
        ("03-04 11:00", "pending"), ("03-04 12:00", "firing"), ("03-04 14:00", "resolved")]


def test_one_alert_per_district_held_by_each_station() -> None:
    steps: list[Step] = []
    for sensor, gw, district in (("a", "gw-1", "강남구"), ("b", "gw-2", "강남구"),
                                 ("c", "gw-3", "서초구")):
        steps += hours(PM10, [200, 200], sensor=sensor, gateway=gw, district=district)
        steps.append(R(at("03-04 12:00"), {PM10: 200}, sensor=sensor, gateway=gw,
                       district=district))
    steps.sort(key=lambda s: s.t)
    engine = Engine(load_rules(RULE_FILES))
    fired = [e for e in feed(engine, steps) if e.rule == "pm10_advisory" and e.state == "firing"]
    assert sorted((e.scope["district"], local(e.time_ns)) for e in fired) == [
        ("강남구", "03-04 12:00"), ("서초구", "03-04 12:00")]
    held = {g.scope["district"]: g.n_held for g in engine.open_alerts()
            if g.rule.name == "pm10_advisory"}
    assert held == {"강남구": 2, "서초구": 1}


# -- late data completing an hour -------------------------------------------------------------

def backlog(late_value: float) -> list[Step]:
    """10-11 live at 80; 11-12 arrives at 12:20 behind live readings from 12:00."""
    steps: list[Step] = [*hours(PM25, [80])]
    steps += [R(at("03-04 12:00") + j * 5 * M, {PM25: 60}) for j in range(5)]
    steps += [R(at("03-04 11:00") + j * 5 * M, {PM25: late_value}, arrival=at("03-04 12:20"))
              for j in range(12)]
    steps += [R(at("03-04 12:25") + j * 5 * M, {PM25: 60}) for j in range(7)]
    return [*steps, *hours(PM25, [20], start="03-04 13:00"), then(PM25, 20, "03-04 14:00")]


def test_a_backlog_that_completes_an_hour_is_reported_late_not_new() -> None:
    engine = Engine(load_rules(RULE_FILES))
    events = [e for e in feed(engine, backlog(90)) if e.rule == "pm2_5_advisory"]
    assert [(local(e.time_ns), e.state, e.value, e.late, e.notify) for e in events] == [
        ("03-04 11:00", "pending", 80.0, False, False),
        ("03-04 12:00", "inactive", 0.0, False, False),  # 11-12 had no data at 12:00
        ("03-04 12:00", "firing", 90.0, True, True),  # re-judged at 12:20: marked late
        ("03-04 14:00", "resolved", 20.0, False, True),  # 12-13 is 60: stays; 13-14 lifts
    ]
    assert events[2].alert_id == events[3].alert_id
    assert engine.counts["late"] == 12


def test_hours_first_judged_on_a_drained_backlog_are_reported_late() -> None:
    # The uplink was down 10:00-13:05; the backlog drains in order at 13:05, then live data.
    steps: list[Step] = [R(s.t, s.fields, arrival=at("03-04 13:05"))
                         for s in hours(PM25, [80, 90, 90]) if isinstance(s, R)]
    steps += hours(PM25, [90, 20], start="03-04 13:05")
    steps.append(then(PM25, 20, "03-04 15:05"))
    engine = Engine(load_rules(RULE_FILES))
    events = [e for e in feed(engine, steps) if e.rule == "pm2_5_advisory"]
    # The clock is past those hours: each backlog reading re-judges them as it lands,
    # and the 12:00 advisory comes out (at 13:05) marked late. Live hours go on from it:
    # 13-14 is 90, 14-15 (the 14:00 reading at 90, then 20s) is 26.
    assert [(local(e.time_ns), e.state, e.late) for e in events] == [
        ("03-04 12:00", "firing", True), ("03-04 15:00", "resolved", False)]


def test_a_backlog_below_the_limit_changes_nothing() -> None:
    events = timeline(backlog(70))
    assert [(e[1], e[3]) for e in events] == [("03-04 11:00", "pending"),
                                              ("03-04 12:00", "inactive")]


def test_late_readings_that_lower_a_judged_hour_withdraw_the_advisory_as_late() -> None:
    steps: list[Step] = [*hours(PM25, [80])]
    steps += [R(at("03-04 11:00") + j * 5 * M, {PM25: 80}) for j in range(9)]  # 9 of 12
    steps.append(then(PM25, 50, "03-04 12:00"))
    steps += [R(at("03-04 11:45") + j * 5 * M, {PM25: 0}, arrival=at("03-04 12:30"))
              for j in range(3)]
    engine = Engine(load_rules(RULE_FILES))
    events = [e for e in feed(engine, steps) if e.rule == "pm2_5_advisory"]
    # 11-12 was 80 on 9 slots (fired at 12:00); with the first late zero it is 72,
    # under 75: the two hours never met the rule, the advisory is withdrawn as late.
    assert [(local(e.time_ns), e.state, e.value, e.late) for e in events] == [
        ("03-04 11:00", "pending", 80.0, False), ("03-04 12:00", "firing", 80.0, False),
        ("03-04 12:00", "resolved", 72.0, True)]


def test_readings_older_than_the_backfill_are_ignored_and_state_is_bounded() -> None:
    engine = Engine(load_rules(RULE_FILES))
    feed(engine, hours(PM25, [20] * 72, start="03-01 00:00"))
    ri = engine.index["pm2_5_advisory"]
    (member,) = engine.members[ri].values()
    assert member.clock is not None and len(member.clock.ks) <= 7  # 6 h backfill + 1
    old = R(at("03-03 12:00"), {PM25: 900}, arrival=at("03-03 23:56"))
    assert [e for e in feed(engine, [old]) if e.rule in PM_RULES] == []
    assert engine.clock.too_old == 2  # counted for both PM2.5 rules


# -- a collector restart mid-hold -------------------------------------------------------------

def episode() -> list[Step]:
    return [*hours(PM25, [60, 80, 160, 170, 70, 20]), then(PM25, 20, "03-04 16:00")]


@pytest.mark.parametrize("cut", [12, 18, 24, 30, 36, 47, 48, 60, 66])
def test_a_restart_mid_hold_gives_the_same_events(tmp_path: Path, cut: int) -> None:
    steps = episode()
    whole = feed(Engine(load_rules(RULE_FILES)), steps)
    engine = Engine(load_rules(RULE_FILES))
    before = feed(engine, steps[:cut])
    store = StateStore(tmp_path)
    store.save(dump_alerts(engine), stats_text(engine))
    fresh = Engine(load_rules(RULE_FILES))
    assert restore(fresh, *load_state(store)) == []
    after = feed(fresh, steps[cut:])
    assert pm_only(before + after) == pm_only(whole)
    assert [(e[0], e[1], e[2]) for e in brief(pm_only(whole))] == [
        ("03-04 12:00", "pm2_5_advisory", "pending"),
        ("03-04 13:00", "pm2_5_advisory", "firing"),
        ("03-04 13:00", "pm2_5_warning", "pending"),
        ("03-04 14:00", "pm2_5_warning", "firing"),
        ("03-04 15:00", "pm2_5_warning", "resolved"),  # 14-15 is 70: back to the advisory
        ("03-04 16:00", "pm2_5_advisory", "resolved"),
    ]


def pm_only(events: list[AlertEvent]) -> list[AlertEvent]:
    return [e for e in events if e.rule in PM_RULES]


def test_a_restart_without_the_statistics_keeps_the_advisory(tmp_path: Path) -> None:
    engine = Engine(load_rules(RULE_FILES))
    feed(engine, [*hours(PM25, [80, 90]), then(PM25, 50, "03-04 12:00")])
    fresh = Engine(load_rules(RULE_FILES))
    assert restore(fresh, dump_alerts(engine), None) == []
    # The hours restart empty; the firing advisory stays until a complete hour below 35.
    steps = [*hours(PM25, [50, 30], start="03-04 12:05"), then(PM25, 30, "03-04 14:05")]
    assert [(e[1], e[3]) for e in timeline(steps, fresh)] == [("03-04 14:00", "resolved")]


# -- the rule language ------------------------------------------------------------------------

KOLKATA = """timezone: Asia/Kolkata
rules:
  - name: hourly
    kind: threshold
    field: v
    mean: {window: 1h, clock: true, step: 10m, min_coverage: 0.5, min_count: 4}
    above: 10
    consecutive: 1
"""


def test_clock_hours_follow_the_files_time_zone() -> None:
    # Kolkata is UTC+5:30: its clock hours begin at half past in Seoul (UTC+9).
    steps = [R(at("03-04 12:30") + j * 10 * M, {"v": 20}) for j in range(4)]
    steps.append(R(at("03-04 13:30"), {"v": 0}))
    events = feed(Engine(rules_from_text(KOLKATA)), steps)
    assert [(local(e.time_ns), e.state) for e in events] == [("03-04 13:30", "firing")]
    # Three readings are not min_count, though they cover half the slots.
    fewer = [*steps[:3], steps[-1]]
    assert feed(Engine(rules_from_text(KOLKATA)), fewer) == []


@pytest.mark.parametrize(("change", "message"), [
    ("consecutive: 1", "rules[0].mean.step: a clock mean needs step"),
    ("step: 10m", "rules[0].mean.window: a clock period must divide a day"),
    ("clock: true", "rules[0].consecutive: counts clock periods; it needs mean.clock: true"),
    ("above: 10", "rules[0].hold: a clock mean holds for `consecutive` periods"),
])
def test_clock_mean_mistakes_are_reported(change: str, message: str) -> None:
    text = {
        "consecutive: 1": KOLKATA.replace("step: 10m, ", ""),
        "step: 10m": KOLKATA.replace("window: 1h", "window: 7h"),
        "clock: true": KOLKATA.replace("clock: true, ", "").replace(", min_count: 4", ""),
        "above: 10": KOLKATA.replace("above: 10", "above: 10\n    hold: 2h"),
    }[change]
    with pytest.raises(RuleError) as err:
        rules_from_text(text)
    assert message in str(err.value)
