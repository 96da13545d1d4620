"""A full disk across restarts, on a real full file system (a small tmpfs): a time record
the outbox could not store is never used, an agent restarted after a reboot on a full disk
starts and delivers every stored reading once, and a delete on a full disk is all or
nothing. The agent runs with the transport seam of tests/unit/test_agent_trust.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import edge_agent.clock as clockmod
from cityedge.uplink import Ack, Batch, Reading, SeqRanges
from cityedge.uplink.timing import reading_time
from edge_agent.agent import Agent
from edge_agent.config import AGENT_SENSOR
from edge_agent.outbox import Outbox
from edge_agent.outbox.space import RESERVE_BYTES
from tests.integration.test_disk_full import small_fs
from tests.unit.test_agent_trust import GW, HandOver, config, until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def fill(folder: Path, name: str) -> Path:
    """Write until ENOSPC, down to the last byte (delete the file to free the space)."""
    filler = folder / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (65536, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def rd(i: int, boot: str = "oldboot", synced: bool = True) -> Reading:
    """A reading of the gateway's own sensor: known to the agent, so it is sent, not refused."""
    return Reading(AGENT_SENSOR, "gateway_health", {"i": i, "pad": "x" * 300}, time.time_ns(),
                   boot, i, synced=synced)


def times(batch: Batch) -> dict[int, tuple[int, str]]:
    return {r.seq: reading_time(r.time_ns, r.boot, r.mono_ns, r.synced, dict(batch.boots))
            for r in batch.readings}


def test_an_anchor_that_was_not_stored_is_never_used(tmp_path: Path) -> None:
    """Held readings, then a full disk, then the collector's time answer: the anchor cannot
    be stored, so the readings stay held; the next run (same boot) anchors afresh, and
    every reading sent is timed by what was stored: a resend is the same point."""

    async def run(state: Path, full: bool) -> tuple[dict[int, tuple[int, str]], bool]:
        link = HandOver()
        agent = Agent(config(state, synced=False), state, transport=link)
        task = asyncio.create_task(agent.serve())
        fillers: list[Path] = []
        try:
            await until(lambda: agent.outbox is not None
                        and agent.anchoring.timebase is not None, "open")
            assert agent.outbox is not None and agent.anchoring.timebase is not None
            if full:
                agent._store([rd(i, agent.clock.boot, synced=False) for i in range(5)])
                await until(lambda: agent.stored == 5 and agent.outbox is not None
                            and agent.outbox.durable_seq >= 5, "held readings stored")
                fillers.append(fill(state, "filler"))
                agent._store([rd(99, agent.clock.boot, synced=False)])
                await until(lambda: agent.outbox is not None and agent.outbox.disk_full,
                            "the disk full")
                fillers.append(fill(state, "filler2"))  # the released reserve goes too
            await until(lambda: any(not b.all_seqs() for b in link.sent), "a probe")
            probe = next(b for b in link.sent if not b.all_seqs()).batch_id
            await link.acks.put(Ack(GW, agent.outbox.epoch, probe, SeqRanges(), time.time_ns()))
            if full:
                await until(lambda: agent.anchoring.save_failures > 0, "the anchor not stored")
                await asyncio.sleep(0.3)
                assert agent.anchoring.timebase.current.anchor is None
                assert not [b for b in link.sent if b.all_seqs()], "held readings went out"
                assert (await agent.health.gateway_reading()).fields["boot_time_save_failures"] > 0
                anchoring = agent.anchoring
                return {}, anchoring.probes != {} or anchoring.timebase.current.anchor is None
            await until(lambda: any(b.all_seqs() for b in link.sent), "readings sent")
            stored = (await agent.io_call(agent.outbox.boot_times))[agent.clock.boot]
            assert stored == agent.anchoring.timebase.current and stored.anchor is not None
            return times(next(b for b in link.sent if b.all_seqs())), True
        finally:
            agent.should_exit.set()
            await asyncio.wait_for(task, 10)
            for f in fillers:
                f.unlink()

    with small_fs(tmp_path / "state") as state:
        _, still_asking = asyncio.run(run(state, full=True))
        assert still_asking
        sent, _ = asyncio.run(run(state, full=False))
        assert len(sent) == 5 and all(how == "corrected" for _, how in sent.values())


FIRST_RUN = """
import os, sys, time
from pathlib import Path
from edge_agent.outbox import Outbox
from edge_agent.outbox.space import OPEN_RESERVE_BYTES, StoreFailed
from tests.integration.test_disk_full_restart import fill, rd
state = Path(sys.argv[1])
box = Outbox(state / "outbox.sqlite")
for i in range(200):
    box.append([rd(i, synced=False)])
box.sync()
fill(state, "filler")
try:
    for i in range(200, 100_000):
        box.append([rd(i, synced=False)])
except StoreFailed:
    pass
assert box.disk_full and box.reserve.bytes == OPEN_RESERVE_BYTES
print(box.last_seq)
if sys.argv[2] == "clean":
    box.close()  # its -wal and -shm go: the next open must recreate them
    fill(state, "filler2")  # what the clean stop freed is taken too
    sys.exit(0)
fill(state, "filler2")
os._exit(0)  # a power cut: the -wal and -shm stay
"""


@pytest.mark.parametrize("stop", ["clean", "power_cut"])
def test_restart_after_a_reboot_on_a_full_disk_delivers_every_stored_reading_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str) -> None:
    """Fill the disk under the outbox (the reserve is released down to the part kept for
    opening), stop, let the disk fill again, reboot: the agent starts (the old boot's
    settle record kept to save later if it cannot be saved), counts what it cannot
    store, and once space is freed stores again, saves the record and delivers every
    stored reading exactly once."""
    with small_fs(tmp_path / "state") as state:
        first = subprocess.run([sys.executable, "-c", FIRST_RUN, str(state), stop],
                               capture_output=True, text=True, cwd=ROOT, timeout=60,
                               check=False)
        assert first.returncode == 0, first.stderr
        stored = int(first.stdout)
        f1, f2 = state / "filler", state / "filler2"
        assert (state / "outbox.sqlite-shm").exists() == (stop == "power_cut")
        monkeypatch.setattr(clockmod, "boot_id", lambda: "newboot000000001")

        async def main() -> set[int]:
            link = HandOver()
            agent = Agent(config(state, synced=True), state, transport=link)
            task = asyncio.create_task(agent.serve())
            acked: list[int] = []

            async def ack_all() -> None:
                done = 0
                while True:
                    for b in link.sent[done:]:
                        assert not b.rejected, b.rejected
                        acked.extend(r.seq for r in b.readings)
                        await link.acks.put(Ack(GW, agent.outbox.epoch, b.batch_id,
                                                b.all_seqs(), time.time_ns()))
                    done = len(link.sent)
                    await asyncio.sleep(0.02)

            acker = asyncio.create_task(ack_all())
            try:
                await until(lambda: agent.window is not None
                            and agent.anchoring.timebase is not None
                            and agent.outbox is not None, "started")
                assert agent.outbox is not None and agent.outbox.disk_full
                if stop == "power_cut":  # the kept reserve is not for this
                    assert agent.anchoring.boots_to_save, "the old record saved on a full disk?"
                agent._store([rd(i, agent.clock.boot) for i in range(3)])
                await until(lambda: sum(agent.store_failures.values()) == 3, "not stored")
                assert not task.done()
                f2.unlink()
                f1.unlink()
                await until(lambda: not agent.anchoring.boots_to_save, "the settle record saved")
                agent._store([rd(i, agent.clock.boot) for i in range(3, 6)])
                await until(lambda: agent.stored == 3, "storing again")
                await until(lambda: agent.outbox is not None and agent.outbox.count == 0
                            and agent.acked == stored + 3, "everything delivered")
                assert not task.done()
                assert agent.outbox.disk_full is False and agent.outbox.reserve.held
                boots = await agent.io_call(agent.outbox.boot_times)
                assert "oldboot" in boots and boots["oldboot"].anchor is None
            finally:
                acker.cancel()
                agent.should_exit.set()
                await asyncio.wait_for(task, 10)
            assert len(acked) == len(set(acked)), "a stored reading went out twice"
            return set(acked)

        assert asyncio.run(main()) == set(range(1, stored + 4))


@pytest.mark.parametrize("reserve", [0, RESERVE_BYTES])
def test_a_delete_on_a_full_disk_is_all_or_nothing(tmp_path: Path, reserve: int) -> None:
    """With the reserve the delete uses it; without, it fails whole: rolled back, its seqs
    still handed out (the drop policy spares them), and it works once space is freed."""
    with small_fs(tmp_path / "state") as state:
        box = Outbox(state / "o.sqlite", reserve_bytes=reserve)
        for i in range(600):
            box.append([rd(i)])
            if i % 50 == 0:
                box.sync()
        box.sync()
        assert len(box.fetch_after(0, 10**9, 500)) == 500
        filler = fill(state, "filler")
        acked = SeqRanges(((1, 500),))
        if reserve:
            assert box.delete(acked) == 500
            assert box.disk_full and not box.reserve.held
        else:
            with pytest.raises(Exception):  # noqa: B017 - sqlite3 or OS error, either way
                box.delete(acked)
            assert not box._db.in_transaction
            assert len(box.handed_out.this_run) == 500 and box.count == 600
            filler.unlink()
            assert box.delete(acked) == 500
        assert not box.handed_out.this_run and box.count == 100
        box.close()
