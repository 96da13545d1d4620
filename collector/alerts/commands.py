"""Operator commands: what ``edge-collector alerts ack|silence|unsilence`` spooled, applied.

The CLI (cli.py) writes each command as a file in ``<state_dir>/commands``
(store.py); the leading runner takes them every tick, oldest first, applies
them to its engine and deletes them. A command that cannot be applied is
logged and deleted too: it would fail the same way every tick.

Each command's outcome is written to ``command_results/<same name>`` (applied,
or refused and why), for the CLI that queued it to report; the newest
``MAX_RESULTS`` are kept, so results nobody reads do not pile up.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cityedge.atomic import atomic_write
from collector.alerts.engine import Engine
from collector.alerts.errors import UsageError
from collector.alerts.events import Ack, AlertEvent, Silence
from collector.alerts.store import StateStore

log = logging.getLogger("collector.alerts.runner")  # its records, as before the split

Dispatch = Callable[[list[AlertEvent]], None]

RESULTS_DIR = "command_results"  # beside the spool, in the state folder
# Outcomes kept for the CLI to read (it deletes the one it reads).
MAX_RESULTS = 100


def result_path(command: Path) -> Path:
    """Where the outcome of the command spooled at ``command`` is written."""
    return command.parent.parent / RESULTS_DIR / command.name


def _record(path: Path, applied: bool, detail: str) -> None:
    try:
        atomic_write(result_path(path), json.dumps(
            {"applied": applied, "detail": detail}, ensure_ascii=False).encode("utf-8"))
    except OSError as exc:  # the command still counts; only its report is lost
        log.warning("alerts: outcome of command %s not recorded: %s", path.name, exc)


def _prune(state_dir: Path) -> None:
    done = state_dir / RESULTS_DIR
    if not done.is_dir():
        return
    for old in sorted(done.glob("*.json"))[:-MAX_RESULTS]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()


def apply_commands(store: StateStore, engine: Engine, now_ns: int, dispatch: Dispatch) -> int:
    """Apply every spooled command (events an ack makes go to ``dispatch``); how many."""
    taken = 0
    for path, cmd in store.take_commands():
        taken += 1
        try:
            apply_command(engine, cmd, now_ns, dispatch)
        except (UsageError, KeyError, ValueError, TypeError) as exc:
            log.warning("alerts: command %s ignored: %s", path.name, exc)
            _record(path, False, str(exc) if isinstance(exc, UsageError)
                    else f"malformed command: {type(exc).__name__}: {exc}")
        else:
            _record(path, True, "applied")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if taken:
        _prune(store.dir)
    return taken


def apply_command(engine: Engine, cmd: dict[str, Any] | None, now_ns: int,
                  dispatch: Dispatch) -> None:
    """One command; raises UsageError (or what a malformed one makes raise) if it cannot be."""
    if cmd is None:
        raise UsageError("not valid JSON")
    kind = cmd.get("cmd")
    if kind == "ack":
        dispatch(engine.acknowledge(
            Ack(cmd["alert_id"], now_ns, cmd.get("by", ""), cmd.get("comment", ""))))
    elif kind == "silence":
        if cmd["rule"] != "*" and cmd["rule"] not in engine.index:
            raise UsageError(f"no rule {cmd['rule']!r}")
        engine.add_silence(Silence(cmd["id"], cmd["rule"], dict(cmd["match"]),
                                   int(cmd["until_ns"]), int(cmd["created_ns"]),
                                   cmd.get("by", ""), cmd.get("comment", "")))
    elif kind == "unsilence":
        if not engine.remove_silence(cmd["id"]):
            raise UsageError(f"no silence {cmd['id']}")
    else:
        raise UsageError(f"unknown command {kind!r}")
