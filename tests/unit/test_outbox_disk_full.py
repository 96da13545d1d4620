"""The outbox when SQLite says SQLITE_FULL, and the modes of its files.

SQLITE_FULL comes from a page limit here (``PRAGMA max_page_count`` on the
outbox's own connection): the same result code a full disk gives, without
needing one. tests/integration/test_disk_full.py runs the agent on a really
full file system.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cityedge.uplink import Reading
from edge_agent.outbox import Outbox
from edge_agent.outbox.space import StoreFailed
from edge_agent.outbox.store import DROPS_MEASUREMENT


def rd(i: int, sensor: str = "pm-1", measurement: str = "particulate") -> Reading:
    return Reading(sensor, measurement, {"i": i, "pad": "x" * 200}, 1_000 + i, "b00t", i)


def limit_pages(box: Outbox, pages: int) -> None:
    """A page limit on the outbox's connection: SQLITE_FULL past it."""
    box._db.execute(f"PRAGMA max_page_count = {pages}")


def fill_up(box: Outbox) -> int:
    """Append until the page limit is reached; returns the next reading number."""
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    limit_pages(box, pages + 2)
    i = 0
    with pytest.raises(StoreFailed):
        for i in range(10_000):
            box.append([rd(i)])
    return i


def test_a_full_database_fails_each_append_cleanly(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    n = fill_up(box)
    for i in range(n, n + 5):
        with pytest.raises(StoreFailed) as failed:  # not "cannot rollback"
            box.append([rd(i), rd(i, sensor="pm-2")])
        assert failed.value.disk_full
        assert "database or disk is full" in failed.value.cause
    assert not box._db.in_transaction
    assert box.disk_full
    # The counters are those of what is stored, not of what was tried.
    assert box.depth().readings == n == len(box.fetch_after(0, 10**9, 10**6))
    assert box.unstored == 1 + 10


def test_readings_not_stored_become_one_gap_per_sensor_once_storing_works(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    n = fill_up(box)  # reading n was not stored
    for i in range(n + 1, n + 4):
        with pytest.raises(StoreFailed):
            box.append([rd(i), rd(i, sensor="pm-2"), rd(i, measurement="sensor_health")])
    assert box.flush_gaps() == 0  # still full: the gaps wait
    limit_pages(box, 1_000_000)
    seqs = box.append([rd(n + 10)])
    assert not box.disk_full and box.unstored == 0
    assert box.flush_gaps() == 3
    records = {(r.sensor, r.fields["of_measurement"]): r
               for r in box.fetch_after(seqs[0], 10**9, 100)
               if r.measurement == DROPS_MEASUREMENT}
    assert set(records) == {("pm-1", "particulate"), ("pm-2", "particulate"),
                            ("pm-1", "sensor_health")}
    pm1 = records[("pm-1", "particulate")].fields
    assert pm1 == {"dropped": 4, "of_measurement": "particulate", "reason": "not_stored",
                   "first_time_ns": 1_000 + n, "last_time_ns": 1_000 + n + 3,
                   "first_seq": 0, "last_seq": 0}
    assert records[("pm-2", "particulate")].fields["dropped"] == 3
    assert records[("pm-1", "sensor_health")].fields["dropped"] == 3
    # One sensor's two records are two points, not one.
    assert records[("pm-1", "particulate")].time_ns != records[("pm-1", "sensor_health")].time_ns
    assert box.flush_gaps() == 0  # recorded once


def test_the_not_stored_gap_survives_a_restart_once_written(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    n = fill_up(box)
    limit_pages(box, 1_000_000)
    box.append([rd(n + 1)])  # writes the open gap with this append
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert again.flush_gaps() == 1


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outbox_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "state" / "outbox.sqlite"
    box = Outbox(db)
    box.append([rd(0)])
    for name in ("outbox.sqlite", "outbox.sqlite-wal", "outbox.sqlite-shm",
                 "outbox.sqlite-reserve"):
        assert mode(db.parent / name) == 0o600, name
    assert mode(db.parent) == 0o700
    box.close()


def test_loose_modes_are_tightened_on_open(tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite"
    box = Outbox(db)
    box.append([rd(0)])
    for name in ("outbox.sqlite", "outbox.sqlite-wal", "outbox.sqlite-shm"):
        os.chmod(tmp_path / name, 0o644)
    again = Outbox(db)  # the first is still open: its -wal and -shm stay
    for name in ("outbox.sqlite", "outbox.sqlite-wal", "outbox.sqlite-shm"):
        assert mode(tmp_path / name) == 0o600, name
    again.close()
    box.close()

def test_a_stop_before_any_append_works_again_still_records_the_gap(tmp_path: Path) -> None:
    """Space came back, but no append has shown it yet (appends wait for free space):
    the flush at shutdown writes the readings not stored as a gap all the same."""
    box = Outbox(tmp_path / "o.sqlite")
    n = fill_up(box)
    with pytest.raises(StoreFailed):
        box.append([rd(n + 1), rd(n + 1, sensor="pm-2")])
    assert box.disk_full and box.unstored == 3
    limit_pages(box, 1_000_000)  # space is back; nothing appended since
    assert box.flush_gaps(final=True) == 2  # what the agent's shutdown does
    assert box.unstored == 0
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    drops = {r.sensor: r.fields["dropped"] for r in again.fetch_after(0, 10**9, 10**6)
             if r.measurement == DROPS_MEASUREMENT}
    assert drops == {"pm-1": 2, "pm-2": 1}


def test_closing_with_readings_never_recorded_says_so(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    n = fill_up(box)
    with pytest.raises(StoreFailed):
        box.append([rd(n + 1)])
    box.close()  # no flush that found room before it
    assert "2 readings not stored and not recorded" in caplog.text
    assert "pm-1/particulate 2" in caplog.text
