"""Who evaluates alerts when several collectors run: the holder of an flock on a lease file.

The kernel releases the lock when its holder dies (kill -9 included), so a
standby takes over on its next attempt without any timeout guesswork. The
limit, stated in docs/alerts.md: flock coordinates processes on one host (or
on a shared file system whose locks work); collectors on separate hosts need
an external lease, or must rely on receivers deduplicating by alert id.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FileLease:
    def __init__(self, path: str | Path, holder: str) -> None:
        self.path = Path(path)
        self.holder = holder
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lease if free; never blocks. True if we hold it now."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.holder} pid {os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder_text(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""
