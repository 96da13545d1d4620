"""Alert state on local disk: written whole, atomically, and readable with TinyDB.

Power cuts tear writes, so a file is never rewritten in place: the new
content goes to a temp file in the same folder, is fsynced, renamed over the
old one, and the folder is fsynced; a reader sees the old file or the new
one, never half of each. ``alerts.json`` is a TinyDB database (tables alerts,
members, silences, directory, meta) small enough to read by eye;
``alerts.stats.json`` holds the bulk statistics as plain compact JSON.
``commands/`` is a spool the CLI drops acks and silences into; the running
collector applies and deletes them.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

from cityedge.atomic import atomic_write, make_private
from collector.alerts.errors import UsageError


class AtomicJSONStorage(Storage):
    """TinyDB storage writing with ``atomic_write`` (TinyDB's JSONStorage writes in place)."""

    def __init__(self, path: str | Path, indent: int | None = 1, **_: Any) -> None:
        self.path = Path(path)
        self.indent = indent

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        data: dict[str, dict[str, Any]] = json.loads(text)
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        text = json.dumps(data, ensure_ascii=False, indent=self.indent, sort_keys=True)
        atomic_write(self.path, text.encode("utf-8"))

    def close(self) -> None:
        pass


def _table(rows: list[Any]) -> dict[str, Any]:
    return {str(i): row for i, row in enumerate(rows, 1)}


class StateStore:
    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self.alerts_path = self.dir / "alerts.json"
        self.stats_path = self.dir / "alerts.stats.json"
        self.commands_dir = self.dir / "commands"

    # -- engine snapshots -----------------------------------------------------
    def save(self, alerts: dict[str, Any], stats: str | None = None) -> None:
        """Write the lifecycle file, and the statistics (JSON text, snapshot.py) if given."""
        meta = {"version": alerts["version"], "now": alerts["now"], "saved_ns": time.time_ns()}
        if "handover" in alerts:  # the save's version with lease: etcd (handover.py)
            meta["handover"] = alerts["handover"]
        doc = {
            "meta": _table([meta]),
            "alerts": _table(alerts["groups"]),
            "members": _table(alerts["members"]),
            "silences": _table(alerts["silences"]),
            "directory": _table([{"gateway": gw, "tags": tags}
                                 for gw, tags in sorted(alerts["directory"].items())]),
        }
        if stats is not None:
            # Stats first: a crash between the two writes leaves older stats with
            # newer lifecycle, and restore() lets the lifecycle win.
            atomic_write(self.stats_path, stats.encode("utf-8"))
        AtomicJSONStorage(self.alerts_path).write(doc)

    def load_alerts(self) -> dict[str, Any] | None:
        """The lifecycle file (small), or None when there is none; UsageError if unreadable."""
        make_private(self.alerts_path)
        try:
            doc = AtomicJSONStorage(self.alerts_path).read()
        except (ValueError, OSError) as exc:
            raise UsageError(f"cannot read alert state in {self.dir}: {exc}") from None
        if doc is None:
            return None
        meta: dict[str, Any] = next(iter(doc.get("meta", {}).values()), {})
        alerts = {
            "version": meta.get("version"),
            "now": meta.get("now", 0),
            "groups": list(doc.get("alerts", {}).values()),
            "members": list(doc.get("members", {}).values()),
            "silences": list(doc.get("silences", {}).values()),
            "directory": {r["gateway"]: r["tags"] for r in doc.get("directory", {}).values()},
        }
        if "handover" in meta:
            alerts["handover"] = meta["handover"]
        return alerts

    def load_stats(self) -> dict[str, Any] | None:
        """The statistics file (tens of megabytes for a city), or None; UsageError if unreadable."""
        make_private(self.stats_path)
        try:
            stats: dict[str, Any] | None = (json.loads(self.stats_path.read_text(encoding="utf-8"))
                                            if self.stats_path.exists() else None)
        except (ValueError, OSError) as exc:
            raise UsageError(f"cannot read alert state in {self.dir}: {exc}") from None
        return stats

    def db(self) -> TinyDB:
        """The alert state as a TinyDB database, for reading (``edge-collector alerts list``)."""
        return TinyDB(self.alerts_path, storage=AtomicJSONStorage)

    # -- the command spool ------------------------------------------------------
    def put_command(self, command: dict[str, Any]) -> Path:
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        path = self.commands_dir / name
        atomic_write(path, json.dumps(command, ensure_ascii=False).encode("utf-8"))
        return path

    def take_commands(self) -> list[tuple[Path, dict[str, Any] | None]]:
        """Spooled commands, oldest first; None for a file that is not valid JSON."""
        if not self.commands_dir.is_dir():
            return []
        out: list[tuple[Path, dict[str, Any] | None]] = []
        for path in sorted(self.commands_dir.glob("*.json")):
            try:
                out.append((path, json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError):
                out.append((path, None))
        return out
