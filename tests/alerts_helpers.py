"""Alert state and configuration from text, for tests: what the collector itself never needs.

The collector loads rule files and its alerts section from files, and writes
the engine's statistics as text (snapshot.dump_stats_text, store.save); the
tests want them from strings and as data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cityedge import yamlconfig
from collector.alerts.config import LoadedAlerts, load_alerts
from collector.alerts.engine import Engine
from collector.alerts.rulefile import parse_rules
from collector.alerts.rules import RuleSet, compile_file
from collector.alerts.snapshot import dump_stats_text
from collector.alerts.store import StateStore
from collector.alerts.units import NS


def rules_from_text(text: str, file: str = "<rules>") -> RuleSet:
    """A rule file's rules, from its text."""
    return RuleSet(compile_file(parse_rules(text, file), file))


def parse_alerts(text: str, base_dir: Path, file: str = "<alerts>") -> LoadedAlerts:
    """An alerts section from YAML text (its top level)."""
    doc = yamlconfig.parse(text, file)
    return load_alerts(doc.data, doc, base_dir, ())


def stats_text(engine: Engine) -> str:
    """The statistics file's text, dumped in one go (the runner lets the loop run between)."""
    steps = dump_stats_text(engine, chunk=0)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            text: str = done.value
            return text


def dump_stats(engine: Engine) -> dict[str, Any]:
    """The statistics as data."""
    result: dict[str, Any] = json.loads(stats_text(engine))
    return result


def load_state(store: StateStore) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Both state files; UsageError if one cannot be read."""
    return store.load_alerts(), store.load_stats()


def format_duration(ns: int) -> str:
    """The shortest exact form a rule file may write: 7200e9 -> "2h", 5400e9 -> "1h30m"."""
    if ns == 0:
        return "0s"
    out = ""
    for unit in ("d", "h", "m", "s", "ms"):
        n, ns = divmod(ns, NS[unit])
        if n:
            out += f"{n}{unit}"
    return out + (f"{ns}ns" if ns else "")
