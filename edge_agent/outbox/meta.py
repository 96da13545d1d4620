"""The outbox file's meta table, SQL only: one text value per key. The store (store.py)
owns the connection and its transactions and passes either in.

The keys and their values are the outbox file format; files written by earlier
releases are read as they are:

    epoch                          hex text, made once per file
    handed_out                     JSON [[lo, hi], ...]: the last run's hand-outs
    dropped:<sensor>               integer text: readings the drop policy took
    gap:<sensor>:<measurement>     JSON gap (bookkeeping.Gap.doc): dropped, not recorded yet
    unstored:<sensor>:<measurement>  the same, for readings a full disk kept out
    boot:<boot id>                 JSON BootTime (edge_agent/timebase.py)
    sensor:<sensor id>             JSON model and tags, keys sorted
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable

from edge_agent.outbox.bookkeeping import Gap, merged

Db = sqlite3.Connection | sqlite3.Cursor

PUT = ("INSERT INTO meta(key, value) VALUES (?, ?)"
       " ON CONFLICT(key) DO UPDATE SET value = excluded.value")


def get(db: Db, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def put(db: Db, key: str, value: str) -> None:
    db.execute(PUT, (key, value))


def by_prefix(db: Db, prefix: str) -> dict[str, str]:
    """``{rest: value}`` for every key ``<prefix>:<rest>``."""
    rows = db.execute("SELECT key, value FROM meta WHERE key LIKE ?", (f"{prefix}:%",))
    return {key.split(":", 1)[1]: str(value) for key, value in rows}


def epoch(db: sqlite3.Connection) -> str:
    """The file's epoch; a new file gets one, fsynced before any reading is stored."""
    value = get(db, "epoch")
    if value is not None:
        return value
    value = secrets.token_hex(8)
    db.execute("INSERT INTO meta(key, value) VALUES ('epoch', ?)", (value,))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return value


def add_dropped(cur: Db, gaps: Iterable[Gap]) -> None:
    for gap in gaps:
        cur.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET"
            " value = CAST(value AS INTEGER) + excluded.value",
            (f"dropped:{gap.sensor}", gap.count),
        )


def open_gaps(cur: Db, prefix: str, gaps: Iterable[Gap]) -> None:
    """Merge gaps into the open ones kept under ``<prefix>:<sensor>:<measurement>``."""
    for gap in gaps:
        key = gap.key(prefix)
        value = get(cur, key)
        open_gap = None if value is None else Gap.from_meta(key, json.loads(value))[1]
        put(cur, key, json.dumps(merged(open_gap, gap).doc()))


def take_gaps(cur: Db) -> list[tuple[str, Gap]]:
    """Every open gap (prefix, gap), removed from meta."""
    rows = cur.execute("SELECT key, value FROM meta WHERE key LIKE 'gap:%'"
                       " OR key LIKE 'unstored:%'").fetchall()
    cur.executemany("DELETE FROM meta WHERE key = ?", [(key,) for key, _ in rows])
    return [Gap.from_meta(key, json.loads(value)) for key, value in rows]
