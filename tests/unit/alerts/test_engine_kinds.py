"""Each rule kind on a scripted timeline: exact events, and both sides of every boundary."""

from __future__ import annotations

from collector.alerts import Engine
from collector.lineprotocol import Point
from tests.alerts_helpers import rules_from_text
from tests.unit.alerts.timeline import H, M, R, Step, Tick, at, every, feed, run


def engine(rule_yaml: str, extra: str = "") -> Engine:
    text = ("schedules:\n  day: {hours: '06-22'}\n  night: {hours: '22-06'}\n"
            "defaults: {flap: {enabled: false}}\n" + extra + "rules:\n" + rule_yaml)
    return Engine(rules_from_text(text))


def test_threshold_raise_at_the_limit_hold_then_clear_strictly_below() -> None:
    e = engine("  - {name: pm, kind: threshold, field: v, above: 150, clear: 100, hold: 10m}\n")
    steps = [R(at("03-04 10:00"), {"v": 149.9})]
    steps += every(at("03-04 10:01"), at("03-04 10:11"), M, {"v": 150})
    steps += [R(at("03-04 10:10:59"), {"v": 151}),  # 9 min 59 s held: still pending
              R(at("03-04 10:11"), {"v": 150}),  # exactly the hold: fires
              R(at("03-04 10:12"), {"v": 100}),  # at the clear level: not cleared
              R(at("03-04 10:13"), {"v": 99.9})]
    assert run(e, steps) == [
        ("03-04 10:01", "pm", "pending", 150.0),
        ("03-04 10:11", "pm", "firing", 150.0),
        ("03-04 10:13", "pm", "resolved", 99.9),
    ]


def test_threshold_below_with_hysteresis() -> None:
    e = engine("  - {name: volt, kind: threshold, field: v, below: 11, clear: 11.5}\n")
    steps = [R(at("03-04 10:00"), {"v": 11.01}), R(at("03-04 10:01"), {"v": 11.0}),
             R(at("03-04 10:02"), {"v": 11.5}), R(at("03-04 10:03"), {"v": 11.51})]
    assert run(e, steps) == [("03-04 10:01", "volt", "firing", 11.0),
                             ("03-04 10:03", "volt", "resolved", 11.51)]


def test_rolling_mean_window_edge_on_event_time() -> None:
    e = engine("  - name: m\n    kind: threshold\n    field: v\n    above: 50\n"
               "    mean: {window: 1h, step: 5m}\n")
    steps = [R(at("03-04 09:00"), {"v": 600}),
             R(at("03-04 09:30"), {"v": 0}),
             R(at("03-04 09:59:59"), {"v": 0}),  # 09:00's bucket still inside: mean 200
             R(at("03-04 10:00"), {"v": 0})]  # (09:00, 10:00] no longer holds it: mean 0
    assert run(e, steps) == [("03-04 09:00", "m", "firing", 600.0),
                             ("03-04 10:00", "m", "resolved", 0.0)]


def test_mean_waits_for_coverage() -> None:
    e = engine("  - name: d\n    kind: threshold\n    field: v\n    above: 10\n"
               "    mean: {window: 24h, step: 1h, min_coverage: 0.75}\n")
    steps = every(at("03-04 00:30"), at("03-05 00:00"), H, {"v": 20})
    # 18 of 24 hourly buckets is the first mean: the reading at 17:30.
    assert run(e, steps) == [("03-04 17:30", "d", "firing", 20.0)]



PM10_BANDS = """  - name: pm10_band
    kind: band
    field: v
    round: 0
    fire_from: bad
    bands:
      - {level: good, min: 0}
      - {level: moderate, min: 31}
      - {level: bad, min: 81}
      - {level: very_bad, min: 151}
"""


def test_bands_round_half_up_then_fire_from_a_level_and_report_level_changes() -> None:
    e = engine(PM10_BANDS)
    values = [30.49, 30.5, 80.49, 80.5, 150.49, 150.5, 81, 80.49]
    steps = [R(at("03-04 10:00") + i * M, {"v": v}) for i, v in enumerate(values)]
    events = feed(e, steps)
    assert [(ev.state, ev.severity, ev.value) for ev in events] == [
        ("firing", "bad", 81.0),  # 80.5 rounds to 81: bad
        ("firing", "very_bad", 151.0),  # level change while firing is notified
        ("firing", "bad", 81.0),
        ("resolved", "bad", 80.0),
    ]
    assert all(ev.notify for ev in events)


def test_range_limits_count_as_out_of_range() -> None:
    e = engine("  - {name: volt, kind: range, field: v, low: 10.8, high: 14.4}\n")
    values = [10.81, 10.8, 12, 14.4, 14.39]
    steps = [R(at("03-04 10:00") + i * M, {"v": v}) for i, v in enumerate(values)]
    assert run(e, steps) == [("03-04 10:01", "volt", "firing", 10.8),
                             ("03-04 10:02", "volt", "resolved", 12.0),
                             ("03-04 10:03", "volt", "firing", 14.4),
                             ("03-04 10:04", "volt", "resolved", 14.39)]


def test_rate_of_change_per_minute() -> None:
    e = engine("  - {name: jump, kind: rate, field: v, per: 1m, above: 50}\n")
    steps = [R(at("03-04 10:00"), {"v": 10}), R(at("03-04 10:01"), {"v": 59.9}),
             R(at("03-04 10:02"), {"v": 110}), R(at("03-04 10:02:30"), {"v": 160}),
             R(at("03-04 10:03:30"), {"v": 160})]
    assert run(e, steps) == [("03-04 10:02", "jump", "firing", 50.1),
                             ("03-04 10:03:30", "jump", "resolved", 0.0)]


def test_stuck_by_count_and_by_duration() -> None:
    e = engine("  - {name: n, kind: stuck, field: v, count: 5}\n"
               "  - {name: d, kind: stuck, field: w, duration: 1h}\n")
    values = [1, 2, 2, 2, 2, 2, 3]
    steps = [R(at("03-04 10:00") + i * M, {"v": v}) for i, v in enumerate(values)]
    steps += [R(at(t), {"w": 7}) for t in ("03-04 11:00", "03-04 11:30", "03-04 11:59:59",
                                          "03-04 12:00")]
    steps += [R(at("03-04 12:01"), {"w": 7.5})]
    assert run(e, steps) == [("03-04 10:05", "n", "firing", 5.0),
                             ("03-04 10:06", "n", "resolved", 1.0),
                             ("03-04 12:00", "d", "firing", 4.0),
                             ("03-04 12:01", "d", "resolved", 1.0)]


def test_count_of_exceedances_with_day_and_night_limits() -> None:
    e = engine("  - name: lmax\n    kind: count\n    field: v\n    above: {day: 57, night: 52}\n"
               "    window: 1h\n    times: 3\n")
    steps = [R(at("03-04 10:00"), {"v": 57}), R(at("03-04 10:10"), {"v": 56.9}),
             R(at("03-04 10:20"), {"v": 57}), R(at("03-04 10:50"), {"v": 60}),
             R(at("03-04 10:59:59"), {"v": 40}),  # 10:00's hit is still inside the hour
             R(at("03-04 11:00"), {"v": 40}),  # (10:00, 11:00]: two hits left
             # Night: 52 counts from 22:00; 21:59 at 55 is under the day limit.
             R(at("03-04 21:59"), {"v": 55}), R(at("03-04 22:00"), {"v": 52}),
             R(at("03-04 22:10"), {"v": 52}), R(at("03-04 22:20"), {"v": 51.9}),
             R(at("03-04 22:30"), {"v": 53})]
    assert run(e, steps) == [("03-04 10:50", "lmax", "firing", 3.0),
                             ("03-04 11:00", "lmax", "resolved", 2.0),
                             ("03-04 22:30", "lmax", "firing", 3.0)]


def test_per_schedule_threshold_switches_at_22_and_06() -> None:
    e = engine("  - {name: laeq, kind: threshold, field: v, above: {day: 39, night: 34}}\n")
    steps = [R(at("03-04 21:59"), {"v": 36}),  # day: under 39
             R(at("03-04 22:00"), {"v": 36}),  # night: over 34
             R(at("03-05 05:59"), {"v": 34}),  # at the night limit: still raised
             R(at("03-05 06:00"), {"v": 36})]  # day again: under 39
    assert run(e, steps) == [("03-04 22:00", "laeq", "firing", 36.0),
                             ("03-05 06:00", "laeq", "resolved", 36.0)]


def test_silence_of_a_sensor_fires_at_the_deadline_and_resolves_on_data() -> None:
    e = engine("  - {name: quiet, kind: silence, after: 10m}\n")
    steps: list[Step] = [R(at("03-04 10:00"), {"v": 1}), R(at("03-04 10:05"), {"v": 1}),
             Tick(at("03-04 10:14:59")), Tick(at("03-04 10:16:30")),
             R(at("03-04 10:20"), {"v": 1})]
    events = feed(e, steps)
    assert [(ev.state, ev.time_ns, ev.value) for ev in events] == [
        ("firing", at("03-04 10:15"), 600.0),  # the deadline, not the tick that saw it
        ("resolved", at("03-04 10:20"), 0.0)]
    assert events[0].scope == {"district": "강남구", "site": "역삼초등학교",
                               "site_kind": "dust_zone", "gateway": "gw-1", "sensor": "pm-1",
                               "model": "pms5003"}


def test_readings_without_the_grouping_tags_are_not_watched_for_silence() -> None:
    e = engine("  - {name: quiet, kind: silence, after: 10m}\n")
    anonymous = Point("cityedge_deadletter", {"gateway": "gw-1", "reason": "bad_field"},
                      {"detail": "x"}, at("03-04 10:00"))
    assert e.readings([anonymous]) == []
    assert e.members[0] == {} and e.tick(at("03-04 11:00")) == []


def test_gateway_silence_needs_every_sensor_quiet() -> None:
    e = engine("  - {name: gw_quiet, kind: silence, after: 10m, group_by: gateway}\n")
    steps: list[Step] = [R(at("03-04 10:00"), {"v": 1}, sensor="a"),
                         R(at("03-04 10:00"), {"v": 1}, sensor="b")]
    steps += every(at("03-04 10:05"), at("03-04 10:30"), 5 * M, {"v": 1}, sensor="b")
    steps += [Tick(at("03-04 10:50"))]
    assert run(e, steps) == [("03-04 10:35", "gw_quiet", "firing", 600.0)]


def test_grouping_per_district_one_alert_while_any_sensor_holds() -> None:
    e = engine("  - {name: pm, kind: threshold, field: v, above: 100, group_by: district}\n")
    steps = [R(at("03-04 10:00"), {"v": 120}, sensor="a"),
             R(at("03-04 10:01"), {"v": 130}, sensor="b"),
             R(at("03-04 10:02"), {"v": 90}, sensor="a"),
             R(at("03-04 10:03"), {"v": 90}, sensor="b")]
    events = feed(e, steps)
    assert [(ev.state, ev.members, ev.scope) for ev in events] == [
        ("firing", 1, {"district": "강남구"}), ("resolved", 0, {"district": "강남구"})]
    assert events[1].time_ns == at("03-04 10:03")


def test_scoping_by_tags_and_measurement() -> None:
    e = engine("  - name: bus\n    kind: threshold\n    field: v\n    above: 1\n"
               "    match: {measurement: bus_terminal, site_kind: [bus_stop]}\n"
               "    exclude: {district: 중구}\n")
    steps = [R(at("03-04 10:00"), {"v": 5}, measurement="bus_terminal", site_kind="dust_zone"),
             R(at("03-04 10:00"), {"v": 5}, measurement="particulate", site_kind="bus_stop"),
             R(at("03-04 10:00"), {"v": 5}, measurement="bus_terminal", site_kind="bus_stop",
               district="중구"),
             R(at("03-04 10:00"), {"v": 5}, measurement="bus_terminal", site_kind="bus_stop")]
    assert run(e, steps) == [("03-04 10:00", "bus", "firing", 5.0)]


def test_readings_without_the_field_or_with_text_are_ignored() -> None:
    e = engine("  - {name: pm, kind: threshold, field: v, above: 1}\n")
    assert run(e, [R(at("03-04 10:00"), {"w": 5}), R(at("03-04 10:01"), {"v": "high"})]) == []


def test_bool_fields_are_zero_and_one() -> None:
    e = engine("  - {name: door, kind: threshold, field: door_open, above: 1, hold: 5m}\n")
    steps = [R(at("03-04 10:00") + i * M, {"door_open": i < 6}) for i in range(8)]
    assert run(e, steps) == [("03-04 10:00", "door", "pending", 1.0),
                             ("03-04 10:05", "door", "firing", 1.0),
                             ("03-04 10:06", "door", "resolved", 0.0)]


def test_tick_before_any_data_and_backwards_clock_do_nothing() -> None:
    e = engine("  - {name: quiet, kind: silence, after: 1m}\n")
    assert e.tick(at("03-04 10:00")) == []
    e.tick(at("03-04 09:00"))
    assert e.now == at("03-04 10:00")
