"""Writing a whole file so that a reader, or a power cut, sees the old one or the new one.

Used by the collector's alert state and the gateway's display file: a temporary
file in the same folder (unique, so two writers cannot mix), fsynced, renamed
over the old one, then the folder fsynced so the rename itself is durable.

State is private: the file is created 0600 (mkstemp's mode, kept by the
rename), a folder this creates 0700, and ``make_private`` tightens a state file
found with looser modes when it is opened.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private(path: Path) -> None:
    """chmod 0600 if ``path`` exists with more; best effort (a read-only mount, a file of
    another owner: it is still read, and the next write replaces it 0600)."""
    with contextlib.suppress(OSError):
        if os.stat(path).st_mode & 0o777 != FILE_MODE:
            os.chmod(path, FILE_MODE)


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``; ``mode`` sets the permissions before the rename
    (the temporary file is created 0600, which is also what the file keeps without it)."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
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
