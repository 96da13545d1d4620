"""Day and night windows on Seoul wall time, half-open, with weekday windows that wrap midnight."""

from __future__ import annotations

import pytest

from collector.alerts.schedule import DAYS, Schedules, Window, load_zone, parse_hours
from tests.unit.alerts.timeline import S, at

ALL = frozenset(range(7))
DAY_NIGHT = Schedules(load_zone("Asia/Seoul"),
                      (Window("day", 6 * 60, 22 * 60, ALL), Window("night", 22 * 60, 6 * 60, ALL)))


@pytest.mark.parametrize(("when", "name"), [
    ("03-04 05:59:59", "night"), ("03-04 06:00", "day"), ("03-04 21:59:59", "day"),
    ("03-04 22:00", "night"), ("03-04 23:59:59", "night"), ("03-05 00:00", "night"),
])
def test_day_night_boundaries(when: str, name: str) -> None:
    assert DAY_NIGHT.at(at(when)) == name


def test_utc_times_are_converted_to_seoul() -> None:
    # 2024-03-04 21:00 UTC is 06:00 on the 5th in Seoul (UTC+9, no daylight saving).
    assert DAY_NIGHT.at(at("03-05 06:00")) == "day"
    assert DAY_NIGHT.at(at("03-05 06:00") - S) == "night"


def test_a_wrapping_window_belongs_to_the_day_it_starts() -> None:
    fri = DAYS.index("fri")
    s = Schedules(load_zone("Asia/Seoul"), (Window("fri_night", 22 * 60, 6 * 60,
                                                   frozenset({fri})),))
    # 2024-03-08 is a Friday.
    assert s.at(at("03-08 21:59")) is None
    assert s.at(at("03-08 22:00")) == "fri_night"
    assert s.at(at("03-09 05:59")) == "fri_night"  # Saturday morning, Friday's night
    assert s.at(at("03-09 22:00")) is None  # Saturday night
    assert s.at(at("03-08 02:00")) is None  # Friday morning is Thursday's night


def test_other_zones_are_honoured() -> None:
    utc = Schedules(load_zone("UTC"), (Window("day", 6 * 60, 22 * 60, ALL),))
    assert utc.at(at("03-04 15:00")) == "day"  # 06:00 UTC
    assert utc.at(at("03-04 14:59")) is None


@pytest.mark.parametrize(("text", "minutes"), [("06-22", (360, 1320)), ("22-06", (1320, 360)),
                                               ("06:30-22:15", (390, 1335)), ("00-24", (0, 1440))])
def test_parse_hours(text: str, minutes: tuple[int, int]) -> None:
    assert parse_hours(text) == minutes


@pytest.mark.parametrize("text", ["6 to 22", "06-25", "06:61-07", "08-08"])
def test_bad_hours(text: str) -> None:
    with pytest.raises(ValueError, match=r"hours|window"):
        parse_hours(text)
