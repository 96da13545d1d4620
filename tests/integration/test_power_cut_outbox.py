"""The outbox alone under power cuts aimed at its steps: inside large appends, inside the
drop policy, inside deletes after a hand-out, inside checkpoints (tests/powercut/).

A driver process (tests/powercut/outbox_driver.py) works the real Outbox on the
power-cut filesystem and journals each step outside it; the filesystem cuts the power
at a random call. After every cut the test reboots the disk, opens the outbox as the
agent would (no repair) and checks it against the journal:
- every reading at or below the last durable mark the outbox reported is there with
  the reading it was stored with, unless a delete of it completed or the drop policy
  took it (then a gap recorded in the outbox covers its seq);
- no seq holds another reading than the one stored under it: below the durable mark
  (readings that may have left the gateway) and above it (what the cut kept);
- the next seq is above the durable mark, so a seq that may be in InfluxDB is never
  given to another reading.
Both settings the docs offer run: commit_window > 0 (synchronous=NORMAL plus a
checkpoint per window) and commit_window 0 (synchronous=FULL).
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edge_agent.outbox import Outbox
from edge_agent.outbox.bookkeeping import Gap
from tests.powercut.mount import PowerCutMount, need_fuse

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STEPS = ("append", "append_large", "sync", "delete", "drop")
CUT_ON = {"write": 600, "fsync": 30, "truncate": 12, "any": 900}
# A small append under synchronous=NORMAL only writes to the WAL: a cut counted in fsyncs
# or truncates can never land in one, so boots that focus on small appends count writes.
FOCUS_CUT_ON = {"append": {"write": 600, "any": 900}}


@dataclass
class Ledger:
    """What the journal says was made durable, stored, deleted."""

    durable: int = 0
    stored: dict[int, int] = field(default_factory=dict)  # seq -> n
    deleted: set[int] = field(default_factory=set)
    next_n: int = 1
    after: int = 0
    during: dict[str, int] = field(default_factory=dict)

    def read(self, lines: list[dict[str, Any]]) -> list[int]:
        """Apply one run's journal; returns the ns of the step the cut interrupted."""
        begun: dict[str, Any] | None = None
        for e in lines:
            if e["event"] == "begin":
                begun = e
                self.next_n = max(self.next_n, max(e.get("ns", [0])) + 1)
                continue
            begun = None
            if "seqs" in e and "ns" in e:
                self.stored.update(zip(e["seqs"], e["ns"], strict=True))
            if e["step"] == "delete":
                self.deleted.update(e["seqs"])
                self.after = max(self.after, *e["seqs"])
            if "durable" in e:
                self.durable = max(self.durable, e["durable"])
        step = "between steps" if begun is None else str(begun["step"])
        self.during[step] = self.during.get(step, 0) + 1
        return list(begun.get("ns", [])) if begun else []


def gap_ranges(path: Path) -> list[tuple[int, int]]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT key, value FROM meta WHERE key LIKE 'gap:%'").fetchall()
    finally:
        db.close()
    return [(g.first_seq, g.last_seq) for g in (Gap.from_meta(k, json.loads(v))[1]
                                                 for k, v in rows)]


def check_after_cut(path: Path, ledger: Ledger, cut_ns: list[int], why: str) -> None:
    outbox = Outbox(path)  # opens without repair, as the agent's next boot does
    try:
        assert outbox.last_seq >= ledger.durable, (why, outbox.last_seq, ledger.durable)
        present = {seq: json.loads(str(fields))["n"] for seq, fields in outbox._db.execute(
            "SELECT seq, fields FROM readings WHERE measurement = 'particulate'")}
        assert outbox._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        durable_after_open = outbox.durable_seq
    finally:
        outbox.close()
    for seq, n in present.items():
        if seq in ledger.stored:
            assert ledger.stored[seq] == n, (why, "seq holds another reading", seq, n)
        else:
            assert seq > ledger.durable and n in cut_ns, (why, "a reading never stored", seq, n)
    gaps = gap_ranges(path)
    for seq, n in ledger.stored.items():
        if seq > ledger.durable or seq in ledger.deleted or seq in present:
            continue
        assert any(lo <= seq <= hi for lo, hi in gaps), (why, "durable reading lost", seq, n)
    # Everything present is durable now (opening checkpoints); seqs of readings the cut
    # took may be given again, as none of them left.
    ledger.stored = {s: n for s, n in ledger.stored.items() if s <= ledger.durable}
    ledger.stored.update(present)
    ledger.durable = max(ledger.durable, durable_after_open)


def run_cuts(tmp: Path, mode: str, cuts: int, rng: random.Random, *,
             early_mark: bool = False, lose_dir_fsyncs: bool = False) -> Ledger:
    """Boot the driver, let the disk cut it, check the reboot; ``cuts`` times."""
    disk = PowerCutMount(tmp / "durable", tmp / "mnt", tmp / "cuts.jsonl",
                         lose_dir_fsyncs=lose_dir_fsyncs)
    journal = tmp / "journal.jsonl"
    path = disk.mountpoint / "outbox.sqlite"
    ledger = Ledger()
    seen = 0
    i = 0
    try:
        while True:
            # Boots take turns at each step. A cut lands where the disk's call count
            # says, so a step can go without one by chance: past ``cuts``, boots focus
            # on the steps still without a cut (at most ``cuts`` more) before giving up.
            missing = [s for s in STEPS if not ledger.during.get(s)] if cuts >= 50 else []
            if i >= cuts and (not missing or i >= 2 * cuts):
                break
            focus = STEPS[i % len(STEPS)] if i < cuts else missing[0]
            record = disk.boot_and_cut(
                rng, FOCUS_CUT_ON.get(focus, CUT_ON), "tests.powercut.outbox_driver",
                str(path), str(journal), "--mode", mode, "--first-n", str(ledger.next_n),
                "--after", str(ledger.after), "--seed", str(rng.randrange(1 << 30)),
                "--focus", focus,
                *(["--early-mark"] if early_mark else []))
            lines = [json.loads(x) for x in journal.read_text().splitlines()[seen:]]
            seen += len(lines)
            cut_ns = ledger.read(lines)
            disk.mount()
            try:
                check_after_cut(path, ledger, cut_ns,
                                f"cut {i} during {record.get('during')} (torn={record['torn']})")
            finally:
                disk.unmount()
            i += 1
    finally:
        disk.unmount()
    return ledger


@pytest.mark.parametrize("mode", ["normal", "full"])
def test_cuts_inside_appends_drops_deletes_and_checkpoints(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    need_fuse()
    cuts = request.config.getoption("--outbox-power-cuts")
    seed = request.config.getoption("--power-cut-seed") or random.randrange(1 << 30)
    print(f"power-cut seed {seed}, {cuts} cuts, mode {mode}")
    ledger = run_cuts(tmp_path, mode, cuts, random.Random(seed))
    print(f"{mode}: cuts by step {ledger.during}; {len(ledger.stored)} readings stored"
          f" durably, {len(ledger.deleted)} deleted")
    if cuts >= 50:
        for step in ("append", "append_large", "drop", "sync", "delete"):
            assert ledger.during.get(step), (step, ledger.during)


@pytest.mark.parametrize("broken", ["durable mark before the checkpoint",
                                    "a disk that loses directory fsyncs"])
def test_the_checks_fail_on_a_broken_outbox_or_disk(tmp_path: Path, broken: str) -> None:
    """The checks above can fail: a durable mark raised before the checkpoint, and names
    that never become durable (an outbox created without its folder fsynced), are caught
    within a few cuts."""
    need_fuse()
    with pytest.raises(AssertionError, match=r"cut \d+ during"):  # a check, not the driver
        run_cuts(tmp_path, "normal", 12, random.Random(7),
                 early_mark=broken.startswith("durable"),
                 lose_dir_fsyncs=broken.startswith("a disk"))
