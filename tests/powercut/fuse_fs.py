"""The power-cut filesystem: disk.py's model mounted with FUSE, run as its own process.

    python -m tests.powercut.fuse_fs DURABLE MOUNTPOINT [--cut-at N --cut-on KIND]
                                     [--torn-seed S] [--log FILE]

A power cut is the death of this process: everything in its memory that was not
fsynced is gone. It comes two ways:
- from outside: the test kills the process writing to the disk, then this one
  (SIGKILL both);
- from inside, at an exact call: with ``--cut-at N`` the N-th call of the kind
  ``--cut-on`` names (``write``, ``fsync``, ``truncate``, ``unlink``, ``any``) is never
  answered: the process that made it is killed, then this one exits. That puts cuts
  inside an append, a checkpoint or a delete rather than between them.
``--lose-dir-fsyncs`` makes a disk that forgets new names (the tests show they fail on
it). With ``--torn-seed`` the disk first writes a random half of its unsynced pages
(seeded), as a disk that got part of its queue out before the power went.

Runs single-threaded (FUSE ``-s``): calls are applied in the order they arrive.
POSIX locks stay with the kernel (the filesystem does not implement ``lock``),
which is what SQLite on one machine needs; its WAL shared memory is a file here
like any other (mmap goes through the kernel's page cache and this process).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Any

import mfusepy as fuse

from tests.powercut.disk import Disk, DiskError, Node

KINDS = ("write", "fsync", "truncate", "unlink", "any")


class PowerCutFs(fuse.Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, disk: Disk, cut_at: int | None, cut_on: str, torn_seed: int | None,
                 log: Path | None, *, lose_dir_fsyncs: bool = False) -> None:
        self.disk = disk
        self.lose_dir_fsyncs = lose_dir_fsyncs
        self.cut_at, self.cut_on, self.torn_seed, self.log = cut_at, cut_on, torn_seed, log
        self.calls = 0
        self.by_kind: dict[str, int] = {}
        self.handles: dict[int, Node] = {}
        self.next_fh = 1
        self.started = time.time_ns()

    # -- the cut -------------------------------------------------------------------
    def _call(self, kind: str, name: str) -> None:
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if self.cut_on in (kind, "any"):
            self.calls += 1
            if self.cut_at is not None and self.calls >= self.cut_at:
                self.cut(f"{kind} {name}")

    def cut(self, during: str) -> None:
        caller = fuse.fuse_get_context()[2]
        if caller > 0:
            os.kill(caller, signal.SIGKILL)
        kept = 0
        if self.torn_seed is not None:
            rng = random.Random(self.torn_seed)
            kept = self.disk.cut(lambda ino, page: rng.random() < 0.5)
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(json.dumps({"during": during, "call": self.calls, "kept_pages": kept,
                                    "by_kind": self.by_kind}) + "\n")
        os._exit(0)

    # -- files -------------------------------------------------------------------------
    @staticmethod
    def _name(path: str) -> str:
        name = path.lstrip("/")
        if "/" in name:
            raise fuse.FuseOSError(errno.EPERM)  # one flat directory
        return name

    def _node(self, path: str, fh: int | None = None) -> Node:
        if fh:
            return self.handles[fh]
        try:
            return self.disk.lookup(self._name(path))
        except DiskError as exc:
            raise fuse.FuseOSError(exc.errno) from None

    def _handle(self, node: Node) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node
        return fh

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        now = self.started
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_size": 0,
                    "st_atime": now, "st_mtime": now, "st_ctime": now}
        node = self._node(path, fh)
        return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": node.size,
                "st_ino": node.ino, "st_blocks": (node.size + 511) // 512,
                "st_atime": now, "st_mtime": now, "st_ctime": now}

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *self.disk.names]

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        self._call("create", path)
        return self._handle(self.disk.create(self._name(path)))

    def open(self, path: str, flags: int) -> int:
        return self._handle(self._node(path))

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return self.disk.read(self._node(path, fh), offset, size)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        self._call("write", path)
        return self.disk.write(self._node(path, fh), offset, data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self._call("truncate", path)
        self.disk.truncate(self._node(path, fh), length)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self._call("fsync", path)
        self.disk.fsync(self._node(path, fh))
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        self._call("fsync", path)
        if not self.lose_dir_fsyncs:
            self.disk.fsync_dir()
        return 0

    def unlink(self, path: str) -> int:
        self._call("unlink", path)
        try:
            self.disk.unlink(self._name(path))
        except DiskError as exc:
            raise fuse.FuseOSError(exc.errno) from None
        return 0

    def rename(self, old: str, new: str) -> int:
        self._call("unlink", old)
        try:
            self.disk.rename(self._name(old), self._name(new))
        except DiskError as exc:
            raise fuse.FuseOSError(exc.errno) from None
        return 0

    def release(self, path: str, fh: int) -> int:
        node = self.handles.pop(fh, None)
        if node is not None and all(n is not node for n in self.handles.values()):
            self.disk.forget(node)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close makes nothing durable

    def chmod(self, path: str, mode: int) -> int:
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        return 0

    def utimens(self, path: str, times: Any = None) -> int:
        return 0

    def access(self, path: str, amode: int) -> int:
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1 << 20, "f_bfree": 1 << 19,
                "f_bavail": 1 << 19, "f_files": 1 << 16, "f_ffree": 1 << 15, "f_namemax": 255}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.powercut.fuse_fs")
    p.add_argument("durable", type=Path)
    p.add_argument("mountpoint", type=Path)
    p.add_argument("--cut-at", type=int)
    p.add_argument("--cut-on", choices=KINDS, default="any")
    p.add_argument("--torn-seed", type=int)
    p.add_argument("--log", type=Path)
    p.add_argument("--lose-dir-fsyncs", action="store_true",
                   help="answer directory fsyncs without doing them (to show a test fails)")
    a = p.parse_args(argv)
    ops = PowerCutFs(Disk(a.durable), a.cut_at, a.cut_on, a.torn_seed, a.log,
                     lose_dir_fsyncs=a.lose_dir_fsyncs)
    fuse.FUSE(ops, str(a.mountpoint), foreground=True, nothreads=True, fsname="powercut")
    return 0


if __name__ == "__main__":
    sys.exit(main())
