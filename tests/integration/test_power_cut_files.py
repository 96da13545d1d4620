"""Files replaced whole (cityedge/atomic.py: temp file, fsync, rename, directory fsync)
under power cuts: the agent's display file and the collector's alert state each hold the
old version or the new one after every cut, never half of one, and never a version older
than the last write that returned; the alert lease file can be taken again.
The collector's dead letters are not files (they go to InfluxDB)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from collector.alerts.store import AtomicJSONStorage
from edge_agent.display_file import read_display_file
from tests.powercut.mount import PowerCutMount, need_fuse

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CUTS = 30
CUT_ON = {"write": 200, "fsync": 20, "unlink": 10, "any": 300}


def test_whole_file_writes_hold_the_old_or_the_new_version(tmp_path: Path) -> None:
    need_fuse()
    rng = random.Random()
    disk = PowerCutMount(tmp_path / "durable", tmp_path / "mnt", tmp_path / "cuts.jsonl")
    journal = tmp_path / "journal.jsonl"
    ended = {"display": 0, "alerts": 0}
    begun = dict(ended)
    seen, first = 0, 1
    try:
        for i in range(CUTS):
            record = disk.boot_and_cut(
                rng, CUT_ON, "tests.powercut.files_driver", str(disk.mountpoint), str(journal),
                "--first", str(first), "--seed", str(rng.randrange(1 << 30)), run_s=(0.5, 2.0))
            for line in journal.read_text().splitlines()[seen:]:
                e = json.loads(line)
                seen += 1
                (begun if e["event"] == "begin" else ended)[e["file"]] = e["k"]
                first = max(first, e["k"] + 1)
            disk.mount()
            why_cut = f"cut {i} during {record.get('during')} (torn={record['torn']})"
            try:
                display = read_display_file(disk.mountpoint / "display.json")
                state = AtomicJSONStorage(disk.mountpoint / "alerts.json").read()
            finally:
                disk.unmount()
            for name, doc in (("display", display), ("alerts", state)):
                if doc is None:
                    assert ended[name] == 0, (why_cut, name, "a written file vanished")
                    continue
                k = doc["k"] if name == "display" else doc["meta"]["1"]["k"]
                assert ended[name] <= k <= begun[name], (why_cut, name, k, ended, begun)
        assert ended["display"] > 0 and ended["alerts"] > 0, "no write completed"
    finally:
        disk.unmount()
