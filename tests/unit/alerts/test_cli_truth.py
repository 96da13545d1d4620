"""``edge-collector alerts``: unknown alerts, rules, silences and state folders are errors, and
ack/silence say whether the leading collector applied them (it runs here, the CLI in a thread)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from collector.alerts.cli import EXIT_NOT_TAKEN, EXIT_REFUSED
from collector.alerts.cli import main as cli
from collector.alerts.runner import AlertRunner
from tests.unit.alerts.test_runner import Written, capture, heat, run, setup, until


def test_a_state_folder_that_does_not_exist_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nonexistent")
    for argv in (["list"], ["ack", "deadbeef00000000"], ["silence", "--for", "1h"],
                 ["unsilence", "abc"]):
        assert cli(["alerts", *argv, "--state-dir", missing]) == 2
        assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "nonexistent").exists()  # and nothing was created there


def test_nothing_to_answer_within_the_wait_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    assert cli(["alerts", "ack", "a1b2", "--state-dir", str(state), "--wait", "0.3"]) == (
        EXIT_NOT_TAKEN)
    assert "no collector took it within 0.3 s" in capsys.readouterr().err
    assert len(list((state / "commands").iterdir())) == 1  # still queued


async def command(state: Path, *argv: str) -> int:
    """The CLI in a thread, so the collector's tick loop runs meanwhile."""
    return await asyncio.to_thread(cli, ["alerts", *argv, "--state-dir", str(state)])


def test_before_anything_is_saved_the_collectors_answer_decides(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        runner = AlertRunner(setup(tmp_path, "  - {type: capture}\n"), write_points=Written())
        await runner.start()
        (tmp_path / "state").mkdir(exist_ok=True)
        assert not (tmp_path / "state" / "alerts.json").exists()
        assert await command(tmp_path / "state", "ack", "deadbeef00000000") == EXIT_REFUSED
        assert "ack deadbeef00000000: refused by the collector: no open alert" in (
            capsys.readouterr().err)
        assert await command(tmp_path / "state", "silence", "--rule", "nosuchrule",
                             "--for", "1h") == EXIT_REFUSED
        # the collector's answer, or (once it has saved its rules) the CLI's own check
        assert "no rule 'nosuchrule'" in capsys.readouterr().err
        await runner.close()

    run(scenario())


def test_applied_commands_say_so_and_saved_state_refuses_unknown_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"

    async def scenario() -> None:
        runner = AlertRunner(setup(tmp_path, "  - {type: capture}\n"), write_points=Written())
        await runner.start()
        state.mkdir(exist_ok=True)
        heat(runner, "03-04 10:00", [11, 11, 11])
        await until(lambda: len(capture(runner).sent) == 1, "the firing notification")
        alert_id = capture(runner).sent[0].alert_id
        assert await command(state, "ack", alert_id, "--by", "kim") == 0
        assert capsys.readouterr().out == f"ack {alert_id}: applied by the collector\n"
        assert await command(state, "silence", "--rule", "hot", "--for", "2h") == 0
        assert "applied by the collector" in capsys.readouterr().out

        assert await command(state, "silence", "--rule", "nosuchrule", "--for", "1h") == (
            EXIT_REFUSED)
        assert "refused by the collector: no rule 'nosuchrule'" in capsys.readouterr().err
        assert await command(state, "ack", alert_id) == EXIT_REFUSED
        assert "refused by the collector: alert" in capsys.readouterr().err
        await runner.save()
        await runner.close()

        # No collector now: what the saved state shows is unknown is refused and withdrawn.
        assert await command(state, "ack", alert_id, "--wait", "0.2") == EXIT_REFUSED
        assert f"alert {alert_id} is acknowledged, not firing; no collector answered" in (
            capsys.readouterr().err)
        assert await command(state, "ack", "deadbeef00000000", "--wait", "0") == EXIT_REFUSED
        assert "no alert deadbeef00000000 (edge-collector alerts list" in (
            capsys.readouterr().err)
        assert await command(state, "unsilence", "nosuchsilence", "--wait", "0.2") == (
            EXIT_REFUSED)
        assert "no silence nosuchsilence" in capsys.readouterr().err
        assert list((state / "commands").iterdir()) == []

    run(scenario())
