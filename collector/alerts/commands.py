"""Operator commands: what ``edge-collector alerts ack|silence|unsilence`` spooled, applied.

The CLI (cli.py) writes each command as a file in ``<state_dir>/commands``
(store.py); the leading runner takes them every tick, oldest first, applies
them to its engine and deletes them. A command that cannot be applied is
logged and deleted too: it would fail the same way every tick.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from collector.alerts.engine import Engine
from collector.alerts.errors import UsageError
from collector.alerts.events import Ack, AlertEvent, Silence
from collector.alerts.store import StateStore

log = logging.getLogger("collector.alerts.runner")  # its records, as before the split

Dispatch = Callable[[list[AlertEvent]], None]


def apply_commands(store: StateStore, engine: Engine, now_ns: int, dispatch: Dispatch) -> int:
    """Apply every spooled command (events an ack makes go to ``dispatch``); how many."""
    taken = 0
    for path, cmd in store.take_commands():
        taken += 1
        try:
            apply_command(engine, cmd, now_ns, dispatch)
        except (UsageError, KeyError, ValueError, TypeError) as exc:
            log.warning("alerts: command %s ignored: %s", path.name, exc)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
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
        engine.add_silence(Silence(cmd["id"], cmd["rule"], dict(cmd["match"]),
                                   int(cmd["until_ns"]), int(cmd["created_ns"]),
                                   cmd.get("by", ""), cmd.get("comment", "")))
    elif kind == "unsilence":
        if not engine.remove_silence(cmd["id"]):
            raise UsageError(f"no silence {cmd['id']}")
    else:
        raise UsageError(f"unknown command {kind!r}")
