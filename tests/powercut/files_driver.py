"""Writes the files the agent and the collector replace whole (cityedge/atomic.py), again
and again, journaling each write outside the power-cut disk.

    python -m tests.powercut.files_driver FOLDER JOURNAL --first K --seed S

The display file through the agent's writer, the alert state through the TinyDB storage
the alert store uses, and the alert lease file taken as the collector takes it. Version
``k`` of a file carries ``k``; its size varies so that a torn write would show.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from collector.alerts.lease import FileLease
from collector.alerts.store import AtomicJSONStorage
from edge_agent.display_file import write_display_file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("folder", type=Path)
    p.add_argument("journal", type=Path)
    p.add_argument("--first", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    fd = os.open(a.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def journal(**entry: object) -> None:
        os.write(fd, (json.dumps(entry) + "\n").encode())

    lease = FileLease(a.folder / "alerts.lease", "power-cut test")
    if not lease.try_acquire():
        raise SystemExit("the lease file is held after a reboot")
    state = AtomicJSONStorage(a.folder / "alerts.json")
    k = a.first
    while True:
        pad = "x" * rng.randrange(10, 20000)
        for name in ("display", "alerts"):
            journal(file=name, event="begin", k=k)
            if name == "display":
                write_display_file(a.folder / "display.json",
                                   {"showing": [{"k": k, "pad": pad}], "k": k})
            else:
                state.write({"meta": {"1": {"k": k, "pad": pad}}})
            journal(file=name, event="end", k=k)
        k += 1


if __name__ == "__main__":
    sys.exit(main())
