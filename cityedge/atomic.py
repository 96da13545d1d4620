"""Writing a whole file so that a reader, or a power cut, sees the old one or the new one.

Used by the collector's alert state and the gateway's display file: a temporary
file in the same folder (unique, so two writers cannot mix), fsynced, renamed
over the old one, then the folder fsynced so the rename itself is durable.

A power cut between the temporary file's creation and the rename leaves that
file behind; the next write of the same file removes such leftovers once they
are a minute old (a writer working now has a younger one), so cuts do not pile
them up on a gateway's card.

State is private: the file is created 0600 (mkstemp's mode, kept by the
rename), a folder this creates 0700, and ``make_private`` tightens a state file
found with looser modes when it is opened.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
STALE_TEMP_S = 60.0  # a temporary file this old (either way: no RTC) was left by a cut


def make_private(path: Path) -> None:
    """chmod 0600 if ``path`` exists with more; best effort (a read-only mount, a file of
    another owner: it is still read, and the next write replaces it 0600)."""
    with contextlib.suppress(OSError):
        if os.stat(path).st_mode & 0o777 != FILE_MODE:
            os.chmod(path, FILE_MODE)


def remove_leftovers(path: Path, now: float | None = None) -> int:
    """Delete temporary files of ``path`` a power cut left (older than STALE_TEMP_S, or
    dated ahead by as much); returns how many. Best effort: one it cannot delete stays."""
    now = time.time() if now is None else now
    removed = 0
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if abs(now - tmp.stat().st_mtime) > STALE_TEMP_S:
                tmp.unlink()
                removed += 1
    return removed


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``; ``mode`` sets the permissions before the rename
    (the temporary file is created 0600, which is also what the file keeps without it)."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
