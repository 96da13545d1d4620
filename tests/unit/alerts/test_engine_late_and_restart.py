"""Backlogs, resends and restarts: late data informs, never alarms as new; state survives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.alerts import AlertEvent, Engine
from collector.alerts.snapshot import dump_alerts, restore
from collector.alerts.store import StateStore
from tests.alerts_helpers import dump_stats, load_state, rules_from_text, stats_text
from tests.unit.alerts.timeline import M, R, St, Step, Tick, at, every, feed

MEAN = """rules:
  - name: m
    kind: threshold
    field: v
    above: 100
    mean: {window: 1h, step: 5m}
    late_after: 5m
    late: LATE
"""


def backlog_script() -> list[Step]:
    steps: list[Step] = [*every(at("03-04 10:00"), at("03-04 10:31"), M, {"v": 50})]
    # The uplink drops at 10:31. At 11:00 the gateway is back: live data first...
    steps.append(R(at("03-04 11:00"), {"v": 50}))
    # ...then the backlog drains behind it (DESIGN invariant 7), all of it late.
    steps += every(at("03-04 10:31"), at("03-04 11:00"), M, {"v": 300},
                   arrival=at("03-04 11:00:30"))
    steps += [R(at("03-04 11:01"), {"v": 50}), Tick(at("03-04 11:05:30"))]
    return steps


def test_backlog_updates_the_mean_but_raises_nothing_as_new() -> None:
    e = Engine(rules_from_text(MEAN.replace("LATE", "ignore")))
    events = feed(e, backlog_script())
    # Nothing while the backlog arrives; the next live reading sees a mean that
    # includes it: 26 x 50 (10:05-10:30) + 29 x 300 + 2 x 50 over 57 readings.
    assert [(ev.time_ns, ev.state, round(ev.value, 3), ev.late) for ev in events] == [
        (at("03-04 11:01"), "firing", round(10100 / 57, 3), False)]
    assert e.counts["late"] == 29


def test_late_report_rules_raise_a_separate_alert_marked_late() -> None:
    e = Engine(rules_from_text(MEAN.replace("LATE", "report")))
    events = feed(e, backlog_script())
    assert [(ev.time_ns, ev.state, round(ev.value, 3), ev.late) for ev in events] == [
        (at("03-04 10:31"), "firing", 300.0, True),  # what happened during the outage
        (at("03-04 11:01"), "firing", round(10100 / 57, 3), False),
        (at("03-04 10:59"), "resolved", 300.0, True),  # closed once the backlog drained
    ]
    assert events[0].alert_id not in (events[1].alert_id,)
    assert events[0].alert_id == events[2].alert_id


COUNT = "rules:\n  - {name: lmax, kind: count, field: v, above: 57, window: 1h, times: 3}\n"


def test_a_resent_reading_counts_once() -> None:
    e = Engine(rules_from_text(COUNT))
    first = R(at("03-04 10:00"), {"v": 60}, seq=1)
    steps = [first, R(at("03-04 10:01"), {"v": 60}, seq=2), first]  # the gateway resent seq 1
    assert feed(e, steps) == []
    assert e.counts["duplicates"] == 1
    # A new SD card (new epoch) may reuse seq 1: that is a new reading.
    fresh = [R(at("03-04 10:02"), {"v": 60}, seq=1, epoch="00cd")]
    assert [ev.state for ev in feed(e, fresh)] == ["firing"]


RULES = """defaults: {flap: {count: 3, window: 1h, quiet: 10m}, repeat: 20m}
rules:
  - name: m
    kind: threshold
    field: v
    above: 100
    clear: 80
    hold: 10m
    mean: {window: 30m, step: 1m}
  - {name: lmax, kind: count, field: w, above: 57, window: 1h, times: 3}
  - {name: quiet, kind: silence, after: 15m}
  - {name: flappy, kind: threshold, field: f, above: 10}
  - {name: gw_offline, kind: offline, after: 2m}
  - name: band
    kind: band
    field: v
    bands: [{level: ok, min: 0}, {level: high, min: 90}, {level: higher, min: 130}]
"""


def long_script() -> list[Step]:
    steps: list[Step] = []
    values = [50, 90, 120, 150, 170, 160, 140, 120, 90, 60, 40, 30]
    for i, v in enumerate(values):  # every 5 min, 10:00 to 10:55
        steps.append(R(at("03-04 10:00") + 5 * i * M, {"v": v, "w": 60 if i % 4 == 0 else 50}))
    for i in range(8):
        steps.append(R(at("03-04 10:02") + i * M, {"f": 11 if i % 2 == 0 else 9}, sensor="pm-9"))
    steps.sort(key=lambda s: s.t if isinstance(s, R) else 0)
    steps += [St("gw-1", False, at("03-04 11:00")), Tick(at("03-04 11:30")),
              St("gw-1", True, at("03-04 11:40")), R(at("03-04 11:41"), {"v": 50})]
    return steps


def _events(steps: list[Step], cut: int | None, tmp: Path) -> list[AlertEvent]:
    rules = rules_from_text(RULES)
    e = Engine(rules)
    if cut is None:
        return feed(e, steps)
    out = feed(e, steps[:cut])
    store = StateStore(tmp)
    store.save(dump_alerts(e), stats_text(e))
    del e  # the collector was killed here
    fresh = Engine(rules_from_text(RULES))
    alerts, stats = load_state(store)
    assert restore(fresh, alerts, stats) == []
    return out + feed(fresh, steps[cut:])


@pytest.mark.parametrize("cut", [3, 9, 14, 17, 21, 22])
def test_a_restart_anywhere_gives_the_same_events(tmp_path: Path, cut: int) -> None:
    steps = long_script()
    whole = _events(steps, None, tmp_path)
    assert {ev.rule for ev in whole} == {"m", "lmax", "quiet", "flappy", "gw_offline", "band"}
    assert _events(steps, cut, tmp_path) == whole


def test_restart_without_the_stats_file_keeps_the_lifecycle(tmp_path: Path) -> None:
    rules = rules_from_text(RULES)
    e = Engine(rules)
    fired = feed(e, every(at("03-04 10:00"), at("03-04 10:20"), M, {"v": 200}))
    assert [ev.state for ev in fired if ev.rule == "m"] == ["pending", "firing"]
    fresh = Engine(rules_from_text(RULES))
    restore(fresh, json.loads(json.dumps(dump_alerts(e))), None)  # stats lost in a crash
    # The member that held the alert is known: still above clear, nothing changes...
    assert [ev for ev in feed(fresh, [R(at("03-04 10:20"), {"v": 150})]) if ev.rule == "m"] == []
    # ...and it resolves normally: the window restarted empty, so the mean of
    # 150 and 0 is 75, under clear (80).
    after = feed(fresh, [R(at("03-04 10:21"), {"v": 0})])
    assert [(ev.rule, ev.state) for ev in after if ev.rule == "m"] == [("m", "resolved")]


def test_state_of_a_changed_rule_is_dropped_with_a_warning() -> None:
    e = Engine(rules_from_text(RULES))
    feed(e, every(at("03-04 10:00"), at("03-04 10:20"), M, {"v": 200}))
    changed = Engine(rules_from_text(RULES.replace("clear: 80", "clear: 70")))
    warnings = restore(changed, dump_alerts(e), dump_stats(e))
    assert warnings == ["rule 'm' changed or was removed: its saved state was dropped"]
    assert all(g.rule.name != "m" for g in changed.open_alerts())
