"""edge-agent's --help promises that every flag can be set by an environment variable:
each flag names its variable in its help, and setting the variable sets the flag."""

from __future__ import annotations

import argparse

import pytest

from edge_agent import cli

# The least each command needs on its command line, besides the flag under test.
MINIMAL = {
    "run": ["--config", "agent.yaml"], "check": ["--config", "agent.yaml"],
    "status": ["--config", "agent.yaml"], "probe": ["/dev/ttyUSB0"],
    "decode": ["--profile", "pms5003", "--hex", "42 4d"], "sample-config": [],
    "doctor": ["--config", "agent.yaml"], "tail": ["--config", "agent.yaml"],
}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def flags() -> list[tuple[str, argparse.Action]]:
    return [(command, a) for command, sp in subparsers().items() for a in sp._actions
            if a.option_strings and a.option_strings[0] != "-h"]


def sample(action: argparse.Action) -> tuple[str, object]:
    """A value for the variable, and what the parsed flag must then be."""
    if isinstance(action, argparse._StoreTrueAction):
        return "yes", True
    if action.choices:
        first = next(iter(action.choices))
        return str(first), first
    if action.type is int:
        return "7", 7
    if action.type is float:
        return "2.5", 2.5
    return "from-env", "from-env"


def without(argv: list[str], flag: str) -> list[str]:
    out = list(argv)
    if flag in out:
        i = out.index(flag)
        del out[i:i + 2]
    return out


def test_every_flag_is_covered() -> None:
    names = {a.option_strings[0] for _, a in flags()}
    assert {"--config", "--log-level", "--json", "--baud", "--listen", "--reply-timeout",
            "--slave", "--profiles-dir", "--profile", "--hex", "--file",
            "--skipped", "--systemd", "--site", "--watch", "--sensor"} == names


@pytest.mark.parametrize(("command", "action"), flags(),
                         ids=[f"{c} {a.option_strings[0]}" for c, a in flags()])
def test_each_flag_has_its_variable(command: str, action: argparse.Action,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    flag = action.option_strings[0]
    name = cli.env_name(flag)
    assert action.help is not None and f"(env {name})" in action.help
    raw, expected = sample(action)
    monkeypatch.setenv(name, raw)
    argv = without(MINIMAL[command], flag)
    if flag == "--file":  # --hex and --file exclude each other
        argv = without(argv, "--hex")
    args = cli._parser().parse_args([command, *argv])
    assert getattr(args, action.dest) == expected


def test_the_command_line_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYEDGE_AGENT_LISTEN", "9")
    monkeypatch.setenv("CITYEDGE_AGENT_CONFIG", "env.yaml")
    assert cli._parser().parse_args(["probe", "/dev/x", "--listen", "1"]).listen == 1.0
    assert cli._parser().parse_args(["probe", "/dev/x"]).listen == 9.0
    assert cli._parser().parse_args(["check", "--config", "cli.yaml"]).config == "cli.yaml"


@pytest.mark.parametrize("raw", ["0", "no", "false", ""])
def test_a_switch_is_off_unless_its_variable_says_so(raw: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYEDGE_AGENT_JSON", raw)
    assert cli._parser().parse_args(["status", "--config", "a.yaml"]).json is False


def test_a_bad_value_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CITYEDGE_AGENT_BAUD", "fast")
    with pytest.raises(SystemExit) as info:
        cli._parser().parse_args(["probe", "/dev/x"])
    assert info.value.code == 2
    assert "--baud" in capsys.readouterr().err


def test_required_flags_stay_required_without_their_variable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("CITYEDGE_AGENT_CONFIG", "CITYEDGE_AGENT_HEX", "CITYEDGE_AGENT_FILE"):
        monkeypatch.delenv(name, raising=False)
    for argv in (["run"], ["decode", "--profile", "pms5003"]):
        with pytest.raises(SystemExit) as info:
            cli._parser().parse_args(argv)
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--config" in err and "--hex" in err


def test_hex_from_the_environment_and_file_on_the_command_line_is_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CITYEDGE_AGENT_HEX", "42 4d")
    assert cli.main(["decode", "--profile", "pms5003", "--file", "capture.bin"]) == 2
    assert "one of --hex and --file" in capsys.readouterr().err


def test_the_help_says_it() -> None:
    assert "Every flag can also be set by an environment variable" in (
        cli._parser().description or "")
