"""The display file: what the terminal's display software reads, written so it never sees half.

Written to a temporary file, fsynced and renamed over the old one (and the
folder fsynced), so a power cut leaves the old board or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_display_file(path: Path, snapshot: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(snapshot, ensure_ascii=False, indent=1).encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_display_file(path: Path) -> dict[str, Any] | None:
    """The last board written, None if there is none; ValueError if it is not one."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("showing"), list):
        raise ValueError(f"{path}: not a display file (no 'showing' list)")
    return doc
