"""``edge-collector rules test``: readings replayed offline through rules, events as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.alerts.cli import main
from collector.cli import main as edge_collector

ROOT = Path(__file__).resolve().parents[3]
RULES = """schedules:
  day: {hours: "06-22"}
  night: {hours: "22-06"}
rules:
  - {name: laeq, kind: threshold, field: laeq_1min_dba, above: {day: 39, night: 34},
     match: {measurement: noise}}
  - {name: quiet, kind: silence, after: 10m, group_by: gateway}
  - {name: gw_offline, kind: offline, after: 1m}
"""
CSV = """time,measurement,district,site,site_kind,gateway,sensor,laeq_1min_dba,state
2024-03-04T21:59:00+09:00,noise,강남구,래미안 103동,apartment,gw-apt-1,unit-1203,38,
2024-03-04T22:00:00+09:00,noise,강남구,래미안 103동,apartment,gw-apt-1,unit-1203,36,
2024-03-04T22:01:00+09:00,noise,강남구,래미안 103동,apartment,gw-apt-1,unit-1203,33.9,
2024-03-04T22:02:00+09:00,_status,,,,gw-apt-1,,,offline
"""


def write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_csv_replay_prints_each_event(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write(tmp_path, "rules.yaml", RULES)
    readings = write(tmp_path, "r.csv", CSV)
    code = main(["rules", "test", "--rules", rules, "--readings", readings,
                 "--until", "2024-03-04T22:30:00+09:00"])
    out = capsys.readouterr().out
    assert code == 0
    got = [(e["time"], e["rule"], e["state"], e["value"]) for e in lines(out)]
    assert got == [
        ("2024-03-04T13:00:00Z", "laeq", "firing", 36.0),  # 22:00 Seoul: the night limit 34
        ("2024-03-04T13:01:00Z", "laeq", "resolved", 33.9),
        ("2024-03-04T13:03:00Z", "gw_offline", "firing", 60.0),
        ("2024-03-04T13:11:00Z", "quiet", "firing", 600.0),
    ]
    first = lines(out)[0]
    assert first["scope"] == {"district": "강남구", "site": "래미안 103동",
                              "site_kind": "apartment", "gateway": "gw-apt-1",
                              "sensor": "unit-1203"}
    assert set(first) == {"time", "rule", "scope", "state", "value", "severity", "alert_id",
                          "late", "repeat", "message"}


def test_line_protocol_replay_with_arrival_order(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lp = "\n".join([
        "# noise readings, nanoseconds",
        r"noise,gateway=gw-apt-1,sensor=unit\ 1203,site_kind=apartment laeq_1min_dba=40 "
        "1709557200000000000",  # 2024-03-04 22:00 Seoul
        r"noise,gateway=gw-apt-1,sensor=unit\ 1203,site_kind=apartment laeq_1min_dba=30,"
        'note="a \\"quiet\\" minute",ok=t 1709557260000000000',
    ])
    rules = write(tmp_path, "rules.yaml", RULES)
    readings = write(tmp_path, "r.lp", lp)
    assert main(["rules", "test", "--rules", rules, "--readings", readings, "--notified"]) == 0
    got = [(e["rule"], e["state"], e["scope"]) for e in lines(capsys.readouterr().out)]
    scope = {"gateway": "gw-apt-1", "sensor": "unit 1203", "site_kind": "apartment"}
    assert got == [("laeq", "firing", scope), ("laeq", "resolved", scope)]


def test_shipped_rules_replay_a_dust_episode_csv(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["time,measurement,district,site,site_kind,gateway,sensor,pm10_ugm3"]
    for minute in range(0, 240, 5):  # 08:00-11:55, 200 ug/m3 from 09:00
        value = 100 if minute < 60 else 200
        rows.append(f"2024-03-04T{8 + minute // 60:02d}:{minute % 60:02d}:00,particulate,"
                    f"강남구,역삼초등학교,dust_zone,gw-1,pm-1,{value}")
    readings = write(tmp_path, "episode.csv", "\n".join(rows) + "\n")
    args = ["rules", "test", "--readings", readings, "--notified"]
    for path in sorted((ROOT / "configs" / "rules").glob("*.yaml")):
        args += ["--rules", str(path)]
    assert main(args) == 0
    got = [(e["time"], e["rule"], e["state"]) for e in lines(capsys.readouterr().out)]
    # Hourly means 200 for 09-10 and 10-11: issued when 10-11 completes, 11:00 Seoul.
    assert ("2024-03-04T02:00:00Z", "pm10_advisory", "firing") in got


@pytest.mark.parametrize("case", [
    ("rules:\n  - {name: a, kind: threshold, field: x}\n", "time,measurement,x\n", 2,
     "rule error: RULES:2: rules[0].above: kind 'threshold' needs exactly one of above"),
    (RULES, "time,x\n1,2\n", 1, "READINGS: line 1: missing column(s) measurement"),
    (RULES, "time,measurement,x\nyesterday,m,2\n", 1, "READINGS: line 2: time: "),
    (RULES, "m x=1\n", 1, "READINGS: line 1: expected 'measurement,tags fields timestamp'"),
])
def test_errors_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               case: tuple[str, str, int, str]) -> None:
    rules, readings, code, message = case
    rules_path = write(tmp_path, "rules.yaml", rules)
    suffix = ".csv" if readings.startswith("time") else ".lp"
    readings_path = write(tmp_path, "r" + suffix, readings)
    assert main(["rules", "test", "--rules", rules_path, "--readings", readings_path]) == code
    err = capsys.readouterr().err
    expected = message.replace("RULES", rules_path).replace("READINGS", readings_path)
    assert err.startswith(expected), err


def test_rules_check_lists_the_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "rules.yaml", RULES)
    assert main(["rules", "check", "--rules", path]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: laeq (threshold, warning)", f"{path}: quiet (silence, warning)",
        f"{path}: gw_offline (offline, warning)"]


def test_alerts_commands_validate_their_arguments(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "state")
    (tmp_path / "state").mkdir()  # a state directory that does not exist is an error now
    assert main(["alerts", "silence", "--state-dir", state, "--for", "2 hours"]) == 2
    assert "--for: expected a duration" in capsys.readouterr().err
    assert main(["alerts", "silence", "--state-dir", state, "--for", "1h", "--match", "x"]) == 2
    assert "--match expects TAG=VALUE" in capsys.readouterr().err
    assert main(["alerts", "list", "--state-dir", state]) == 0
    assert capsys.readouterr().out == "no open alerts, no silences\n"


def test_the_pm2_5_advisory_from_the_command_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # A user's episode.csv: hourly means 80 (10-11) and 90 (11-12), a reading every
    # 5 minutes; 11:40-11:55 arrive only at 12:20, behind the live 12:00-12:15.
    rows = ["time,measurement,district,site,site_kind,gateway,sensor,pm2_5_ugm3,arrival"]

    def row(hh: int, mm: int, value: int, arrival: str = "") -> str:
        return (f"2024-03-04T{hh:02d}:{mm:02d}:00+09:00,particulate,강남구,역삼초등학교,"
                f"dust_zone,gw-1,pm-1,{value},{arrival}")

    rows += [row(10, mm, 80) for mm in range(0, 60, 5)]
    rows += [row(11, mm, 90) for mm in range(0, 40, 5)]
    rows += [row(12, mm, 60) for mm in range(0, 20, 5)]
    rows += [row(11, mm, 90, "2024-03-04T12:20:00+09:00") for mm in range(40, 60, 5)]
    readings = write(tmp_path, "episode.csv", "\n".join(rows) + "\n")
    code = edge_collector(["rules", "test", "--rules", str(ROOT / "configs/rules/dust.yaml"),
                           "--readings", readings])
    assert code == 0
    got = [(e["time"], e["rule"], e["state"], e["value"], e["late"])
           for e in lines(capsys.readouterr().out)]
    assert got == [
        ("2024-03-04T02:00:00Z", "pm2_5_advisory", "pending", 80.0, False),  # 11:00 Seoul
        # 11-12 holds 8 of 12 slots at 12:00: it does not count, the run is broken...
        ("2024-03-04T03:00:00Z", "pm2_5_advisory", "inactive", 90.0, False),
        # ...until the backlog completes it: the advisory of 12:00, reported late.
        ("2024-03-04T03:00:00Z", "pm2_5_advisory", "firing", 90.0, True),
    ]
