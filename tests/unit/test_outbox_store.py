"""The SQLite outbox on a real file: seq identity, durability marks, reads, deletes, kill -9."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cityedge.uplink import FieldValue, Reading, SeqRanges
from cityedge.uplink.timing import BootTime
from edge_agent.outbox import Depth, Outbox
from edge_agent.timebase import Timebase

REPO = Path(__file__).resolve().parents[2]


def rd(i: int, sensor: str = "pm-1", **fields: FieldValue) -> Reading:
    return Reading(sensor, "particulate", fields or {"i": i}, 1_000 + i, "b00t", 10 + i)


def seqs_in(box: Outbox) -> list[int]:
    return [w.seq for w in box.fetch_after(0, 2**62, 10**9)]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "outbox.sqlite"  # the folder is created on open


def test_new_outbox_is_empty(path: Path) -> None:
    box = Outbox(path)
    assert path.exists()
    assert len(box.epoch) == 16
    int(box.epoch, 16)
    assert box.last_seq == 0
    assert box.durable_seq == 0
    assert box.sync() == 0
    assert box.depth() == Depth(0, 0, None)
    assert box.fetch_after(0, 100, 100) == []
    box.close()


def test_seqs_are_contiguous_from_one(path: Path) -> None:
    box = Outbox(path)
    assert box.append([rd(1), rd(2), rd(3)]) == [1, 2, 3]
    assert box.append([rd(4)]) == [4]
    assert box.append([]) == []
    assert box.append([rd(i) for i in range(5, 105)]) == list(range(5, 105))
    assert box.last_seq == 104
    assert seqs_in(box) == list(range(1, 105))
    box.close()


def test_seqs_are_never_reused_after_deleting_everything_and_reopening(path: Path) -> None:
    box = Outbox(path)
    box.append([rd(i) for i in range(10)])
    assert box.delete(SeqRanges.of(range(1, 11))) == 10
    box.close()
    box = Outbox(path)
    assert box.last_seq == 10
    assert box.depth().readings == 0
    assert box.append([rd(0)]) == [11]
    box.close()


def test_epoch_is_stable_across_reopen_and_new_for_a_new_file(tmp_path: Path) -> None:
    a = Outbox(tmp_path / "a.sqlite")
    epoch = a.epoch
    a.append([rd(1)])
    a.close()
    again = Outbox(tmp_path / "a.sqlite")
    assert again.epoch == epoch
    again.close()
    # A replaced SD card: same seqs again, but a new identity.
    b = Outbox(tmp_path / "b.sqlite")
    assert b.epoch != epoch
    assert b.append([rd(1)]) == [1]
    b.close()


def test_durable_seq_moves_only_on_sync(path: Path) -> None:
    box = Outbox(path)
    box.append([rd(1), rd(2)])
    assert box.last_seq == 2
    assert box.durable_seq == 0  # committed, not yet fsynced: must not leave the gateway
    assert box.sync() == 2
    assert box.durable_seq == 2
    box.append([rd(3)])
    assert box.durable_seq == 2
    assert box.sync() == 3
    assert box.sync() == 3  # nothing new: no checkpoint, same mark
    box.close()


def test_fsync_every_append_makes_each_append_durable(path: Path) -> None:
    box = Outbox(path, fsync_every_append=True)
    assert box.fsync_every_append
    box.append([rd(1), rd(2)])
    assert box.durable_seq == 2
    box.append([rd(3)])
    assert box.durable_seq == 3
    assert box.sync() == 3
    box.close()


def test_reopen_makes_everything_committed_durable(path: Path) -> None:
    box = Outbox(path)
    box.append([rd(1), rd(2)])
    box._db.close()  # no sync, no close(): as if the process stopped here
    box = Outbox(path)
    assert box.last_seq == box.durable_seq == 2
    assert seqs_in(box) == [1, 2]
    box.close()


def test_readings_come_back_as_stored(path: Path) -> None:
    box = Outbox(path)
    box.append(
        [
            Reading("pm-1", "particulate", {"pm2_5_ugm3": 12, "ratio": 0.5}, 1_700, "b00t", 77),
            Reading("th-1", "climate", {"ok": True, "note": '마포 "구" \\'}, 1_701, "b00t", 78),
        ]
    )
    assert box.fetch_after(0, 2, 10) == [
        Reading("pm-1", "particulate", {"pm2_5_ugm3": 12, "ratio": 0.5}, 1_700, "b00t", 77, seq=1),
        Reading("th-1", "climate", {"ok": True, "note": '마포 "구" \\'}, 1_701, "b00t", 78, seq=2),
    ]
    box.close()


@pytest.mark.parametrize(
    ("after", "upto", "limit", "expected"),
    [
        (0, 10, 100, list(range(1, 11))),
        (0, 10, 3, [1, 2, 3]),
        (3, 10, 3, [4, 5, 6]),
        (0, 4, 100, [1, 2, 3, 4]),  # upto: the durable mark
        (4, 4, 100, []),
        (9, 100, 100, [10]),
        (10, 100, 100, []),
        (0, 10, 0, []),
    ],
)
def test_fetch_after_respects_upto_and_limit(
    path: Path, after: int, upto: int, limit: int, expected: list[int]
) -> None:
    box = Outbox(path)
    box.append([rd(i) for i in range(10)])
    assert [w.seq for w in box.fetch_after(after, upto, limit)] == expected
    box.close()


def test_fetch_after_skips_deleted(path: Path) -> None:
    box = Outbox(path)
    box.append([rd(i) for i in range(10)])
    box.delete(SeqRanges.of([2, 3, 4]))
    assert [w.seq for w in box.fetch_after(0, 10, 3)] == [1, 5, 6]
    box.close()


@pytest.mark.parametrize(
    ("seqs", "limit", "expected"),
    [
        ([1, 2, 3], 10, [1, 2, 3]),
        ([1, 7, 9], 10, [1, 7, 9]),
        ([1, 5, 9], 10, [1, 9]),  # 5 was deleted
        ([1, 2, 3, 8, 9], 4, [1, 2, 3, 8]),  # the limit spans ranges
        ([1, 2, 3, 8, 9], 3, [1, 2, 3]),
        ([4, 5, 6, 7], 10, [7]),  # 4-6 were deleted
        ([11, 12], 10, []),  # never existed
        ([], 10, []),
    ],
)
def test_fetch_seqs(path: Path, seqs: list[int], limit: int, expected: list[int]) -> None:
    box = Outbox(path)
    box.append([rd(i) for i in range(10)])
    box.delete(SeqRanges.of([4, 5, 6]))
    assert [w.seq for w in box.fetch_seqs(SeqRanges.of(seqs), limit)] == expected
    box.close()


def test_delete_returns_how_many_were_still_there(path: Path) -> None:
    box = Outbox(path)
    box.append([rd(i) for i in range(10)])
    assert box.delete(SeqRanges.of([1, 2, 3])) == 3
    assert box.delete(SeqRanges.of([1, 2, 3])) == 0  # a duplicate ack
    assert box.delete(SeqRanges.of([3, 4, 9, 50])) == 2
    assert box.delete(SeqRanges()) == 0
    assert seqs_in(box) == [5, 6, 7, 8, 10]
    box.close()


def test_delete_costs_the_ranges_not_the_seqs_they_span(path: Path) -> None:
    """The window hands delete only a batch's own seqs; delete itself never walks a range."""
    box = Outbox(path)
    box.append([rd(i) for i in range(20)])
    box.fetch_after(0, 20, 10)  # 1-10 handed out: the drop policy spares them
    started = time.monotonic()
    assert box.delete(SeqRanges(((5, 2**62),))) == 16
    assert box.delete(SeqRanges(((1, 2), (2**40, 2**62)))) == 2
    assert time.monotonic() - started < 2.0  # walking 2**62 seqs would never end
    assert seqs_in(box) == [3, 4]
    box.close()


def test_depth(path: Path) -> None:
    box = Outbox(path)
    box.append([Reading("s", "m", {"v": i}, 500 + i, "b", i) for i in range(5)])
    d = box.depth()
    assert d.readings == 5
    assert d.bytes >= 5 * len('{"v":0}')
    assert d.oldest_ns == 500
    box.delete(SeqRanges.of([1]))  # the oldest reading
    after = box.depth()
    assert after.readings == 4
    assert after.oldest_ns == 501
    assert 0 < after.bytes < d.bytes
    box.delete(SeqRanges.of(range(2, 6)))
    assert box.depth() == Depth(0, 0, None)
    box.close()


def test_a_failed_append_stores_nothing_and_burns_no_seq(path: Path) -> None:
    box = Outbox(path)
    box.append([rd(1)])
    bad = Reading("s", "m", {"v": object()}, 1, "b", 1)  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        box.append([rd(2), bad])
    assert box.last_seq == 1
    assert seqs_in(box) == [1]
    assert box.append([rd(3)]) == [2]
    box.close()


def test_close_syncs(path: Path) -> None:
    box = Outbox(path)
    box.append([rd(1)])
    box.close()
    assert box.durable_seq == 1


# -- kill -9 -----------------------------------------------------------------------------

CHILD = """
import sys
from edge_agent.outbox import Outbox
from cityedge.uplink import Reading

box = Outbox(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    n = 1 + i % 3
    seqs = box.append([Reading("pm-1", "particulate", {"i": i + k}, i, "b", i) for k in range(n)])
    i += n
    print(" ".join(map(str, seqs)), flush=True)
"""


def run_and_kill(path: Path, rnd: random.Random) -> list[int]:
    """Start an appending child, SIGKILL it at a random moment, return every seq it printed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if line == "ready\n":
                ready.set()
            elif line.endswith("\n"):  # a line cut by the kill is not a promise
                lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(10), "child did not start"
        time.sleep(rnd.uniform(0.02, 0.3))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        reader.join(10)
    assert child.returncode == -signal.SIGKILL
    return [int(s) for line in lines for s in line.split()]


def test_kill_9_loses_nothing_that_was_committed(tmp_path: Path) -> None:
    seed = int(time.time())
    rnd = random.Random(seed)
    path = tmp_path / "outbox.sqlite"
    previous_max = 0
    for _ in range(4):
        printed = run_and_kill(path, rnd)
        assert printed, f"the child committed nothing before the kill (seed {seed})"
        assert printed == list(range(previous_max + 1, previous_max + 1 + len(printed)))
        box = Outbox(path)
        stored = set(seqs_in(box))
        missing = sorted(set(printed) - stored)
        assert not missing, f"committed then lost: {missing[:10]} (seed {seed})"
        # At most the transaction in progress at the kill went in without being printed.
        assert box.last_seq - max(printed) <= 3
        assert box.durable_seq == box.last_seq
        previous_max = box.last_seq
        box.close()


def test_sensor_meta_outlives_the_config_and_updates_in_place(path: Path) -> None:
    ob = Outbox(path)
    ob.save_sensor_meta({"pm-1": {"model": "pms5003", "pole": "A-12"}, "agent": {"model": "a"}})
    ob.close()
    ob = Outbox(path)
    ob.save_sensor_meta({"pm-2": {"model": "sds011"}, "agent": {"model": "b"}})
    assert ob.sensor_meta() == {"pm-1": {"model": "pms5003", "pole": "A-12"},
                                "pm-2": {"model": "sds011"}, "agent": {"model": "b"}}
    ob.close()


# -- readings held until their time is decided: Timebase.held_from() fed to the query -----


def test_first_held_is_the_first_reading_the_timebase_holds(path: Path) -> None:
    """The rule that runs: Timebase.held_from() decides from which monotonic time this
    boot's unsynchronised readings wait; Outbox.first_held finds the first of them.
    Synchronised readings and other boots' are never held."""
    s = 1_000_000_000
    box = Outbox(path)
    kinds = [("b0", True), ("old", False), ("", False), ("b0", False)]  # by i % 4
    seqs = box.append([Reading("pm-1", "particulate", {"i": i}, 1_000 + i, boot, i * s, synced)
                       for i in range(1, 601) for boot, synced in [kinds[i % 4]]])
    mono_of = {seq: i * s for seq, i in zip(seqs, range(1, 601), strict=True)}
    held = [seq for seq in seqs if mono_of[seq] // s % 4 == 3]  # b0, not synced
    t = Timebase("b0", {}, hold_max_ns=300 * s, now_mono=0)
    assert t.held_from() == 0
    assert box.first_held("b0", 0) == held[0] == seqs[3 - 1]
    t.commit("b0", t.on_tick(300 * s) or BootTime())  # past the hold limit, no anchor
    assert t.held_from() == 300 * s  # before 300 s unverified, from it still waiting
    assert box.first_held("b0", 300 * s) == seqs[303 - 1]
    assert box.first_held("b0", 300 * s) == min(q for q in held if mono_of[q] >= 300 * s)
    t.commit("b0", t.on_synced(400 * s, 10**18) or BootTime())
    assert t.held_from() is None  # anchored: the agent does not ask the outbox
    box.close()


@pytest.mark.parametrize("held_from", [0, 1, 5, 6, 7, 12, 13])
def test_first_held_returns_exactly_the_held_readings(path: Path, held_from: int) -> None:
    """Deleting the first held reading each time, the query walks exactly the readings
    of this boot, unsynchronised, taken at or after held_from, in seq order."""
    box = Outbox(path)
    spec = [("b0", False, 3), ("b0", True, 6), ("x", False, 9), ("b0", False, 6),
            ("", False, 7), ("b0", False, 12), ("b0", True, 13), ("b0", False, 7)]
    seqs = box.append([Reading("s", "m", {"i": i}, i, boot, mono, synced)
                       for i, (boot, synced, mono) in enumerate(spec)])
    expect = [q for q, (boot, synced, mono) in zip(seqs, spec, strict=True)
              if boot == "b0" and not synced and mono >= held_from]
    walked = []
    while (first := box.first_held("b0", held_from)) is not None:
        walked.append(first)
        box.delete(SeqRanges.of([first]))
    assert walked == expect
    box.close()
