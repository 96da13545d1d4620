"""The power-cut disk model (tests/powercut/disk.py): what survives a cut is exactly what
was fsynced, and until the cut the disk reads back what was written."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.powercut.disk import PAGE, Disk, DiskError


def reboot(disk: Disk, keep: object = None) -> Disk:
    disk.cut(keep)  # type: ignore[arg-type]
    return Disk(disk.durable)


def test_only_fsynced_data_survives(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    f = disk.create("db")
    disk.fsync_dir()
    disk.write(f, 0, b"a" * 100)
    disk.fsync(f)
    disk.write(f, 100, b"b" * 100)
    disk.write(f, 0, b"c")
    assert disk.read(f, 0, 3) == b"caa"
    after = reboot(disk)
    g = after.lookup("db")
    assert g.size == 100
    assert after.read(g, 0, 200) == b"a" * 100


def test_a_new_file_needs_its_directory_fsynced(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    f = disk.create("wal")
    disk.write(f, 0, b"x" * 10)
    disk.fsync(f)
    after = reboot(disk)
    with pytest.raises(DiskError):
        after.lookup("wal")
    assert list((tmp_path / "data").iterdir()) == []  # its data went with it


def test_unlink_and_rename_come_back_until_the_directory_is_fsynced(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    disk.fsync(disk.create("a"))
    disk.fsync(disk.create("b"))
    disk.fsync_dir()
    disk.unlink("a")
    disk.rename("b", "c")
    after = reboot(disk)
    assert set(after.names) == {"a", "b"}
    after.unlink("a")
    after.rename("b", "c")
    after.fsync_dir()
    assert set(reboot(after).names) == {"c"}


def test_a_truncate_is_undone_by_a_cut_and_kept_by_fsync(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    f = disk.create("wal")
    disk.fsync_dir()
    disk.write(f, 0, b"1" * (3 * PAGE))
    disk.fsync(f)
    disk.truncate(f, 0)
    disk.write(f, 2 * PAGE, b"2")
    assert disk.read(f, 0, 3 * PAGE + 1) == bytes(2 * PAGE) + b"2"  # not the old ones
    after = reboot(disk)
    g = after.lookup("wal")
    assert after.read(g, 0, 4 * PAGE) == b"1" * (3 * PAGE)
    after.truncate(g, 10)
    after.fsync(g)
    assert reboot(after).lookup("wal").size == 10


def test_a_torn_cut_keeps_exactly_the_pages_chosen(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    f = disk.create("wal")
    disk.fsync_dir()
    disk.write(f, 0, b"a" * (4 * PAGE))
    disk.fsync(f)
    disk.write(f, 0, b"b" * (6 * PAGE))
    after = reboot(disk, lambda ino, page: page in (1, 4))
    g = after.lookup("wal")
    assert g.size == 5 * PAGE
    data = after.read(g, 0, 6 * PAGE)
    assert [data[p * PAGE:p * PAGE + 1] for p in range(5)] == [b"a", b"b", b"a", b"a", b"b"]


ops = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 5 * PAGE), st.binary(min_size=1, max_size=PAGE)),
    st.tuples(st.just("truncate"), st.integers(0, 5 * PAGE), st.just(b"")),
    st.tuples(st.just("fsync"), st.just(0), st.just(b"")),
), max_size=30)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_reads_follow_writes_and_a_cut_returns_the_last_fsync(tmp_path_factory: pytest.
                                                              TempPathFactory,
                                                              script: list[tuple[str, int, bytes]]
                                                              ) -> None:
    """Against a plain bytearray: the live view is the bytes written, the rebooted one the
    bytes as of the last fsync."""
    disk = Disk(tmp_path_factory.mktemp("disk"))
    f = disk.create("f")
    disk.fsync_dir()
    live, synced = bytearray(), bytearray()
    for op, at, data in script:
        if op == "write":
            if at > len(live):
                live += bytes(at - len(live))
            live[at:at + len(data)] = data
            disk.write(f, at, data)
        elif op == "truncate":
            live = live[:at] + bytes(max(0, at - len(live)))
            disk.truncate(f, at)
        else:
            disk.fsync(f)
            synced = bytearray(live)
        assert f.size == len(live)
        assert disk.read(f, 0, len(live) + 10) == bytes(live)
    after = reboot(disk)
    g = after.lookup("f")
    assert after.read(g, 0, len(synced) + 10) == bytes(synced)
