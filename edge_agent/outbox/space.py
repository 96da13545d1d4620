"""The outbox's file system: a full disk, the space reserve, private file modes.

A gateway's disk fills up (logs, a misconfigured outbox bound, a failing SD
card reporting no space). SQLite then answers SQLITE_FULL, and the operating
system ENOSPC. The outbox must keep working in that state for the things that
free space: deleting acknowledged readings and checkpointing the WAL both need
a little room of their own (a delete appends pages to the WAL; a checkpoint can
grow the database file). So the outbox keeps ``RESERVE_BYTES`` of disk in a
file next to it and releases that file the moment an append finds the disk
full. It stores again only once the disk has ``RESUME_FREE_BYTES`` free, and
then takes the reserve back.

A full disk during a run does not release all of it: ``OPEN_RESERVE_BYTES``
stay, across runs, for the next start. Opening the outbox writes (a clean stop
removed the -wal and -shm files, and SQLite recreates them: a 32 KiB wal-index
and a WAL header), so an agent restarted on a disk that is still full, or was
filled further meanwhile, releases that last part to open, and takes the whole
reserve back once space allows.

State files hold readings and acknowledgement state: they are created 0600
(their folder 0700 when the outbox creates it) and tightened to 0600 when
found looser.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from pathlib import Path

from cityedge.atomic import DIR_MODE, FILE_MODE, make_private

# Room kept back for deletes and checkpoints on a full disk. A checkpoint copies
# at most one commit window of WAL (1 s at 100 readings/s of ~450 bytes is
# ~45 KB); deleting one acked batch of 500 readings touches a few dozen 4 KiB
# pages. 512 KiB covers both several times over and is nothing on an SD card.
RESERVE_BYTES = 512 * 1024
# What a full disk during a run leaves of the reserve, for opening at the next start
# (a 32 KiB wal-index, a WAL header and the first checkpoint's pages).
OPEN_RESERVE_BYTES = 128 * 1024
# Free space needed before storing again: the reserve back, and as much again
# for readings, so that one append does not fill the disk at once.
RESUME_FREE_BYTES = 2 * RESERVE_BYTES
# SQLite's primary result codes (sqlite3.h).
SQLITE_IOERR = 10
SQLITE_FULL = 13
# An I/O error with less than this free is taken for a full disk: some SQLite
# paths (growing the -shm file) report ENOSPC as SQLITE_IOERR.
IOERR_FULL_BELOW = 64 * 1024


class OutboxError(Exception):
    """The outbox's one exception family."""


class OutboxUnusable(OutboxError):
    """The outbox cannot be opened or created (read-only folder, no space, not a database)."""


class StoreFailed(OutboxError):
    """An append was not stored: the readings are lost and recorded as a gap."""

    def __init__(self, path: Path, *, disk_full: bool, free_bytes: int, cause: str) -> None:
        self.path, self.disk_full, self.free_bytes, self.cause = path, disk_full, free_bytes, cause
        super().__init__(f"{path}: {'disk full' if disk_full else 'not stored'}: {cause}")

    @property
    def free_mb(self) -> float:
        return round(self.free_bytes / 1024 / 1024, 1)


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use in ``folder``; -1 if unknown."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize


def is_disk_full(exc: BaseException, folder: Path) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == SQLITE_FULL:
            return True
        return code == SQLITE_IOERR and 0 <= free_bytes(folder) < IOERR_FULL_BELOW
    return False


class Reserve:
    """A file of ``size`` bytes held next to the outbox, released when the disk is full:
    down to ``keep`` bytes during a run, the rest only to open the outbox."""

    def __init__(self, path: Path, size: int = RESERVE_BYTES,
                 keep: int = OPEN_RESERVE_BYTES) -> None:
        self.path, self.size = path, size
        self.keep = min(keep, size // 4)

    @property
    def bytes(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def take(self) -> bool:
        """Allocate the reserve (really: blocks, not a sparse file); False if there is no room."""
        if self.size <= 0 or self.held:
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
            try:
                os.posix_fallocate(fd, 0, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            self.release()
            return False
        return True

    def release(self, *, opening: bool = False) -> bool:
        """Free the reserve down to ``keep`` (all of it when ``opening``); False if there
        was nothing to free."""
        keep = 0 if opening else self.keep
        if self.bytes <= keep:
            return False
        if keep:
            os.truncate(self.path, keep)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        return True


def private_files(db: Path) -> None:
    """Create the database file 0600 (SQLite gives its -wal and -shm the same mode), and
    tighten the three to 0600 if they exist with looser modes."""
    if not db.parent.exists():
        db.parent.mkdir(mode=DIR_MODE, parents=True)
    os.close(os.open(db, os.O_RDWR | os.O_CREAT, FILE_MODE))
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        make_private(path)
