"""Lifecycle on scripted timelines: flapping, repeats, acks, silences, offline gateways."""

from __future__ import annotations

import pytest

from collector.alerts import Ack, Engine, Silence, Status, UsageError
from tests.alerts_helpers import rules_from_text
from tests.unit.alerts.timeline import M, R, St, Step, Tick, at, brief, feed, run


def engine(rules: str, defaults: str = "{flap: {enabled: false}}") -> Engine:
    return Engine(rules_from_text(f"defaults: {defaults}\nrules:\n{rules}"))


THRESHOLD = "  - {name: pm, kind: threshold, field: v, above: 10}\n"


def alternate(start: str, values: list[float]) -> list[Step]:
    return [R(at(start) + i * M, {"v": v}) for i, v in enumerate(values)]


def test_flapping_pauses_notifications_then_settles_after_quiet() -> None:
    e = engine(THRESHOLD, "{flap: {count: 3, window: 1h, quiet: 10m}}")
    steps = alternate("03-04 10:00", [11, 9, 11, 9, 11, 9, 11, 9])
    steps += [Tick(at("03-04 10:16:59")), Tick(at("03-04 10:17"))]
    events = feed(e, steps)
    assert [(ev.state, ev.notify) for ev in events] == [
        ("firing", True), ("resolved", True), ("firing", True), ("resolved", True),
        ("flapping", True),  # the third firing within the hour
        ("resolved", True)]  # quiet since 10:07 (last change, value 9) for 10 min
    assert brief(events)[-2:] == [("03-04 10:04", "pm", "flapping", 11.0),
                                  ("03-04 10:17", "pm", "resolved", 9.0)]


def test_flapping_settles_to_firing_when_the_condition_holds() -> None:
    e = engine(THRESHOLD, "{flap: {count: 3, window: 1h, quiet: 10m}}")
    steps = [*alternate("03-04 10:00", [11, 9, 11, 9, 11, 9, 11]), Tick(at("03-04 10:16"))]
    assert run(e, steps)[-2:] == [("03-04 10:04", "pm", "flapping", 11.0),
                                  ("03-04 10:16", "pm", "firing", 11.0)]


def test_flap_window_forgets_old_firings() -> None:
    e = engine(THRESHOLD, "{flap: {count: 3, window: 1h, quiet: 10m}}")
    steps = [R(at(t), {"v": v}) for t, v in [("03-04 10:00", 11), ("03-04 10:01", 9),
                                             ("03-04 10:30", 11), ("03-04 10:31", 9),
                                             ("03-04 11:00", 11)]]  # 10:00 left the hour
    assert [s for _, _, s, _ in run(e, steps)] == ["firing", "resolved"] * 2 + ["firing"]


def test_repeat_then_ack_stops_repeats_and_a_level_change_needs_a_new_ack() -> None:
    bands = ("  - name: b\n    kind: band\n    field: v\n    repeat: 30m\n    bands:\n"
             "      - {level: ok, min: 0}\n      - {level: bad, min: 10}\n"
             "      - {level: worse, min: 20}\n")
    e = engine(bands)
    events = feed(e, [R(at("03-04 10:00"), {"v": 15}), Tick(at("03-04 10:29")),
                      Tick(at("03-04 10:30")), Tick(at("03-04 10:45"))])
    assert [(ev.state, ev.repeat) for ev in events] == [("firing", False), ("firing", True)]
    assert events[1].time_ns == at("03-04 10:30") and events[1].alert_id == events[0].alert_id
    acked = e.acknowledge(Ack(events[0].alert_id, at("03-04 10:46"), by="kim"))
    assert [(ev.state, ev.previous, ev.notify) for ev in acked] == [
        ("acknowledged", "firing", True)]
    assert feed(e, [Tick(at("03-04 12:00"))]) == []  # no repeats while acknowledged
    later = feed(e, [R(at("03-04 12:01"), {"v": 25})])
    assert [(ev.state, ev.severity) for ev in later] == [("firing", "worse")]
    assert [ev.repeat for ev in feed(e, [Tick(at("03-04 12:31"))])] == [True]


def test_ack_of_unknown_or_not_firing_alert_is_refused() -> None:
    e = engine("  - {name: pm, kind: threshold, field: v, above: 10, hold: 5m}\n")
    with pytest.raises(UsageError, match="no open alert nope"):
        e.acknowledge(Ack("nope", 0))
    [pending] = feed(e, [R(at("03-04 10:00"), {"v": 11})])
    with pytest.raises(UsageError, match="pending, not firing"):
        e.acknowledge(Ack(pending.alert_id, at("03-04 10:01")))


def test_a_silence_marks_matching_events_until_it_expires() -> None:
    e = engine(THRESHOLD)
    e.add_silence(Silence("s1", "pm", {"district": "강남구"}, at("03-04 11:00"),
                          at("03-04 09:00"), by="lee", comment="sensor cleaning"))
    events = feed(e, [R(at("03-04 10:00"), {"v": 11}), R(at("03-04 10:01"), {"v": 9}),
                      R(at("03-04 10:02"), {"v": 11}, district="서초구", sensor="pm-2"),
                      R(at("03-04 11:00"), {"v": 11})])
    assert [(ev.state, ev.scope["district"], ev.silenced) for ev in events] == [
        ("firing", "강남구", True), ("resolved", "강남구", True),
        ("firing", "서초구", False),
        ("firing", "강남구", False)]  # 11:00: the silence has ended
    assert e.silences == {}  # expired silences are dropped by the tick


def test_offline_from_the_last_will_scoped_by_what_the_gateway_reported() -> None:
    e = engine("  - {name: gw_offline, kind: offline, after: 1m, group_by: district}\n")
    steps: list[Step] = [R(at("03-04 09:00"), {"v": 1}, gateway="gw-a"),
             R(at("03-04 09:00"), {"v": 1}, gateway="gw-b"),
             St("gw-a", False, at("03-04 10:00")), Tick(at("03-04 10:00:59")),
             Tick(at("03-04 10:01")), St("gw-b", False, at("03-04 10:02")),
             Tick(at("03-04 10:05")), St("gw-a", True, at("03-04 10:06")),
             St("gw-b", True, at("03-04 10:07"))]
    events = feed(e, steps)
    assert [(ev.state, ev.members, ev.scope, ev.time_ns) for ev in events] == [
        ("firing", 1, {"district": "강남구"}, at("03-04 10:01")),
        ("resolved", 0, {"district": "강남구"}, at("03-04 10:07"))]


def test_offline_status_seen_late_fires_at_once() -> None:
    e = engine("  - {name: gw_offline, kind: offline, after: 1m}\n")
    e.tick(at("03-04 10:30"))
    events = e.status(Status("gw-x", False, at("03-04 10:00")))
    assert brief(events) == [("03-04 10:01", "gw_offline", "firing", 60.0)]
    assert events[0].scope == {"gateway": "gw-x"}


def test_a_hold_ends_on_a_reading_not_on_a_clock_tick() -> None:
    e = engine("  - {name: pm, kind: threshold, field: v, above: 10, hold: 10m}\n")
    steps = [R(at("03-04 10:00"), {"v": 12}), Tick(at("03-04 10:30")),  # no reading since
             R(at("03-04 10:31"), {"v": 12})]
    assert run(e, steps) == [("03-04 10:00", "pm", "pending", 12.0),
                             ("03-04 10:31", "pm", "firing", 12.0)]
