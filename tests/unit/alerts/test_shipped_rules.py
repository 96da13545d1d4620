"""Every shipped rule in configs/rules/ fires and resolves at the right moment on scripted data.

Each test reads as a timeline (Seoul time, 2024-03-04 is a Monday); the
expected list is every event of the rules under test, so an extra or a
missing event fails. All shipped files are loaded together, as the
collector loads them (rule names are unique across files).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from collector.alerts import Engine, load_rules
from tests.unit.alerts.timeline import H, M, R, St, Step, Tick, at, brief, every, feed

ROOT = Path(__file__).resolve().parents[3]
RULE_FILES = sorted(str(p) for p in (ROOT / "configs" / "rules").glob("*.yaml"))


def run(steps: Iterable[Step], *rules: str) -> list[tuple[str, str, str, float]]:
    events = feed(Engine(load_rules(RULE_FILES)), steps)
    return [e for e in brief(events) if e[1] in rules]


def test_every_shipped_rule_is_exercised_here() -> None:
    names = {r.name for r in load_rules(RULE_FILES)}
    here = Path(__file__).parent
    source = "".join(p.read_text(encoding="utf-8") for p in here.glob("test_shipped_*.py"))
    assert {n for n in names if f'"{n}"' not in source} == set()


# -- PM forecast bands: 24 h mean, 1 h buckets, 18 of 24 hours needed --------------

def hourly(value: float, field: str, start: str = "03-04 00:30", hours: int = 18) -> list[Step]:
    return list(every(at(start), at(start) + hours * H, H, {field: value}))


@pytest.mark.parametrize(("field", "rule", "value", "expected"), [
    ("pm10_ugm3", "pm10_band", 80.49, []),  # rounds to 80: 보통 (moderate), not fired
    ("pm10_ugm3", "pm10_band", 80.5, [("firing", "bad")]),  # rounds to 81: 나쁨
    ("pm10_ugm3", "pm10_band", 150.49, [("firing", "bad")]),
    ("pm10_ugm3", "pm10_band", 150.5, [("firing", "very_bad")]),  # 151: 매우나쁨
    ("pm2_5_ugm3", "pm2_5_band", 35.49, []),
    ("pm2_5_ugm3", "pm2_5_band", 35.5, [("firing", "bad")]),
    ("pm2_5_ugm3", "pm2_5_band", 75.49, [("firing", "bad")]),
    ("pm2_5_ugm3", "pm2_5_band", 75.5, [("firing", "very_bad")]),
])
def test_band_boundaries(field: str, rule: str, value: float,
                         expected: list[tuple[str, str]]) -> None:
    events = [e for e in feed(Engine(load_rules(RULE_FILES)), hourly(value, field))
              if e.rule == rule]
    assert [(e.state, e.severity) for e in events] == expected
    # The first mean comes with the 18th hourly reading (75 % coverage), at 17:30.
    assert all(e.time_ns == at("03-04 17:30") for e in events)


def test_pm10_band_over_a_day_and_a_half() -> None:
    steps = hourly(100, "pm10_ugm3", hours=24) + hourly(20, "pm10_ugm3", "03-05 00:30", 12)
    # Fires with the first valid mean (17:30), reminds every 6 h (23:30, 05:30).
    # Once k hourly 20s replace 100s the mean is (100 (24 - k) + 20 k) / 24:
    # 83.3 at k = 5 (04:30), still bad; exactly 80 at k = 6 (05:30): moderate.
    assert run(steps, "pm10_band") == [("03-04 17:30", "pm10_band", "firing", 100.0),
                                       ("03-04 23:30", "pm10_band", "firing", 100.0),
                                       ("03-05 05:30", "pm10_band", "firing", 100.0),
                                       ("03-05 05:30", "pm10_band", "resolved", 80.0)]


# -- advisories and warnings: on completed clock hours, in test_shipped_dust.py ----------

def five_min(start: str, end: str, field: str, value: float, **kw: object) -> list[Step]:
    return list(every(at(start), at(end), 5 * M, {field: value}, **kw))


def test_pm_sensor_saturated_and_stuck() -> None:
    steps = (five_min("03-04 08:00", "03-04 08:15", "pm10_ugm3", 999)
             + five_min("03-04 08:15", "03-04 08:30", "pm10_ugm3", 1000)
             + five_min("03-04 08:30", "03-04 08:40", "pm10_ugm3", 40))
    # 1000 from 08:15; held 10 min at 08:25.
    assert run(steps, "pm_saturated") == [("03-04 08:15", "pm_saturated", "pending", 1000.0),
                                          ("03-04 08:25", "pm_saturated", "firing", 1000.0),
                                          ("03-04 08:30", "pm_saturated", "resolved", 40.0)]
    frozen = [*five_min("03-04 00:00", "03-04 06:05", "pm2_5_ugm3", 7),
              R(at("03-04 06:10"), {"pm2_5_ugm3": 8})]
    # The same 7 from 00:00: six hours at 06:00 (73 readings).
    assert run(frozen, "pm_stuck") == [("03-04 06:00", "pm_stuck", "firing", 73.0),
                                       ("03-04 06:10", "pm_stuck", "resolved", 1.0)]


# -- inter-floor noise: day 06-22, night 22-06 ---------------------------------------

def noise(t: str, **fields: float) -> R:
    return R(at(t), fields, measurement="noise", site_kind="apartment", sensor="unit-1203",
             site="래미안 103동", model="nl52")


def test_impact_noise_laeq_day_and_night_limits() -> None:
    steps = [noise("03-04 21:58", laeq_1min_dba=38.9), noise("03-04 21:59", laeq_1min_dba=39),
             noise("03-04 22:00", laeq_1min_dba=34), noise("03-04 22:01", laeq_1min_dba=33.9),
             noise("03-05 05:59", laeq_1min_dba=35), noise("03-05 06:00", laeq_1min_dba=35)]
    assert run(steps, "impact_noise_laeq") == [
        ("03-04 21:59", "impact_noise_laeq", "firing", 39.0),  # day limit 39, reached
        # 22:00: 34 is exactly the night limit: still at it, no change.
        ("03-04 22:01", "impact_noise_laeq", "resolved", 33.9),
        ("03-05 05:59", "impact_noise_laeq", "firing", 35.0),  # night: 35 >= 34
        ("03-05 06:00", "impact_noise_laeq", "resolved", 35.0),  # day again: 35 < 39
    ]


def test_impact_noise_lmax_three_times_within_an_hour() -> None:
    steps = [noise("03-04 20:00", lmax_dba=57), noise("03-04 20:20", lmax_dba=56.9),
             noise("03-04 20:40", lmax_dba=58), noise("03-04 20:59", lmax_dba=57),
             noise("03-04 21:00", lmax_dba=40),  # 20:00 has left the hour
             noise("03-04 22:05", lmax_dba=52), noise("03-04 22:10", lmax_dba=52),
             noise("03-04 22:15", lmax_dba=51.9), noise("03-04 22:20", lmax_dba=52)]
    assert run(steps, "impact_noise_lmax") == [
        ("03-04 20:59", "impact_noise_lmax", "firing", 3.0),
        ("03-04 21:00", "impact_noise_lmax", "resolved", 2.0),
        ("03-04 22:20", "impact_noise_lmax", "firing", 3.0),  # night limit 52
    ]


def test_airborne_noise_laeq_5min() -> None:
    steps = [noise("03-04 12:00", laeq_5min_dba=44.9), noise("03-04 12:05", laeq_5min_dba=45),
             noise("03-04 12:10", laeq_5min_dba=44.9), noise("03-04 22:00", laeq_5min_dba=39.9),
             noise("03-04 22:05", laeq_5min_dba=40), noise("03-04 22:10", laeq_5min_dba=30)]
    assert run(steps, "airborne_noise_laeq") == [
        ("03-04 12:05", "airborne_noise_laeq", "firing", 45.0),
        ("03-04 12:10", "airborne_noise_laeq", "resolved", 44.9),
        ("03-04 22:05", "airborne_noise_laeq", "firing", 40.0),
        ("03-04 22:10", "airborne_noise_laeq", "resolved", 30.0),
    ]


def test_noise_rules_ignore_dust_zones() -> None:
    steps = [R(at("03-04 12:00"), {"laeq_1min_dba": 80}, measurement="noise")]
    assert run(steps, "impact_noise_laeq") == []


# -- bus information terminals ---------------------------------------------------------

def bus(t: str, **fields: float | bool) -> R:
    return R(at(t), fields, measurement="bus_terminal", site_kind="bus_stop", sensor="bit",
             site="강남역 정류장", gateway="gw-bus-7", model="bit-rs485")


def test_bus_display_off_for_two_minutes() -> None:
    steps = [bus("03-04 10:00", display_on=True), bus("03-04 10:01", display_on=False),
             bus("03-04 10:02", display_on=False), bus("03-04 10:02:59", display_on=False),
             bus("03-04 10:03", display_on=False), bus("03-04 10:04", display_on=1)]
    assert run(steps, "bus_display_off") == [
        ("03-04 10:01", "bus_display_off", "pending", 0.0),
        ("03-04 10:03", "bus_display_off", "firing", 0.0),
        ("03-04 10:04", "bus_display_off", "resolved", 1.0),
    ]


def test_bus_enclosure_hot_with_hysteresis() -> None:
    temps = [59.9, 60, 61, 62, 63, 64, 60, 55, 54.9]
    steps = [bus(f"03-04 14:0{i}", enclosure_temp_c=v) for i, v in enumerate(temps)]
    assert run(steps, "bus_enclosure_hot") == [
        ("03-04 14:01", "bus_enclosure_hot", "pending", 60.0),
        ("03-04 14:06", "bus_enclosure_hot", "firing", 60.0),  # 5 min at or over 60
        ("03-04 14:08", "bus_enclosure_hot", "resolved", 54.9),  # 55 is not below 55
    ]


def test_bus_door_open_for_five_minutes() -> None:
    steps = [bus(f"03-04 09:0{i}", door_open=i < 7) for i in range(9)]
    assert run(steps, "bus_door_open") == [("03-04 09:00", "bus_door_open", "pending", 1.0),
                                           ("03-04 09:05", "bus_door_open", "firing", 1.0),
                                           ("03-04 09:07", "bus_door_open", "resolved", 0.0)]


def test_bus_supply_voltage_both_limits() -> None:
    volts = [10.81, 10.8, 10.7, 12.0, 13.19, 13.2, 13.3, 13.3]
    steps = [bus(f"03-04 09:0{i}", supply_voltage_v=v) for i, v in enumerate(volts)]
    assert run(steps, "bus_supply_voltage") == [
        ("03-04 09:01", "bus_supply_voltage", "pending", 10.8),
        ("03-04 09:02", "bus_supply_voltage", "firing", 10.7),
        ("03-04 09:03", "bus_supply_voltage", "resolved", 12.0),
        ("03-04 09:05", "bus_supply_voltage", "pending", 13.2),
        ("03-04 09:06", "bus_supply_voltage", "firing", 13.3),
    ]


# -- the fleet -------------------------------------------------------------------------------

def health(t: str, **fields: float) -> R:
    return R(at(t), fields, measurement="gateway_health", sensor="agent")


def test_sensor_silent_for_ten_minutes_even_while_health_arrives() -> None:
    steps: list[Step] = [R(at("03-04 10:00"), {"pm10_ugm3": 20})]
    steps += [R(at("03-04 10:00") + i * M, {"frames_ok": i}, measurement="sensor_health")
              for i in range(1, 12)]
    steps += [Tick(at("03-04 10:09:59")), Tick(at("03-04 10:10")),
              R(at("03-04 10:12"), {"pm10_ugm3": 20})]
    assert run(steps, "sensor_silent") == [("03-04 10:10", "sensor_silent", "firing", 600.0),
                                           ("03-04 10:12", "sensor_silent", "resolved", 0.0)]


def test_gateway_offline_from_its_last_will() -> None:
    steps: list[Step] = [health("03-04 10:00", outbox_readings=0),
                         St("gw-1", False, at("03-04 10:01")), Tick(at("03-04 10:01:59")),
                         Tick(at("03-04 10:02")), St("gw-1", True, at("03-04 10:30"))]
    events = [e for e in feed(Engine(load_rules(RULE_FILES)), steps)
              if e.rule == "gateway_offline"]
    assert brief(events) == [("03-04 10:02", "gateway_offline", "firing", 60.0),
                             ("03-04 10:30", "gateway_offline", "resolved", 0.0)]
    assert events[0].message == "Gateway gw-1 offline (역삼초등학교, 강남구)"


def test_outbox_filling_and_backlog_age() -> None:
    sizes = [214748364, 214748365, 134217728, 134217727]
    ages = [899, 900, 300, 299.9]
    steps = [health(f"03-04 11:0{i}", outbox_bytes=b, oldest_age_s=a)
             for i, (b, a) in enumerate(zip(sizes, ages, strict=True))]
    assert run(steps, "outbox_filling", "outbox_backlog_old") == [
        ("03-04 11:01", "outbox_filling", "firing", 214748365.0),
        ("03-04 11:01", "outbox_backlog_old", "firing", 900.0),
        ("03-04 11:03", "outbox_filling", "resolved", 134217727.0),
        ("03-04 11:03", "outbox_backlog_old", "resolved", 299.9),
    ]
