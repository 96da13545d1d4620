"""A disk that keeps only what was fsynced: the model behind the power-cut filesystem.

What an application wrote lives in a page cache of this model's own (memory) until
the application asks for it to be made durable; a power cut is the loss of that
memory. The durable part is a folder on a real filesystem: one data file per inode
and a ``meta.json`` with the directory entries and each file's durable size.

The rules follow what a journaling filesystem without ``auto_da_alloc`` may do:
- file contents and size reach the durable part on ``fsync``/``fdatasync`` of
  that file, and on nothing else (not on close, not on rename);
- directory entries (create, unlink, rename) reach it when the directory is
  fsynced, and only then;
- ``cut(keep)`` may persist any subset of the unsynced pages first, in 4 KiB
  pages, to model a disk that wrote some of its queue before the power went
  (torn writes at page granularity; the file grows to cover a page it keeps).

One flat directory is enough for the outbox (SQLite's database, WAL and shared
memory files). The model is sans-IO but for the durable folder it owns; the
FUSE adapter (fuse_fs.py) only translates calls.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PAGE = 4096


class DiskError(OSError):
    """An errno for the filesystem call that caused it."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(code, f"{os.strerror(code)}: {what}")


@dataclass
class Node:
    """One file. ``dirty`` holds whole pages written since the last fsync; durable bytes
    at or past ``clean_upto`` read as zeros (a truncate since the last fsync cut them)."""

    ino: int
    size: int
    durable_size: int
    clean_upto: int
    dirty: dict[int, bytes] = field(default_factory=dict)


@dataclass
class Counts:
    """What the application asked of the disk since the mount (the test reports them)."""

    writes: int = 0
    bytes_written: int = 0
    fsyncs: int = 0
    dir_fsyncs: int = 0
    truncates: int = 0


class Disk:
    def __init__(self, durable: Path) -> None:
        self.durable = durable
        (durable / "data").mkdir(parents=True, exist_ok=True)
        meta = self._load_meta()
        self.names: dict[str, int] = dict(meta["names"])
        self.durable_names: dict[str, int] = dict(meta["names"])
        self.durable_sizes: dict[int, int] = {int(k): v for k, v in meta["sizes"].items()}
        self.next_ino: int = meta["next_ino"]
        self.nodes: dict[int, Node] = {}
        for ino in set(self.names.values()):
            size = self._data_size(ino)
            self.nodes[ino] = Node(ino, size, size, size)
        self._collect_garbage()
        self.counts = Counts()

    # -- durable part --------------------------------------------------------------
    def _load_meta(self) -> dict[str, object]:
        try:
            doc: dict[str, object] = json.loads((self.durable / "meta.json").read_text())
            return doc
        except FileNotFoundError:
            return {"names": {}, "sizes": {}, "next_ino": 1}

    def _save_meta(self) -> None:
        tmp = self.durable / "meta.json.new"
        tmp.write_text(json.dumps({"names": self.durable_names,
                                   "sizes": {str(k): v for k, v in self.durable_sizes.items()},
                                   "next_ino": self.next_ino}))
        tmp.replace(self.durable / "meta.json")

    def _data(self, ino: int) -> Path:
        return self.durable / "data" / str(ino)

    def _data_size(self, ino: int) -> int:
        """The durable size: what meta.json says, never more than the data file holds."""
        try:
            on_disk = self._data(ino).stat().st_size
        except FileNotFoundError:
            return 0
        return min(self.durable_sizes.get(ino, on_disk), on_disk)

    def _collect_garbage(self) -> None:
        """Data of files no durable entry names (created, never reached the directory)."""
        for path in (self.durable / "data").iterdir():
            if int(path.name) not in set(self.durable_names.values()):
                path.unlink()
                self.durable_sizes.pop(int(path.name), None)

    def _durable_page(self, node: Node, page: int) -> bytes:
        start = page * PAGE
        if start >= min(node.durable_size, node.clean_upto):
            return bytes(PAGE)
        with self._data(node.ino).open("rb") as f:
            f.seek(start)
            data = f.read(min(PAGE, min(node.durable_size, node.clean_upto) - start))
        return data.ljust(PAGE, b"\0")

    def _persist_pages(self, node: Node, pages: dict[int, bytes], size: int) -> None:
        path = self._data(node.ino)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if node.clean_upto < node.durable_size:
                os.ftruncate(fd, node.clean_upto)
            for page, data in sorted(pages.items()):
                os.pwrite(fd, data, page * PAGE)
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        node.durable_size = size
        self.durable_sizes[node.ino] = size

    # -- the calls a filesystem gets ---------------------------------------------------
    def lookup(self, name: str) -> Node:
        ino = self.names.get(name)
        if ino is None:
            raise DiskError(errno.ENOENT, name)
        return self.nodes[ino]

    def create(self, name: str) -> Node:
        if name in self.names:
            return self.nodes[self.names[name]]
        node = Node(self.next_ino, 0, 0, 0)
        self.next_ino += 1
        self.nodes[node.ino] = node
        self.names[name] = node.ino
        return node

    def read(self, node: Node, offset: int, size: int) -> bytes:
        end = min(offset + size, node.size)
        out = bytearray()
        pos = offset
        while pos < end:
            page, within = divmod(pos, PAGE)
            data = node.dirty.get(page)
            if data is None:
                data = self._durable_page(node, page)
            take = min(PAGE - within, end - pos)
            out += data[within:within + take]
            pos += take
        return bytes(out)

    def write(self, node: Node, offset: int, data: bytes) -> int:
        self.counts.writes += 1
        self.counts.bytes_written += len(data)
        pos = 0
        while pos < len(data):
            page, within = divmod(offset + pos, PAGE)
            current = node.dirty.get(page)
            if current is None:
                current = self._durable_page(node, page) if page * PAGE < node.size else bytes(
                    PAGE)
            take = min(PAGE - within, len(data) - pos)
            node.dirty[page] = current[:within] + data[pos:pos + take] + current[within + take:]
            pos += take
        node.size = max(node.size, offset + len(data))
        return len(data)

    def truncate(self, node: Node, length: int) -> None:
        self.counts.truncates += 1
        if length < node.size:
            last = length // PAGE
            for page in [p for p in node.dirty if p > last]:
                del node.dirty[page]
            if length % PAGE:
                current = node.dirty.get(last)
                if current is None:
                    current = self._durable_page(node, last)
                keep = length % PAGE
                node.dirty[last] = current[:keep] + bytes(PAGE - keep)
            elif last in node.dirty:
                del node.dirty[last]
            node.clean_upto = min(node.clean_upto, length)
        node.size = length

    def fsync(self, node: Node) -> None:
        """The file's pages and size are durable (its directory entry is not)."""
        self.counts.fsyncs += 1
        self._persist_pages(node, node.dirty, node.size)
        node.dirty = {}
        node.clean_upto = node.size
        self._save_meta()

    def unlink(self, name: str) -> None:
        if self.names.pop(name, None) is None:
            raise DiskError(errno.ENOENT, name)

    def rename(self, old: str, new: str) -> None:
        ino = self.names.pop(old, None)
        if ino is None:
            raise DiskError(errno.ENOENT, old)
        self.names[new] = ino

    def fsync_dir(self) -> None:
        """The directory entries as they are now are durable."""
        self.counts.dir_fsyncs += 1
        self.durable_names = dict(self.names)
        self._save_meta()

    def forget(self, node: Node) -> None:
        """The last handle of an unlinked file closed: its pages go."""
        if node.ino not in self.names.values() and node.ino not in self.durable_names.values():
            self.nodes.pop(node.ino, None)

    def cut(self, keep: Callable[[int, int], bool] | None = None) -> int:
        """The power goes. ``keep(ino, page)`` picks unsynced pages the disk still wrote
        (files with a durable entry only); returns how many it kept. Nothing else in
        memory survives: the next ``Disk`` on the same folder is the machine rebooted."""
        kept = 0
        if keep is not None:
            durable_inos = set(self.durable_names.values())
            for node in self.nodes.values():
                if node.ino not in durable_inos:
                    continue
                pages = {p: d for p, d in node.dirty.items() if keep(node.ino, p)}
                if not pages:
                    continue
                top = max(pages) * PAGE + PAGE
                size = max(node.durable_size if node.clean_upto >= node.durable_size
                           else node.clean_upto, min(top, node.size))
                self._persist_pages(node, pages, size)
                kept += len(pages)
            self._save_meta()
        self.nodes = {}
        self.names = {}
        return kept
