"""The display file: what the terminal's display software reads, written so it never sees half.

Written whole (cityedge/atomic.py), so the display software and a power cut see
the old board or the new one, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cityedge.atomic import atomic_write, make_private


def write_display_file(path: Path, snapshot: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(snapshot, ensure_ascii=False, indent=1).encode("utf-8"))


def read_display_file(path: Path) -> dict[str, Any] | None:
    """The last board written, None if there is none; ValueError if it is not one."""
    make_private(path)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("showing"), list):
        raise ValueError(f"{path}: not a display file (no 'showing' list)")
    return doc
