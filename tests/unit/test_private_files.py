"""State files are 0600 and the folders made for them 0700, also when found looser."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from cityedge.atomic import STALE_TEMP_S, atomic_write
from collector.alerts.store import StateStore
from edge_agent.display_file import read_display_file, write_display_file
from tests.alerts_helpers import load_state


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_makes_a_private_file_in_a_private_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state.json"
    atomic_write(path, b"{}")
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    os.chmod(path, 0o644)
    atomic_write(path, b"{}")  # the rename puts a fresh 0600 file in its place
    assert mode(path) == 0o600


def test_the_display_file_is_private_and_tightened_on_read(tmp_path: Path) -> None:
    path = tmp_path / "var" / "display.json"
    write_display_file(path, {"showing": []})
    assert mode(path) == 0o600
    os.chmod(path, 0o664)
    assert read_display_file(path) == {"showing": []}
    assert mode(path) == 0o600


def test_alert_state_files_are_private_and_tightened_on_load(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "alerts")
    store.save({"version": 1, "now": 0, "groups": [], "members": [], "silences": [],
                "directory": {}}, '{"windows":{}}')
    for path in (store.alerts_path, store.stats_path):
        assert mode(path) == 0o600
        os.chmod(path, 0o644)
    alerts, stats = load_state(store)
    assert alerts is not None and stats == {"windows": {}}
    for path in (store.alerts_path, store.stats_path):
        assert mode(path) == 0o600
    assert mode(store.dir) == 0o700


def test_a_write_removes_what_a_power_cut_left_behind(tmp_path: Path) -> None:
    """A cut between mkstemp and the rename leaves a temporary file; the next write of the
    same file removes it once it is stale, and leaves a young one (a writer at work) and
    other files' temporaries alone."""
    target = tmp_path / "alerts.json"
    stale = tmp_path / ".alerts.json.abc123.tmp"
    young = tmp_path / ".alerts.json.def456.tmp"
    other = tmp_path / ".display.json.abc123.tmp"
    for f in (stale, young, other):
        f.write_bytes(b"half")
    old = time.time() - STALE_TEMP_S - 5
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert not stale.exists()
    assert young.exists() and other.exists()
