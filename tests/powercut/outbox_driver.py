"""Drives the real Outbox as the agent does, and journals every step to a file outside the
power-cut disk, so that after a cut the test knows what was done and what was only begun.

    python -m tests.powercut.outbox_driver OUTBOX JOURNAL --mode normal|full --first-n N
        --after SEQ --seed S [--focus STEP]

Each reading's fields carry ``n``, a number the journal ties to the reading. Steps, in
random order until the power goes: small appends (one frame), large appends (300
readings in one transaction), appends that push the outbox over its bound (the drop
policy runs inside them), syncs (the checkpoint that raises the durable mark), and
hand-outs followed by a delete, as after an ack. A journal line ``begin`` is written
before a step and ``end`` after it returned; a step with no ``end`` was cut.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from cityedge.uplink import Reading, SeqRanges
from edge_agent.outbox import Outbox
from edge_agent.outbox.store import DropPolicy

MAX_BYTES = 256 * 1024
STEPS = ("append", "append_large", "sync", "delete")
ROW_BYTES = 200  # at least what one reading() takes in the outbox's count (fields + overhead)
SENSOR = "pm-1"


class Journal:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, **entry: object) -> None:
        os.write(self.fd, (json.dumps(entry) + "\n").encode())


def reading(n: int) -> Reading:
    return Reading(SENSOR, "particulate", {"n": n, "pad": "p" * 150}, 1_700_000_000_000_000_000
                   + n, "boot", n)


def sync_without_checkpoint(self: Outbox) -> int:
    """The bug the checks must catch: the durable mark rises, nothing was fsynced."""
    mark = self.mark.due()
    if mark is not None:
        self.mark.checkpointed(mark)
    return self.durable_seq


def choose_step(rng: random.Random, focus: str | None, outbox: Outbox,
                after: int) -> tuple[str, int]:
    """The next step, weighted towards ``focus``, and the readings it appends."""
    if focus == "drop":  # every append crosses the bound: the drop policy runs in it
        step = rng.choices(["drop", "sync"], [8, 1])[0]
    else:
        weights = [5 * w if s == focus else w for s, w in zip(STEPS, (6, 1, 2, 2),
                                                              strict=True)]
        step = rng.choices(STEPS, weights)[0]
    count = 1 if step == "append" else 300
    crosses = outbox.bytes + count * ROW_BYTES > MAX_BYTES
    if step == "drop" and not crosses:
        step = "append_large"  # still filling
    elif step == "append" and crosses and focus == "append":
        # Small appends are the focus: acks make room, as on a gateway whose uplink
        # keeps up, so that the outbox does not stay full (every small append would
        # then be a drop).
        step = "sync" if outbox.durable_seq <= after else "delete"
    elif step == "append" and crosses:
        step = "drop"
    return step, count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("outbox", type=Path)
    p.add_argument("journal", type=Path)
    p.add_argument("--mode", choices=("normal", "full"), required=True)
    p.add_argument("--first-n", type=int, required=True)
    p.add_argument("--after", type=int, default=0)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--early-mark", action="store_true",
                   help="a broken outbox: the durable mark rises before the checkpoint")
    p.add_argument("--focus", choices=(*STEPS, "drop"),
                   help="the step done five times as often; drop: fill the outbox, then append")
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    journal = Journal(a.journal)
    if a.early_mark:
        Outbox.sync = sync_without_checkpoint  # type: ignore[method-assign]
    journal.write(step="open", event="begin")
    outbox = Outbox(a.outbox, fsync_every_append=a.mode == "full", max_bytes=MAX_BYTES,
                    drop_policy=DropPolicy("oldest"))
    journal.write(step="open", event="end", durable=outbox.durable_seq)
    n, after = a.first_n, a.after
    while True:
        step, count = choose_step(rng, a.focus, outbox, after)
        if step in ("append", "append_large", "drop"):
            ns = list(range(n, n + count))
            n += count
            journal.write(step=step, event="begin", ns=ns)
            seqs = outbox.append([reading(i) for i in ns])
            journal.write(step=step, event="end", seqs=seqs, ns=ns, durable=outbox.durable_seq)
        elif step == "sync":
            journal.write(step=step, event="begin")
            journal.write(step=step, event="end", durable=outbox.sync())
        else:
            rows = outbox.fetch_after(after, outbox.durable_seq, 50)
            if not rows:
                continue
            seqs = [r.seq for r in rows]
            after = seqs[-1]
            journal.write(step=step, event="begin", seqs=seqs)
            outbox.delete(SeqRanges.of(seqs))
            journal.write(step=step, event="end", seqs=seqs)


if __name__ == "__main__":
    sys.exit(main())
