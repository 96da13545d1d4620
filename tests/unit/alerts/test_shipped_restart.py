"""Every shipped rule's timeline survives a collector restart anywhere; late data alarms nothing.

The timelines are those of test_shipped_rules.py (Seoul time, 2024-03-04 is a
Monday). A restart at step ``cut`` saves the engine's state as the runner
does, drops the engine and restores a fresh one: the events must be the
same as without the restart, whichever hold, window or run it cuts through.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from collector.alerts import AlertEvent, Engine, load_rules
from collector.alerts.snapshot import dump_alerts, restore
from collector.alerts.store import StateStore
from tests.alerts_helpers import load_state, stats_text
from tests.unit.alerts.test_shipped_rules import bus, five_min, health, noise
from tests.unit.alerts.timeline import M, R, St, Step, Tick, at, brief, feed

ROOT = Path(__file__).resolve().parents[3]
RULE_FILES = sorted(str(p) for p in (ROOT / "configs" / "rules").glob("*.yaml"))


def day_night_noise() -> list[Step]:
    return [noise("03-04 21:58", laeq_1min_dba=38.9, lmax_dba=57),
            noise("03-04 21:59", laeq_1min_dba=39, lmax_dba=58),
            noise("03-04 22:00", laeq_1min_dba=34, lmax_dba=52, laeq_5min_dba=40),
            noise("03-04 22:01", laeq_1min_dba=33.9, lmax_dba=52),
            noise("03-04 22:05", laeq_5min_dba=39.9),
            noise("03-05 05:59", laeq_1min_dba=35),
            noise("03-05 06:00", laeq_1min_dba=35, laeq_5min_dba=44.9)]


def terminal() -> list[Step]:
    temps = [59.9, 60, 61, 62, 63, 64, 60, 55, 54.9]
    steps: list[Step] = [bus(f"03-04 14:0{i}", enclosure_temp_c=v, door_open=i < 7,
                             display_on=i not in (2, 3, 4, 5), supply_voltage_v=10.8 + i / 10)
                         for i, v in enumerate(temps)]
    return steps


def fleet() -> list[Step]:
    steps: list[Step] = [R(at("03-04 10:00"), {"pm10_ugm3": 20}),
                         health("03-04 10:00", outbox_bytes=214748365, oldest_age_s=900)]
    steps += [health(f"03-04 10:0{i}", outbox_bytes=200000000, oldest_age_s=600)
              for i in range(1, 4)]
    steps += [St("gw-1", False, at("03-04 10:04")), Tick(at("03-04 10:05")),
              Tick(at("03-04 10:10")), St("gw-1", True, at("03-04 10:11")),
              R(at("03-04 10:12"), {"pm10_ugm3": 20}),
              health("03-04 10:13", outbox_bytes=1, oldest_age_s=1)]
    return steps


def dust_sensor() -> list[Step]:
    return (five_min("03-04 08:00", "03-04 08:15", "pm10_ugm3", 999)
            + five_min("03-04 08:15", "03-04 08:30", "pm10_ugm3", 1000)
            + five_min("03-04 08:30", "03-04 08:40", "pm10_ugm3", 40))


SCRIPTS: dict[str, Callable[[], list[Step]]] = {
    "noise": day_night_noise, "terminal": terminal, "fleet": fleet, "dust_sensor": dust_sensor}


def whole(steps: list[Step]) -> list[AlertEvent]:
    return feed(Engine(load_rules(RULE_FILES)), steps)


def with_restart(steps: list[Step], cut: int, tmp: Path) -> list[AlertEvent]:
    engine = Engine(load_rules(RULE_FILES))
    out = feed(engine, steps[:cut])
    store = StateStore(tmp)
    store.save(dump_alerts(engine), stats_text(engine))
    fresh = Engine(load_rules(RULE_FILES))
    assert restore(fresh, *load_state(store)) == []
    return out + feed(fresh, steps[cut:])


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_restart_at_any_step_gives_the_same_events(name: str, tmp_path: Path) -> None:
    steps = SCRIPTS[name]()
    expected = whole(steps)
    assert expected
    for cut in range(1, len(steps)):
        assert with_restart(steps, cut, tmp_path / str(cut)) == expected, cut


def test_each_script_covers_its_rules() -> None:
    rules = {e.rule for name in SCRIPTS for e in whole(SCRIPTS[name]())}
    assert rules == {"impact_noise_laeq", "impact_noise_lmax", "airborne_noise_laeq",
                     "bus_enclosure_hot", "bus_door_open", "bus_display_off",
                     "bus_supply_voltage", "outbox_filling", "outbox_backlog_old",
                     "gateway_offline", "sensor_silent", "pm_saturated"}


def test_a_late_noise_backlog_raises_nothing_as_new_but_counts() -> None:
    # The gateway was cut off 22:10-22:40; its readings arrive at 22:45 behind live ones.
    steps: list[Step] = [noise("03-04 22:44", laeq_1min_dba=30, lmax_dba=40)]
    steps += [R(at("03-04 22:10") + i * M, {"laeq_1min_dba": 50, "lmax_dba": 70},
                measurement="noise", site_kind="apartment", sensor="unit-1203",
                site="래미안 103동", model="nl52", arrival=at("03-04 22:45"))
              for i in range(30)]
    steps.append(noise("03-04 22:46", laeq_1min_dba=30, lmax_dba=40))
    engine = Engine(load_rules(RULE_FILES))
    events = brief(e for e in feed(engine, steps) if "noise" in e.rule)
    # The late LAeq readings raise nothing; their Lmax exceedances are in the hour the
    # next live reading looks at (21:46-22:46], which then meets "3 times within an hour".
    assert events == [("03-04 22:46", "impact_noise_lmax", "firing", 30.0)]
    assert engine.counts["late"] == 30


def test_a_dip_under_the_limit_while_pending_withdraws_the_hold() -> None:
    # 58 is above the clear level (55) but under the raise level (60): before the alert
    # fires it breaks the 5 minutes, so 14:04-14:08 is not a hold.
    temps = [60, 61, 58, 60, 61, 62, 63, 64, 65]
    steps = [bus(f"03-04 14:0{i}", enclosure_temp_c=v) for i, v in enumerate(temps)]
    events = [e for e in brief(whole(steps)) if e[1] == "bus_enclosure_hot"]
    assert events == [("03-04 14:00", "bus_enclosure_hot", "pending", 60.0),
                      ("03-04 14:02", "bus_enclosure_hot", "inactive", 58.0),
                      ("03-04 14:03", "bus_enclosure_hot", "pending", 60.0),
                      ("03-04 14:08", "bus_enclosure_hot", "firing", 65.0)]
