"""A serial device on a pseudo-terminal, reachable at a stable path (as udev's by-id links are).

The slave side is put in raw mode at once: in the default cooked mode the
line discipline would hold binary frames until a newline and turn 0x0D into
0x0A before the agent has opened the port.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tty
from pathlib import Path


class PtyDevice:
    def __init__(self, link: Path | None = None) -> None:
        self.link = link
        self.master_fd = -1
        self.slave_fd = -1
        self.plugged = False
        self.plug()

    @property
    def path(self) -> str:
        """The path the agent opens: the stable link if there is one, else the pts node."""
        return str(self.link) if self.link else os.ttyname(self.slave_fd)

    def plug(self) -> None:
        self.master_fd, self.slave_fd = os.openpty()
        tty.setraw(self.slave_fd)
        os.set_blocking(self.master_fd, False)
        if self.link is not None:
            self.link.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(os.ttyname(self.slave_fd))
            tmp.replace(self.link)
        self.plugged = True

    def unplug(self) -> None:
        """The device vanishes: both ends close, a reader gets EIO, the link dangles."""
        for fd in (self.master_fd, self.slave_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master_fd = self.slave_fd = -1
        self.plugged = False

    def write(self, data: bytes) -> int:
        """Write what the kernel takes now; returns bytes written (0 when its buffer is full)."""
        if not self.plugged:
            return 0
        try:
            return os.write(self.master_fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EBADF):
                return 0
            raise

    def read(self, n: int = 4096) -> bytes:
        """Bytes the agent sent to the device (commands), empty if none."""
        if not self.plugged:
            return b""
        try:
            return os.read(self.master_fd, n)
        except (BlockingIOError, OSError):
            return b""

    def close(self) -> None:
        self.unplug()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
