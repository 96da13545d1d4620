"""``edge-agent check`` tells an installer every mistake in a config at once, each at its
file:line: wrong values, unknown keys, unknown profiles, ports that are not on this
machine, and YAML syntax errors with their column."""

from __future__ import annotations

import os
import pty
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityedge.yamlconfig import ConfigError
from edge_agent import cli
from edge_agent.config import load_config

SITE = "gateway: {id: gw-1, site: {district: 강남구, site: 옥상, kind: dust_zone}}\n"


@pytest.fixture
def port() -> Iterator[str]:
    """A port that exists: a pseudo-terminal's follower side."""
    leader, follower = pty.openpty()
    try:
        yield os.ttyname(follower)
    finally:
        os.close(leader)
        os.close(follower)


def _check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    config = tmp_path / "agent.yaml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        cli.main(["check", "--config", str(config)])
    return int(exited.value.code or 0), capsys.readouterr().err


def test_every_error_in_a_file_is_reported_at_once_with_its_line(
        tmp_path: Path, port: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _check(tmp_path, (
        "gateway: {id: gw-1, site: {district: a, site: b, kind: nowhere}}\n"
        "sensors:\n"
        f"  - {{id: a, port: {port}, profile: pms5003, baudrate: fast}}\n"
        f"  - {{id: b, port: {port}, profile: nosuch, colour: red}}\n"
        "outbox: {commit_window: -1}\n"), capsys)
    config = tmp_path / "agent.yaml"
    assert code == 2
    lines = err.splitlines()
    assert lines == [
        f"config error: {config}:1: gateway.site.kind: expected one of 'dust_zone',"
        " 'bus_stop', 'apartment', got 'nowhere'",
        f"config error: {config}:3: sensors[0].baudrate: expected an integer or null,"
        " got 'fast'",
        f"config error: {config}:4: sensors[1].colour: unknown key 'colour'; expected one of:"
        " baudrate, id, modbus_slave, mode, params, poll_interval, port, profile, tags,"
        " warmup_readings, warmup_s",
        *[line for line in lines if "sensors[1].profile" in line],
        f"config error: {config}:5: outbox.commit_window: expected >= 0.0, got -1.0",
        "5 errors",
    ]
    (unknown,) = [line for line in lines if "sensors[1].profile" in line]
    assert unknown.startswith(f"config error: {config}:4: sensors[1].profile: unknown profile"
                              " 'nosuch'; ") and "pms5003" in unknown


def test_a_port_that_is_not_on_this_machine_fails_check(
        tmp_path: Path, port: str, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "ttyUSB9"
    code, err = _check(tmp_path, SITE + (
        "sensors:\n"
        f"  - {{id: a, port: {port}, profile: pms5003}}\n"
        f"  - {{id: b, port: {missing}, profile: sds011}}\n"), capsys)
    assert code == 2
    assert err.splitlines() == [
        f"config error: {tmp_path / 'agent.yaml'}:4: sensors[1].port: {missing} does not exist"
        " on this machine (is the sensor plugged in? ls /dev/serial/by-id/)"]


def test_a_good_config_passes_check(tmp_path: Path, port: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(SITE + f"sensors:\n  - {{id: a, port: {port}, profile: pms5003}}\n"
                      f"outbox: {{path: {tmp_path / 'outbox.sqlite'}}}\n", encoding="utf-8")
    assert cli.main(["check", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith(f"{config}: ok (1 sensors; outbox ")


@pytest.mark.parametrize(("text", "line", "message"), [
    ("gateway:\n  id: x\n  site: {district: a\nsensors: []\n", 4,
     "not valid YAML: expected ',' or '}', but got ':' (column 8), while parsing a flow"
     " mapping at line 3, column 9"),
    ("gateway:\n  id: x\n   bad: 1\n", 3,
     "not valid YAML: mapping values are not allowed here (column 7)"),
])
def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path: Path, text: str, line: int,
                                                        message: str) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value) == f"{config}:{line}: <top>: {message}"
    assert "<unicode string>" not in str(info.value)


def test_one_error_is_itself_and_several_keep_file_order() -> None:
    first = ConfigError("a.yaml", 7, ("x",), "bad x")
    second = ConfigError("a.yaml", 2, ("y",), "bad y")
    assert ConfigError.combine([first]) is first
    both = ConfigError.combine([first, second])
    assert both.errors == (second, first)
    assert (both.line, both.path) == (2, ("y",))
    assert str(both) == "a.yaml:2: y: bad y\na.yaml:7: x: bad x"


def test_what_a_profile_cannot_do_is_reported_for_every_sensor_at_its_key(
        tmp_path: Path, port: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A mode the model has not, a poll_interval of 0 or a parameter out of range stopped
    ``run`` at the first sensor, with no line; ``check`` names each sensor's at its key."""
    code, err = _check(tmp_path, SITE + (
        "sensors:\n"
        f"  - id: a\n    port: {port}\n    profile: pms5003\n    mode: polled\n"
        f"  - id: b\n    port: {port}\n    profile: sds011\n    mode: passive\n"
        "    poll_interval: 0\n"
        f"  - id: c\n    port: {port}\n    profile: pms5003\n    modbus_slave: 3\n"), capsys)
    config = tmp_path / "agent.yaml"
    assert code == 2
    assert err.splitlines() == [
        f"config error: {config}:6: sensors[0].mode: 'polled' is not a mode of pms5003"
        " (active, passive)",
        f"config error: {config}:11: sensors[1].poll_interval: expected seconds > 0, got 0.0",
        f"config error: {config}:15: sensors[2].modbus_slave: pms5003 is not a Modbus profile",
        "3 errors",
    ]
