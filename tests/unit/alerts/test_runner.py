"""The runner as the collector uses it: feed, deliver with retries, restart, commands, lease."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import pytest

from cityedge.yamlconfig import ConfigError
from collector.alerts import AlertEvent, DeliveryRejected, Retryable, Throttled
from collector.alerts.cli import main as cli
from collector.alerts.config import LoadedAlerts
from collector.alerts.runner import AlertRunner
from collector.lineprotocol import Point
from collector.notifiers import NotifierContext, register
from tests.alerts_helpers import parse_alerts
from tests.unit.alerts.timeline import M, R, at

TIMEOUT = 20.0


class Capture:
    """A notifier injected through the registry (the factory seam); `script` scripts failures."""

    name = "capture"

    def __init__(self, options: dict[str, Any]) -> None:
        self.script = list(options.get("script", []))
        self.sent: list[AlertEvent] = []
        self.gate: asyncio.Event | None = None
        self.bad = options.get("bad", False)

    def validate(self) -> None:
        if self.bad:
            raise ValueError("bad: this notifier refuses its config")

    async def start(self, context: NotifierContext) -> None:
        self.context = context

    async def send(self, event: AlertEvent) -> None:
        if self.gate is not None:
            await self.gate.wait()
        action = self.script.pop(0) if self.script else "ok"
        if action == "retry":
            raise Retryable("connection refused")
        if action == "throttle":
            raise Throttled("429", 0.01)
        if action == "reject":
            raise DeliveryRejected("HTTP 400: bad")
        self.sent.append(event)

    async def close(self) -> None:
        return None

    def stats(self) -> dict[str, int]:
        return {"sent": len(self.sent)}


register("capture", lambda options, doc, path: Capture(options))

RULES = """rules:
  - {name: hot, kind: threshold, field: v, above: 10, hold: 2m}
  - {name: other_rule, kind: threshold, field: w, above: 10}
"""


def setup(tmp: Path, notifiers: str, extra: str = "") -> LoadedAlerts:
    (tmp / "rules.yaml").write_text(RULES)
    text = (f"rules: [rules.yaml]\nstate_dir: state\nretry_min: 0.01\nretry_max: 0.02\n{extra}"
            f"notifiers:\n{notifiers}")
    return parse_alerts(text, tmp, "collector.yaml")


class Written:
    def __init__(self) -> None:
        self.points: list[Point] = []

    async def __call__(self, points: Sequence[Point]) -> None:
        self.points.extend(points)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, TIMEOUT))


async def until(predicate: Any, what: str) -> None:
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def points(*readings: R) -> list[Point]:
    return [r.point() for r in readings]


def capture(runner: AlertRunner, i: int = 0) -> Capture:
    notifier = runner.deliveries[i].notifier
    assert isinstance(notifier, Capture)
    return notifier


def heat(runner: AlertRunner, start: str, values: list[float], field: str = "v") -> None:
    for i, v in enumerate(values):
        t = at(start) + i * M
        runner.feed(points(R(t, {field: v})), t)


def test_events_are_routed_notified_and_written(tmp_path: Path) -> None:
    async def scenario() -> None:
        written = Written()
        runner = AlertRunner(setup(tmp_path, "  - {type: capture}\n"
                                             "  - {type: capture, name: others,"
                                             " rules: ['other*']}\n"
                                             "  - {type: log}\n"), write_points=written)
        await runner.start()
        heat(runner, "03-04 10:00", [11, 12, 13, 9])  # pending 10:00, firing 10:02, resolved
        await until(lambda: len(capture(runner).sent) == 2, "two notifications")
        assert [e.state for e in capture(runner).sent] == ["firing", "resolved"]
        assert capture(runner, 1).sent == []  # its route takes only other* rules
        await runner.close()
        alerts = [p for p in written.points if p.measurement == "alerts"]
        assert [p.tags["state"] for p in alerts] == ["pending", "firing", "resolved"]
        assert alerts[1].tags == {"district": "강남구", "site": "역삼초등학교",
                                  "site_kind": "dust_zone", "gateway": "gw-1", "sensor": "pm-1",
                                  "model": "pms5003", "rule": "hot", "severity": "warning",
                                  "state": "firing"}
        assert alerts[1].fields["value"] == 13.0
        assert alerts[1].time_ns == at("03-04 10:02")
        assert runner.health_fields()["notify_capture_delivered"] == 2
        assert runner.health_fields()["notify_capture_sent"] == 2  # the plugin's own stats()
        assert runner.health_fields()["alert_readings_too_old"] == 0  # no clock-hour rule

    run(scenario())


def test_the_engine_bounds_are_settings_and_their_counts_reach_the_health_point(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        runner = AlertRunner(setup(tmp_path, "  - {type: log}\n",
                                   "max_future_skew: 60\nmax_members: 2\nmax_gateways: 1\n"),
                             write_points=Written())
        await runner.start()
        t = at("03-04 10:00")
        assert runner.engine.limits.max_future_ns == 60 * 10**9
        runner.feed(points(R(t + 2 * M, {"v": 1.0})), t)  # two minutes ahead: not judged
        runner.feed(points(*(R(t + n, {"v": 1.0}, sensor=f"s{n}", gateway=f"gw-{n}")
                             for n in range(3))), t)
        await runner.close()
        fields = runner.health_fields()
        assert {k: fields[k] for k in ("alert_readings_future", "alert_members_evicted",
                                       "alert_members_refused", "alert_gateways_forgotten")} == {
            "alert_readings_future": 1, "alert_members_evicted": 1,
            "alert_members_refused": 0, "alert_gateways_forgotten": 2}

    run(scenario())


def test_retries_throttling_and_dead_letters(tmp_path: Path) -> None:
    async def scenario() -> None:
        written = Written()
        loaded = setup(tmp_path, "  - {type: capture, name: flaky,"
                                 " script: [retry, throttle, ok]}\n"
                                 "  - {type: capture, name: down, script: [retry, retry, retry]}\n"
                                 "  - {type: capture, name: picky, script: [reject]}\n",
                       "max_attempts: 3\n")
        runner = AlertRunner(loaded, write_points=written)
        await runner.start()
        heat(runner, "03-04 10:00", [11, 11, 11])
        await until(lambda: all(not d.queue and d.inflight is None for d in runner.deliveries),
                    "the queues to drain")
        flaky, down, picky = runner.deliveries
        assert [e.state for e in capture(runner, 0).sent] == ["firing"]
        assert (flaky.stats.delivered, flaky.stats.retries) == (1, 2)
        assert (down.stats.gave_up, down.stats.retries, capture(runner, 1).sent) == (1, 2, [])
        assert (picky.stats.rejected, picky.stats.retries) == (1, 0)
        await runner.close()
        dead = [p for p in written.points if p.measurement == "cityedge_deadletter"]
        assert sorted((p.tags["notifier"], p.tags["reason"]) for p in dead) == [
            ("down", "notify_gave_up"), ("picky", "notify_rejected")]
        assert json.loads(str(dead[0].fields["raw"]))["rule"] == "hot"

    run(scenario())


def test_a_full_queue_drops_its_oldest_events_counted(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner = AlertRunner(setup(tmp_path, "  - {type: capture}\n", "queue_size: 2\n"))
        await runner.start()
        gate = capture(runner).gate = asyncio.Event()
        heat(runner, "03-04 10:00", [11, 11, 11])  # fires at 10:02: taken up, held at the gate
        await asyncio.sleep(0.05)
        heat(runner, "03-04 10:03", [9, 11, 11, 11, 9])  # resolved, firing, resolved: queued
        gate.set()
        d = runner.deliveries[0]
        await until(lambda: not d.queue and d.inflight is None, "the queue to drain")
        # The first event was being sent (not queued); of the three queued
        # behind it, the oldest was dropped.
        assert [e.state for e in capture(runner).sent] == ["firing", "firing", "resolved"]
        assert d.stats.dropped_full == 1
        await runner.close()

    run(scenario())


def test_restart_restores_state_and_notifies_only_changes(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = AlertRunner(setup(tmp_path, "  - {type: capture}\n"))
        await first.start()
        heat(first, "03-04 10:00", [11, 11, 11])
        await until(lambda: len(capture(first).sent) == 1, "the firing notification")
        fired = capture(first).sent[0]
        await first.close()
        second = AlertRunner(setup(tmp_path, "  - {type: capture}\n"))
        await second.start()
        heat(second, "03-04 10:03", [12, 13, 9])
        await until(lambda: len(capture(second).sent) == 1, "the resolved notification")
        [resolved] = capture(second).sent
        assert (resolved.state, resolved.alert_id, resolved.seq) == (
            "resolved", fired.alert_id, fired.seq + 1)
        await second.close()

    run(scenario())


def test_cli_ack_and_silence_reach_the_running_collector(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        written = Written()
        runner = AlertRunner(setup(tmp_path, "  - {type: capture}\n"), write_points=written)
        await runner.start()
        (tmp_path / "state").mkdir(exist_ok=True)  # as the collector's service does at start
        heat(runner, "03-04 10:00", [11, 11, 11])
        await until(lambda: len(capture(runner).sent) == 1, "the firing notification")
        alert_id = capture(runner).sent[0].alert_id
        state = str(tmp_path / "state")
        # --wait 0: this test runs the collector on this thread, so nothing could
        # answer while the command waited (test_cli_truth.py waits for the answer).
        assert cli(["alerts", "ack", alert_id, "--state-dir", state, "--by", "kim",
                    "--wait", "0"]) == 0
        assert cli(["alerts", "silence", "--state-dir", state, "--rule", "hot", "--wait", "0",
                    "--match", "district=강남구", "--for", "2h", "--comment", "cleaning"]) == 0
        runner.tick(at("03-04 10:03"))
        await until(lambda: len(capture(runner).sent) == 2, "the acknowledged notification")
        assert capture(runner).sent[1].state == "acknowledged"
        await runner.save()
        capsys.readouterr()
        assert cli(["alerts", "list", "--state-dir", state]) == 0
        listed = capsys.readouterr().out
        assert f"{alert_id}  acknowledged hot" in listed
        assert "rule hot  district=강남구" in listed and listed.rstrip().endswith(": cleaning")
        # Silenced: the resolution is written to InfluxDB but not notified.
        heat(runner, "03-04 10:04", [9])
        await runner.close()
        assert len(capture(runner).sent) == 2
        resolved = [p for p in written.points if p.tags.get("state") == "resolved"]
        assert resolved and resolved[0].fields["silenced"] is True
        assert list((tmp_path / "state" / "commands").iterdir()) == []

    run(scenario())


def test_only_the_lease_holder_evaluates_and_a_standby_takes_over(tmp_path: Path) -> None:
    async def scenario() -> None:
        a = AlertRunner(setup(tmp_path, "  - {type: capture}\n", "lease: file\n"), holder="a")
        b = AlertRunner(setup(tmp_path, "  - {type: capture}\n", "lease: file\n"), holder="b")
        await a.start()
        await b.start()
        assert (a.leader, b.leader) == (True, False)
        heat(a, "03-04 10:00", [11, 11, 11])
        heat(b, "03-04 10:00", [11, 11, 11])  # the same readings: b only counts them
        await until(lambda: len(capture(a).sent) == 1, "a's notification")
        assert b.stats.standby_points == 3 and capture(b).sent == []
        await a.close()  # a dies (the kernel would release its flock on kill -9, too)
        b.tick(at("03-04 10:03"))
        assert b.leader
        heat(b, "03-04 10:03", [9])
        await until(lambda: len(capture(b).sent) == 1, "b's notification")
        assert capture(b).sent[0].alert_id == capture(a).sent[0].alert_id
        await b.close()

    run(scenario())


def test_config_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"collector.yaml:6: notifiers\[0\].bad: this notifier"):
        setup(tmp_path, "  - {type: capture, bad: true}\n")
    with pytest.raises(ConfigError, match=r"notifiers\[0\].type: expected one of capture, log"):
        setup(tmp_path, "  - {type: pager}\n")
    with pytest.raises(ConfigError, match=r"notifiers\[1\].name: two notifiers named 'log'"):
        setup(tmp_path, "  - {type: log}\n  - {type: log}\n")
    with pytest.raises(ConfigError, match=r"notifiers\[0\].states\[0\]: expected one of"):
        setup(tmp_path, "  - {type: log, states: [pending]}\n")


def test_a_corrupt_state_file_does_not_keep_the_collector_down(tmp_path: Path) -> None:
    async def scenario() -> None:
        loaded = setup(tmp_path, "  - {type: capture}\n")
        loaded.state_dir.mkdir(parents=True)
        (loaded.state_dir / "alerts.json").write_text("{torn")
        runner = AlertRunner(loaded)
        await runner.start()
        heat(runner, "03-04 10:00", [11, 11, 11])
        await until(lambda: len(capture(runner).sent) == 1, "a notification")
        await runner.close()
        assert json.loads((loaded.state_dir / "alerts.json").read_text())["alerts"]

    run(scenario())
