"""Who evaluates alerts when several collectors run: ``lease: file`` or ``lease: etcd``.

Only the holder of the lease evaluates and notifies; the others stand by and
take over when it goes (docs/alerts.md, "Several collectors"). ``Lease`` is
what the runner needs from either kind:

- ``FileLease`` (here): an flock on ``<state_dir>/alerts.lease``. The kernel
  releases the lock when its holder dies (kill -9 included), so a standby
  takes over on its next attempt without any timeout guesswork. It
  coordinates processes on one host (or on a shared file system whose locks
  work), which share the state files too, so nothing is handed over.
- ``EtcdLease`` (collector/alerts/etcd_lease.py, deciding in etcd_election.py):
  etcd's election recipe, for collectors on several hosts; the leader key's
  create revision is a fencing token on everything the leader writes or
  notifies, and its open alerts go through etcd to the next one (handover.py).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from collector.alerts.handover import Header, Version


class Lease(Protocol):
    on_change: Callable[[], None] | None  # called when ``held`` changes by itself

    @property
    def held(self) -> bool:
        """We hold the lease now: evaluate and notify."""
        ...

    @property
    def term(self) -> tuple[int, str] | None:
        """(token, holder) for the versions of handed-over state; None: nothing handed over."""
        ...

    @property
    def token(self) -> int | None:
        """The fencing token while we hold the lease; None: held without one (file), or not."""
        ...

    async def start(self) -> None: ...

    def poll(self) -> None:
        """Once a tick: try to take the lease if this kind must ask."""
        ...

    def describe(self) -> str: ...

    def health_fields(self) -> dict[str, int]:
        """This lease's own counters for the collector's health point."""
        ...

    def handed_over(self) -> Sequence[tuple[Header, bytes]]:
        """Alert state handed over by the last leader, newest first (none for a file lease)."""
        ...

    async def publish_state(self, payload: bytes, version: Version) -> bool: ...

    async def close(self) -> None:
        """Release the lease (a standby takes over) and let go of any connection."""
        ...


class FileLease:
    def __init__(self, path: str | Path, holder: str) -> None:
        self.path = Path(path)
        self.holder = holder
        self.on_change: Callable[[], None] | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def term(self) -> tuple[int, str] | None:
        return None  # the processes share one state_dir: nothing to hand over

    @property
    def token(self) -> int | None:
        return None  # the kernel's lock needs no fence: a paused holder keeps it

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

    # -- the Lease interface -------------------------------------------------------------
    async def start(self) -> None:
        self.try_acquire()

    def poll(self) -> None:
        self.try_acquire()

    def describe(self) -> str:
        return f"file lease {self.path}, held by {self.holder_text() or 'nobody'}"

    def health_fields(self) -> dict[str, int]:
        return {}  # the file is the whole state; its errors are the runner's

    def handed_over(self) -> Sequence[tuple[Header, bytes]]:
        return ()

    async def publish_state(self, payload: bytes, version: Version) -> bool:
        return False

    async def close(self) -> None:
        self.release()
