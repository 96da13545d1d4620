#!/usr/bin/env python3
"""Outbox storage benchmark: what storing one reading costs, and what a kill -9 loses.

Invariant 2 of the design brief: the outbox storage is chosen by measurement
(throughput at 1k..1M buffered readings, kill -9 trials) and the measurement
is recorded (docs/outbox.md). This script is that measurement.

Candidates:
  append-only log + fsync   reference: one JSON line per reading, write + fsync per call
  SQLite WAL NORMAL         edge_agent.outbox.Outbox (the agent's default)
  SQLite WAL FULL           Outbox(fsync_every_append=True) (commit_window: 0)
  TinyDB JSONStorage        TinyDB's default storage
  TinyDB CachingMiddleware  TinyDB with its write cache (flushes every 1000 writes)

Part 1 times single appends and batches of 100 with 1k..1M readings already
stored, next to the raw fsync cost of the same disk measured in the same run.
Part 2 starts a child that appends and prints each seq/id as soon as the append
call returns, SIGKILLs it at a random moment (for SQLite often in the middle of
a 100,000-row append), reopens the file and checks every reported reading.

Run from the repo root, with --dir on the disk you want to know about (on a
gateway: the folder of the outbox on the SD card):

    python bench/outbox_bench.py                        # ~3 min on 2 cores
    python bench/outbox_bench.py --quick                # < 20 s smoke run
    python bench/outbox_bench.py --dir /var/lib/cityedge --sizes 1000,100000
    python bench/outbox_bench.py --no-throughput --kill-trials 200

The default --dir is a temporary folder under the current directory, not /tmp:
/tmp is tmpfs on some systems, where fsync costs nothing and proves nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

from tinydb import TinyDB  # noqa: E402
from tinydb.middlewares import CachingMiddleware  # noqa: E402
from tinydb.storages import JSONStorage  # noqa: E402

from cityedge.uplink import Reading, SeqRanges  # noqa: E402
from edge_agent.outbox import Outbox  # noqa: E402

LOG = "append-only log + fsync"
SQL_NORMAL = "SQLite WAL NORMAL (Outbox)"
SQL_FULL = "SQLite WAL FULL (Outbox fsync_every_append)"
TINY = "TinyDB JSONStorage"
TINY_CACHE = "TinyDB CachingMiddleware"
FSYNC = "raw fsync baseline (100 B write + fsync)"
SYNC_ROW = "SQLite Outbox.sync() after 10 appends *"
KINDS = {"log": LOG, "sqlite-normal": SQL_NORMAL, "sqlite-full": SQL_FULL,
         "tinydb": TINY, "tinydb-cache": TINY_CACHE}

# A PMS5003 reading as the decoder produces it (12 fields); a few variants so
# that rows are not all identical.
BOOT = "5f1c0e9a3b7d2c41"
T0 = 1_760_000_000_000_000_000
FIELDS = [
    {"pm1_0_cf1_ugm3": 8 + i, "pm2_5_cf1_ugm3": 13 + i, "pm10_cf1_ugm3": 17 + i,
     "pm1_0_ugm3": 8 + i, "pm2_5_ugm3": 13 + i, "pm10_ugm3": 17 + i,
     "count_0_3um_per_0_1l": 1650 + 7 * i, "count_0_5um_per_0_1l": 480 + 3 * i,
     "count_1_0um_per_0_1l": 96 + i, "count_2_5um_per_0_1l": 7, "count_5_0um_per_0_1l": 2,
     "count_10um_per_0_1l": i % 3}
    for i in range(64)
]


def reading(i: int) -> Reading:
    return Reading("pm-roof", "particulate", FIELDS[i % 64], T0 + i * 1_000_000_000, BOOT,
                   i * 1_000_000_000)


def readings(start: int, count: int) -> list[Reading]:
    return [reading(i) for i in range(start, start + count)]


def doc(i: int) -> dict[str, Any]:
    r = reading(i)
    return {"sensor": r.sensor, "measurement": r.measurement, "time_ns": r.time_ns,
            "boot": r.boot, "mono_ns": r.mono_ns, "fields": dict(r.fields)}


# -- the reference: an append-only log ----------------------------------------------------
class AppendLog:
    """One line per reading (``seq json``), one write + fsync per append call.

    Recovery keeps every complete line and cuts a torn last line; a reading is
    stored once ``append`` returned.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_seq = self._recover()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _recover(self) -> int:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        with open(self.path, "r+b") as f:
            f.seek(max(0, size - 65536))
            tail = f.read()
            end = tail.rfind(b"\n") + 1
            if end < len(tail):  # a torn last line: never reported, so cut it
                f.truncate(size - len(tail) + end)
            if end == 0:
                return 0
            line = tail[tail.rfind(b"\n", 0, end - 1) + 1 : end]
            return int(line.split(b" ", 1)[0])

    def append(self, batch: Sequence[Reading], *, fsync: bool = True) -> list[int]:
        first = self.last_seq + 1
        buf = b"".join(
            b"%d %s\n" % (first + k, json.dumps(
                [r.sensor, r.measurement, r.time_ns, r.boot, r.mono_ns, r.fields],
                separators=(",", ":")).encode())
            for k, r in enumerate(batch)
        )
        view = memoryview(buf)
        while view:
            view = view[os.write(self.fd, view):]
        if fsync:
            os.fsync(self.fd)
        self.last_seq = first + len(batch) - 1
        return list(range(first, self.last_seq + 1))

    def close(self) -> None:
        os.close(self.fd)

    @staticmethod
    def scan(path: Path) -> tuple[set[int], int]:
        """Seqs of every complete line, and how many torn tail bytes there were.

        Every line must be ``seq [...]``; the last 1000 are parsed as JSON in full
        (a kill can only have hurt the end of the file).
        """
        data = path.read_bytes() if path.exists() else b""
        end = data.rfind(b"\n") + 1
        lines = data[:end].splitlines()
        seqs = set()
        for k, line in enumerate(lines):
            seq, body = line.split(b" ", 1)
            if not (body.startswith(b"[") and body.endswith(b"]")):
                raise ValueError(f"line {k + 1} is not a JSON array")
            if k >= len(lines) - 1000:
                json.loads(body)
            seqs.add(int(seq))
        return seqs, len(data) - end


# -- part 1: cost per stored reading ---------------------------------------------------------
def timed(op: Callable[[int], object], reps: int, budget_s: float, min_reps: int = 3,
          ) -> tuple[int, float]:
    """Run op(0..) up to ``reps`` times or until the budget is spent; (runs, seconds)."""
    start = time.perf_counter()
    n = 0
    while n < reps:
        op(n)
        n += 1
        if n >= min_reps and time.perf_counter() - start > budget_s:
            break
    return n, time.perf_counter() - start


@dataclass
class Settings:
    reps_single: int = 1000       # cheap appends (SQLite NORMAL)
    reps_fsync: int = 300         # appends that each wait for an fsync
    reps_batch: int = 100
    budget_s: float = 1.0         # per measurement, after its minimum reps
    tinydb_budget_s: float = 30.0  # skip a TinyDB size whose cell would take longer
    kill_max_delay_s: float = 1.5
    big: int = 100_000
    kill_prefill: int = 10_000


@dataclass
class Cell:
    us: float | None = None
    note: str = ""

    def text(self) -> str:
        if self.us is None:
            return self.note or "-"
        return fmt_us(self.us)


def fmt_us(us: float) -> str:
    if us >= 100:
        return f"{us:,.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def fmt_n(n: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1000)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def fsync_baseline(folder: Path, s: Settings) -> tuple[float, list[float]]:
    path = folder / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times: list[float] = []
    try:
        def op(_: int) -> None:
            t = time.perf_counter()
            os.write(fd, b"x" * 99 + b"\n")
            os.fsync(fd)
            times.append(time.perf_counter() - t)
        n, secs = timed(op, s.reps_fsync, s.budget_s, min_reps=20)
    finally:
        os.close(fd)
        path.unlink()
    return secs / n * 1e6, times


class LogBench:
    def __init__(self, folder: Path) -> None:
        self.log = AppendLog(folder / "bench.log")
        self.count = 0

    def fill_to(self, n: int) -> None:
        while self.count < n:
            k = min(20_000, n - self.count)
            self.log.append(readings(self.count, k), fsync=False)
            self.count += k
        os.fsync(self.log.fd)

    def measure(self, s: Settings) -> dict[str, Cell]:
        one = readings(self.count, 1)
        hundred = readings(self.count, 100)
        size, seq = os.fstat(self.log.fd).st_size, self.log.last_seq
        n1, t1 = timed(lambda _: self.log.append(one), s.reps_fsync, s.budget_s)
        nb, tb = timed(lambda _: self.log.append(hundred), s.reps_batch, s.budget_s)
        os.ftruncate(self.log.fd, size)  # back to n readings for the next size
        self.log.last_seq = seq
        return {"single": Cell(t1 / n1 * 1e6), "batch 100": Cell(tb / nb / 100 * 1e6)}

    def close(self) -> None:
        self.log.close()


class SqliteBench:
    """One outbox file, topped up between sizes; NORMAL and FULL take turns on it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "bench.sqlite"
        self.count = 0

    def fill_to(self, n: int) -> None:
        box = Outbox(self.path)
        try:
            while self.count < n:
                k = min(20_000, n - self.count)
                box.append(readings(self.count, k))
                box.sync()  # the agent checkpoints every window; keep the WAL small
                self.count += k
        finally:
            box.close()

    def measure(self, s: Settings, *, full: bool) -> dict[str, Cell]:
        box = Outbox(self.path, fsync_every_append=full)
        first_added = box.last_seq + 1
        try:
            one = readings(self.count, 1)
            hundred = readings(self.count, 100)
            box.append(one)  # first write after open: page cache and WAL warm-up
            reps = s.reps_fsync if full else s.reps_single
            n1, t1 = timed(lambda _: box.append(one), reps, s.budget_s)
            box.sync()
            nb, tb = timed(lambda _: box.append(hundred), s.reps_batch, s.budget_s)
            box.sync()
            out = {"single": Cell(t1 / n1 * 1e6), "batch 100": Cell(tb / nb / 100 * 1e6)}
            added = 1 + n1 + 100 * nb
            if not full:
                # What a commit window costs: checkpoint (fsync WAL, copy, fsync db).
                syncs: list[float] = []

                def window(_: int) -> None:
                    for _k in range(10):
                        box.append(one)
                    t = time.perf_counter()
                    box.sync()
                    syncs.append(time.perf_counter() - t)

                nw, _ = timed(window, 50, s.budget_s)
                added += 10 * nw
                out["sync"] = Cell(sum(syncs) / len(syncs) * 1e6)
            # Acked and deleted, as the agent would: the next measurement starts at n again.
            removed = box.delete(SeqRanges(((first_added, box.last_seq),)))
            if removed != added:
                raise RuntimeError(f"measured {added} appends but deleted {removed}")
            return out
        finally:
            box.close()


class TinyBench:
    """One JSON file shared by both TinyDB variants (same format on disk).

    Each measurement starts from a file of exactly n readings, and every timed
    append is undone (untimed) before the next, so the file stays at n: TinyDB's
    cost grows with the file, and 50 batches of 100 would make "1k" a 6k file.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / "bench.tinydb.json"
        self.last: tuple[int, float] | None = None  # (size, s per default append)
        self.skipping: bool = False

    def estimate(self, n: int) -> float | None:
        """Seconds per default-storage append at n, extrapolated (it rewrites the file)."""
        if self.last is None:
            return None
        size, per = self.last
        return per * n / size

    def fresh(self, n: int) -> None:
        """A file of readings 0..n-1, as TinyDB itself would have written it."""
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump({"_default": {str(i + 1): doc(i) for i in range(n)}}, f)

    def measure(self, s: Settings, n: int) -> dict[str, dict[str, Cell]]:
        est = self.estimate(n)
        # Cost of a size in appends: the file (1), 3 singles and 3 batches each undone
        # (12), the cache's read, warm-up and two flushes (5).
        if self.skipping or (est is not None and est * 18 > s.tinydb_budget_s):
            self.skipping = True
            when = f"~{est:.1f} s" if est is not None else "?"
            return {
                TINY: {m: Cell(note=f"skipped: {when} per append at {fmt_n(n)}")
                       for m in ("single", "batch 100")},
                TINY_CACHE: {m: Cell(note=f"skipped: {when} per flush at {fmt_n(n)}")
                             for m in ("single", "batch 100")},
            }
        self.fresh(n)
        one, hundred = doc(n), [doc(n + k) for k in range(100)]
        out: dict[str, dict[str, Cell]] = {}
        db = TinyDB(self.path)
        try:
            n1, t1 = timed_undo(lambda: [db.insert(one)], db, 200, s.budget_s * 2)
            nb, tb = timed_undo(lambda: db.insert_multiple(hundred), db, 50, s.budget_s * 2)
            self.last = (n, t1 / n1)
            out[TINY] = {"single": Cell(t1 / n1 * 1e6), "batch 100": Cell(tb / nb / 100 * 1e6)}
        finally:
            db.close()
        # Cached writes are durable only when the cache flushes, every WRITE_CACHE_SIZE
        # writes by default: per stored reading = mean write + flush / WRITE_CACHE_SIZE.
        # An append and its undo are two writes: stay under the size, flush by hand.
        per_flush = CachingMiddleware.WRITE_CACHE_SIZE
        reps = per_flush // 2 - 2
        storage: Any = CachingMiddleware(JSONStorage)  # type: ignore[no-untyped-call]
        cdb = TinyDB(self.path, storage=storage)
        try:
            cdb.remove(doc_ids=[cdb.insert(one)])  # loads the cache, finds the next id
            n1, t1 = timed_undo(lambda: [cdb.insert(one)], cdb, reps, s.budget_s)
            t = time.perf_counter()
            storage.flush()
            f1 = time.perf_counter() - t
            nb, tb = timed_undo(lambda: cdb.insert_multiple(hundred), cdb, reps, s.budget_s)
            t = time.perf_counter()
            storage.flush()
            fb = time.perf_counter() - t
            out[TINY_CACHE] = {
                "single": Cell((t1 / n1 + f1 / per_flush) * 1e6),
                "batch 100": Cell((tb / nb + fb / per_flush) / 100 * 1e6),
            }
        finally:
            cdb.close()
        return out


def timed_undo(op: Callable[[], list[int]], db: TinyDB, reps: int, budget_s: float,
               min_reps: int = 3) -> tuple[int, float]:
    """Like timed(), but removes what each op inserted (untimed); (runs, timed seconds)."""
    start = time.perf_counter()
    n, spent = 0, 0.0
    while n < reps:
        t = time.perf_counter()
        ids = op()
        spent += time.perf_counter() - t
        db.remove(doc_ids=ids)
        n += 1
        if n >= min_reps and time.perf_counter() - start > budget_s:
            break
    return n, spent


def throughput(folder: Path, sizes: list[int], s: Settings) -> tuple[str, str]:
    rows: dict[tuple[str, str], dict[int, Cell]] = {}
    fsync_times: list[float] = []
    log_b, sql_b, tiny_b = LogBench(folder), SqliteBench(folder), TinyBench(folder)
    try:
        for n in sizes:
            t0 = time.perf_counter()
            mean, times = fsync_baseline(folder, s)
            fsync_times += times
            rows.setdefault((FSYNC, "per call"), {})[n] = Cell(mean)
            log_b.fill_to(n)
            for mode, cell in log_b.measure(s).items():
                rows.setdefault((LOG, mode), {})[n] = cell
            sql_b.fill_to(n)
            for mode, cell in sql_b.measure(s, full=False).items():
                if mode == "sync":
                    rows.setdefault((SYNC_ROW, "per call"), {})[n] = cell
                else:
                    rows.setdefault((SQL_NORMAL, mode), {})[n] = cell
            for mode, cell in sql_b.measure(s, full=True).items():
                rows.setdefault((SQL_FULL, mode), {})[n] = cell
            for name, cells in tiny_b.measure(s, n).items():
                for mode, cell in cells.items():
                    rows.setdefault((name, mode), {})[n] = cell
            print(f"  {fmt_n(n):>5} buffered: measured in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    finally:
        log_b.close()
    order = [(FSYNC, "per call"), (LOG, "single"), (LOG, "batch 100"),
             (SQL_NORMAL, "single"), (SQL_NORMAL, "batch 100"), (SYNC_ROW, "per call"),
             (SQL_FULL, "single"), (SQL_FULL, "batch 100"),
             (TINY, "single"), (TINY, "batch 100"), (TINY_CACHE, "single"),
             (TINY_CACHE, "batch 100")]
    headers = ["storage", "append", *[f"{fmt_n(n)} buffered" for n in sizes]]
    body = [[name, mode, *[rows[(name, mode)][n].text() for n in sizes]] for name, mode in order]
    fs = sorted(fsync_times)
    baseline = (f"fsync on this disk: median {statistics.median(fs) * 1e6:,.0f} us, "
                f"p90 {fs[int(len(fs) * 0.9)] * 1e6:,.0f} us, max {fs[-1] * 1e6:,.0f} us "
                f"({len(fs)} calls)")
    return table(headers, body, right_from=2), baseline


# -- part 2: kill -9 trials ---------------------------------------------------------------
def child(kind: str, path: str, seed: int, big: int) -> None:
    """Append until killed; print ``ok first last`` as soon as each append returns."""
    rng = random.Random(seed)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    if kind in ("sqlite-normal", "sqlite-full"):
        box = Outbox(path, fsync_every_append=kind == "sqlite-full")
        start = box.last_seq
        pool = readings(start, 100)
        large = readings(start, big)
        say(f"ready {start}")
        now = time.monotonic()
        big_at, sync_at = now + rng.uniform(0.05, 0.4), now + rng.uniform(0.05, 0.5)
        while True:
            now = time.monotonic()
            if now >= big_at:
                say("big")
                seqs = box.append(large)
                say(f"ok {seqs[0]} {seqs[-1]}")
                big_at = time.monotonic() + rng.uniform(0.05, 0.4)
            elif now >= sync_at:  # the agent's commit window, shortened to hit it more often
                say("sync")
                box.sync()
                say("synced")
                sync_at = now + rng.uniform(0.1, 0.5)
            else:
                seqs = box.append(pool[: 1 if rng.random() < 0.5 else rng.randint(2, 100)])
                say(f"ok {seqs[0]} {seqs[-1]}")
    elif kind == "log":
        log = AppendLog(Path(path))
        pool = readings(log.last_seq, 100)
        say(f"ready {log.last_seq}")
        while True:
            seqs = log.append(pool[: 1 if rng.random() < 0.5 else rng.randint(2, 100)])
            say(f"ok {seqs[0]} {seqs[-1]}")
    else:
        storage: Any = JSONStorage
        if kind == "tinydb-cache":
            storage = CachingMiddleware(JSONStorage)  # type: ignore[no-untyped-call]
        db = TinyDB(path, storage=storage)
        say(f"ready {len(db)}")
        i = 0
        while True:
            doc_id = db.insert(doc(i))
            i += 1
            say(f"ok {doc_id} {doc_id}")


@dataclass
class KillStats:
    trials: int = 0
    mid_big: int = 0
    mid_sync: int = 0
    reported: int = 0
    lost: int = 0
    unopenable: int = 0
    reused: int = 0
    torn_tails: int = 0
    notes: list[str] = field(default_factory=list)


def run_child(kind: str, path: Path, seed: int, big: int, delay: float) -> list[str]:
    """Start the child, SIGKILL it ``delay`` s after it is ready; every line it printed."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_child", kind, str(path),
             str(seed), str(big)],
            stdout=subprocess.PIPE, stderr=err, cwd=REPO, text=True, bufsize=1,
        )
        lines: list[str] = []
        ready = threading.Event()

        def pump() -> None:  # keep the pipe drained, or the child would block on print
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                ready.set()
            ready.set()  # EOF: the child died before it was ready

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        ready.wait(60)
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait()
        reader.join()
        if code != -signal.SIGKILL or not lines:
            err.seek(0)
            raise RuntimeError(f"{kind} child exited {code} by itself:\n"
                               f"{err.read().decode(errors='replace')[-2000:]}")
    return lines


def remove_db(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)


def kill_trials(kind: str, folder: Path, trials: int, s: Settings, rng: random.Random,
                ) -> KillStats:
    stats = KillStats()
    suffix = {"log": ".log", "sqlite-normal": ".sqlite", "sqlite-full": ".sqlite"}
    path = folder / f"kill-{kind}{suffix.get(kind, '.json')}"
    high = prefill(kind, path, s.kill_prefill)  # highest seq/id ever reported
    alive = [(1, high)] if high else []  # reported ranges not deleted yet
    prev_trial = list(alive)
    for _ in range(trials):
        lines = run_child(kind, path, rng.randrange(2**31), s.big,
                          rng.uniform(0.0, s.kill_max_delay_s))
        stats.trials += 1
        this_trial = []
        for line in lines:
            if line.startswith("ok "):
                lo, hi = map(int, line.split()[1:])
                stats.reused += max(0, min(hi, high) - lo + 1)
                high = max(high, hi)
                this_trial.append((lo, hi))
                stats.reported += hi - lo + 1
        last = lines[-1]
        stats.mid_big += last == "big"
        stats.mid_sync += last == "sync"
        alive += this_trial
        missing = check(kind, path, alive, stats)
        if missing is None:  # every reading in the file is gone with it
            stats.lost += sum(hi - lo + 1 for lo, hi in SeqRanges.from_pairs(alive).ranges)
            stats.unopenable += 1
            alive, prev_trial, high = [], [], 0
            remove_db(path)
            continue
        stats.lost += len(missing)
        if missing:  # count each loss once; a reused id is a new reading from here on
            alive, prev_trial, this_trial = (without(r, missing)
                                             for r in (alive, prev_trial, this_trial))
        if kind.startswith("sqlite"):
            # Ack what the trial before this one stored (the agent deletes acked
            # readings): the file stays small, and every reading is checked twice.
            done = SeqRanges.from_pairs(prev_trial)
            if done:
                box = Outbox(path)
                box.delete(done)
                box.close()
                alive = list(this_trial)
        prev_trial = this_trial
    return stats


def prefill(kind: str, path: Path, n: int) -> int:
    """Start from a backlog of n readings (an uplink that was down for a while)."""
    if n <= 0:
        return 0
    if kind == "log":
        log = AppendLog(path)
        for start in range(0, n, 20_000):
            log.append(readings(start, min(20_000, n - start)))
        log.close()
    elif kind.startswith("sqlite"):
        box = Outbox(path)
        for start in range(0, n, 20_000):
            box.append(readings(start, min(20_000, n - start)))
        box.close()
    else:
        db = TinyDB(path)
        db.insert_multiple(doc(i) for i in range(n))
        db.close()
    return n


def without(ranges: list[tuple[int, int]], missing: set[int]) -> list[tuple[int, int]]:
    return list(SeqRanges.of(q for lo, hi in ranges for q in range(lo, hi + 1)
                             if q not in missing).ranges)


def check(kind: str, path: Path, ranges: list[tuple[int, int]], stats: KillStats,
          ) -> set[int] | None:
    """The reported seqs/ids missing after reopening; None if the file does not open."""
    ranges = list(SeqRanges.from_pairs(ranges).ranges)
    if kind.startswith("sqlite"):
        missing: set[int] = set()
        try:
            box = Outbox(path)  # the agent's own open and recovery
            box.close()
            db = sqlite3.connect(path)
            try:
                if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    stats.notes.append("quick_check failed")
                    return None
                for lo, hi in ranges:
                    sql = "SELECT {} FROM readings WHERE seq BETWEEN ? AND ?"
                    if db.execute(sql.format("count(*)"), (lo, hi)).fetchone()[0] != hi - lo + 1:
                        have = {q for (q,) in db.execute(sql.format("seq"), (lo, hi))}
                        missing |= set(range(lo, hi + 1)) - have
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            stats.notes.append(f"open failed: {exc}")
            return None
        return missing
    if kind == "log":
        try:
            ids, torn = AppendLog.scan(path)
        except ValueError as exc:  # a complete line that does not parse
            stats.notes.append(f"corrupt line: {exc}")
            return None
        stats.torn_tails += torn > 0
    else:
        try:
            db = TinyDB(path)
            ids = {d.doc_id for d in db.all()}
            db.close()
        except ValueError as exc:  # json.JSONDecodeError
            stats.notes.append(f"{type(exc).__name__}: {str(exc)[:60]}")
            shutil.copy(path, path.with_suffix(f".torn{stats.unopenable}"))
            return None
    return {q for lo, hi in ranges for q in range(lo, hi + 1) if q not in ids}


def kill_table(folder: Path, trials: int, s: Settings, kinds: list[str], seed: int) -> str:
    rng = random.Random(seed)
    body = []
    for kind in kinds:
        t0 = time.perf_counter()
        st = kill_trials(kind, folder, trials, s, rng)
        # The row as soon as it is known: a long run that dies later keeps what it measured.
        print(f"  {KINDS[kind]}: {st.trials} kills in {time.perf_counter() - t0:.1f} s,"
              f" {st.reported:,} reported stored, {st.lost:,} lost, {st.unopenable} unopenable,"
              f" {st.reused:,} ids reused, {st.mid_big} mid large append, {st.mid_sync} mid sync",
              file=sys.stderr, flush=True)
        notes = []
        if kind.startswith("sqlite"):
            notes.append(f"{st.mid_big} mid {fmt_n(s.big)}-row append, {st.mid_sync} mid sync()")
        if kind == "log":
            notes.append(f"{st.torn_tails} torn last line{'' if st.torn_tails == 1 else 's'} cut")
        if kind == "tinydb-cache":
            notes.append(f"flushes every {CachingMiddleware.WRITE_CACHE_SIZE} writes")
        notes += sorted(set(st.notes))[:2]
        body.append([KINDS[kind], str(st.trials), f"{st.reported:,}", f"{st.lost:,}",
                     str(st.unopenable), str(st.reused), "; ".join(notes)])
    headers = ["storage", "kills", "reported stored", "lost", "unopenable", "ids reused",
               "notes"]
    return table(headers, body, right_from=1, left_cols={6})


# -- output -------------------------------------------------------------------------------
def table(headers: list[str], body: list[list[str]], right_from: int = 1,
          left_cols: set[int] | None = None) -> str:
    """A plain-text table that is also a Markdown table."""
    left_cols = left_cols or set()
    widths = [max(len(r[c]) for r in [headers, *body]) for c in range(len(headers))]

    def line(cells: list[str]) -> str:
        out = []
        for c, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            right = c >= right_from and c not in left_cols
            out.append(cell.rjust(w) if right else cell.ljust(w))
        return "| " + " | ".join(out) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + (":" if c >= right_from and c not in left_cols else "-")
        for c, w in enumerate(widths)
    ) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in body)])


def filesystem(folder: Path) -> str:
    best = ("?", "", "?")
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for entry in mounts:
            dev, mnt, fstype, *_ = entry.split()
            inside = folder == Path(mnt) or Path(mnt) in folder.parents
            if inside and len(mnt) > len(best[1]):
                best = (dev, mnt, fstype)
    return f"{best[2]} on {best[0]}, mounted at {best[1] or '?'}"


def machine() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for entry in f:
            if entry.startswith(("model name", "Model")):
                cpu = entry.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"TinyDB {importlib.metadata.version('tinydb')}")


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(float(x)) for x in text.split(",") if x.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are positive integers, e.g. 1000,10000")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=parse_sizes, default=None,
                    help="readings already stored when timing (default 1000,10000,100000,1000000;"
                         " --quick: 1000,10000)")
    ap.add_argument("--kill-trials", type=int, default=None,
                    help="kill -9 trials per storage (default 12; --quick: 2; 0 skips)")
    ap.add_argument("--quick", action="store_true", help="small sizes and few reps (< 20 s)")
    ap.add_argument("--no-throughput", action="store_true", help="only the kill -9 trials")
    ap.add_argument("--storages", default=",".join(KINDS),
                    help=f"kill -9 trials for these (default all: {','.join(KINDS)})")
    ap.add_argument("--big", type=int, default=None,
                    help="rows in the large SQLite append that kills often land in"
                         " (default 100000; --quick: 10000)")
    ap.add_argument("--kill-prefill", type=int, default=None,
                    help="readings already in each file before the first kill"
                         " (default 10000; --quick: 1000)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="where the files go: put it on the disk to measure (default: a"
                         " temporary folder under the current directory)")
    ap.add_argument("--seed", type=int, default=None, help="seed for kill timing")
    ap.add_argument("--keep", action="store_true", help="keep the files afterwards")
    args = ap.parse_args(argv)

    quick = args.quick
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sizes = args.sizes or ([1000, 10_000] if quick else [1000, 10_000, 100_000, 1_000_000])
    trials = args.kill_trials if args.kill_trials is not None else (2 if quick else 12)
    s = Settings()
    if quick:
        s = Settings(reps_single=300, reps_fsync=50, reps_batch=20, budget_s=0.25,
                     tinydb_budget_s=5.0, kill_max_delay_s=0.4, big=10_000,
                     kill_prefill=1000)
    if args.big:
        s.big = args.big
    if args.kill_prefill is not None:
        s.kill_prefill = args.kill_prefill
    kinds = [k.strip() for k in args.storages.split(",") if k.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown storage(s) {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")
    seed = args.seed if args.seed is not None else random.randrange(2**31)

    base = args.dir or Path.cwd()
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="outbox-bench-", dir=base)).resolve()
    try:
        report(folder, sizes, trials, s, kinds=kinds, seed=seed,
               skip_throughput=args.no_throughput)
    finally:
        if args.keep:
            print(f"files kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def report(folder: Path, sizes: list[int], trials: int, s: Settings, *, kinds: list[str],
           seed: int, skip_throughput: bool) -> None:
    started = time.perf_counter()
    print(f"# outbox_bench {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}")
    print(f"files:   {folder} ({filesystem(folder)})")
    print()
    if not skip_throughput:
        print("## Cost per stored reading (us, wall clock; lower is better)")
        tab, baseline = throughput(folder, sizes, s)
        print(baseline)
        print()
        print(tab)
        print()
        print("* per sync() call, not per reading: one commit window's checkpoint.")
        print("TinyDB CachingMiddleware = mean write + flush / "
              f"{CachingMiddleware.WRITE_CACHE_SIZE} (its cache size): a reading is on"
              " disk only after the flush.")
        print("TinyDB sizes are skipped when a cell would take more than"
              f" {s.tinydb_budget_s:.0f} s (per-append time extrapolated linearly"
              " from the largest size measured).")
        print()
    if trials > 0:
        print(f"## kill -9 trials ({trials} per storage, seed {seed}, each file starts"
              f" with {s.kill_prefill:,} readings, kill at 0..{s.kill_max_delay_s} s"
              " after the child is ready)")
        print(kill_table(folder, trials, s, kinds, seed))
        print()
        print("reported stored = readings whose append call had returned (the child"
              " printed their seq/id) before the kill; lost = those, or the starting"
              " backlog, missing after reopening; ids reused = readings given a seq/id"
              " that an earlier reported reading had.")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")

if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main())
