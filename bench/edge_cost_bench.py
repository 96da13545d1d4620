#!/usr/bin/env python3
"""What the gateway spends per reading on its storage path, and what a 1M backlog costs in RAM.

Part 1 pushes PMS5003 frames (made by simulators.frames.encode_frame from
firmware_profiles/pms5003.yaml) through the agent's own path, as
edge_agent.serial_port.SensorPort does it: FrameDecoder per read, a Reading
stamped by edge_agent.clock.Clock per frame, one Outbox.append per read, and
Outbox.sync() once per commit window (every --window-readings readings, i.e.
a gateway producing that many readings per 1 s window). Next to it, in the
same run: raw sqlite3 inserts of the same rows with the same transactions and
checkpoints, and one executemany transaction as the floor. CPU time is
time.process_time() (user + system of this process); wall time includes the
waits for fsync.

Part 2 starts a fresh process that opens an outbox holding 1M readings and
reports its RSS (VmRSS and the peak VmHWM from /proc/self/status) after
opening, after depth() (the health reading's query), after fetching one
uplink batch and after appending and syncing more readings.

    python bench/edge_cost_bench.py                 # ~1 min on 2 cores
    python bench/edge_cost_bench.py --quick         # a few seconds
    python bench/edge_cost_bench.py --dir /var/lib/cityedge --rss-readings 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

from cityedge.uplink import Reading  # noqa: E402
from edge_agent.clock import Clock  # noqa: E402
from edge_agent.decoding import Decoded, FrameDecoder, Profile, load_profile  # noqa: E402
from edge_agent.outbox import Outbox  # noqa: E402
from edge_agent.outbox.store import SCHEMA  # noqa: E402
from simulators.frames import encode_frame  # noqa: E402

PROFILE = REPO / "firmware_profiles" / "pms5003.yaml"
SENSOR = "pm-roof"
FRAME = 32  # PMS5003 frame length; reads in this bench are whole frames

DECODE = "decode (FrameDecoder)"
STAMP = "decode + Reading (Clock.stamp)"
AGENT = "agent path: decode + Reading + Outbox.append/read + sync/window"
NOSYNC = "agent path without sync() (append only)"
RAW = "raw sqlite3: same rows, same transactions + checkpoints"
FLOOR = "raw sqlite3: same rows, one executemany transaction"


def make_stream(profile: Profile, frames: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    distinct = []
    for _ in range(256):
        pm = rng.randint(0, 300)
        distinct.append(encode_frame(profile, {
            "pm1_0_cf1_ugm3": pm // 2, "pm2_5_cf1_ugm3": pm, "pm10_cf1_ugm3": pm + 9,
            "pm1_0_ugm3": pm // 2, "pm2_5_ugm3": pm, "pm10_ugm3": pm + 7,
            "count_0_3um_per_0_1l": 40 * pm + rng.randint(0, 99),
            "count_0_5um_per_0_1l": 12 * pm, "count_1_0um_per_0_1l": 2 * pm,
            "count_2_5um_per_0_1l": pm // 10, "count_5_0um_per_0_1l": pm // 40,
            "count_10um_per_0_1l": pm // 90,
        }))
    return b"".join(distinct[i % 256] for i in range(frames))


def chunks(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


class Timer:
    def __init__(self) -> None:
        self.cpu = self.wall = 0.0

    def __enter__(self) -> Timer:
        self._cpu, self._wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self._cpu
        self.wall = time.perf_counter() - self._wall


def decode_only(profile: Profile, reads: list[bytes]) -> int:
    decoder, n = FrameDecoder(profile), 0
    for data in reads:
        decoder.receive_data(data)
        for event in decoder.events():
            n += isinstance(event, Decoded)
    return n


def read_path(profile: Profile, reads: list[bytes],
              store: Callable[[list[Reading]], None]) -> int:
    """SensorPort._readable, minus the port: decode, stamp, hand each read's readings on."""
    decoder, clock, n = FrameDecoder(profile), Clock("yes"), 0
    for data in reads:
        decoder.receive_data(data)
        batch = []
        for event in decoder.events():
            if isinstance(event, Decoded):
                wall, mono = clock.stamp(SENSOR)
                batch.append(Reading(SENSOR, event.measurement, event.fields, wall, clock.boot,
                                     mono))
        if batch:
            n += len(batch)
            store(batch)
    return n


def agent_path(profile: Profile, reads: list[bytes], path: Path, window: int) -> int:
    box = Outbox(path)
    since_sync = 0

    def store(batch: list[Reading]) -> None:
        nonlocal since_sync
        box.append(batch)
        since_sync += len(batch)
        if since_sync >= window:
            box.sync()
            since_sync = 0

    try:
        n = read_path(profile, reads, store)
        box.sync()
    finally:
        box.close()
    return n


def columns(db: sqlite3.Connection) -> list[str]:
    """The outbox's columns but seq (SQLite assigns it): whatever the schema is today."""
    return [row[1] for row in db.execute("PRAGMA table_info(readings)") if row[1] != "seq"]


def insert_sql(db: sqlite3.Connection) -> str:
    cols = columns(db)
    return f"INSERT INTO readings({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def stored_rows(path: Path, reads: list[bytes]) -> list[list[tuple[Any, ...]]]:
    """The rows the agent path stored, grouped per read as they were appended."""
    db = sqlite3.connect(path)
    rows = db.execute(f"SELECT {', '.join(columns(db))} FROM readings ORDER BY seq").fetchall()
    db.close()
    it = iter(rows)
    return [[next(it) for _ in range(len(data) // FRAME)] for data in reads]


def raw_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.executescript(SCHEMA)
    return db


def raw_same(path: Path, per_read: list[list[tuple[Any, ...]]], window: int) -> None:
    db = raw_db(path)
    insert = insert_sql(db)
    since_sync = 0
    for rows in per_read:
        if not rows:
            continue
        db.execute("BEGIN IMMEDIATE")
        for row in rows:
            db.execute(insert, row)
        db.execute("COMMIT")
        since_sync += len(rows)
        if since_sync >= window:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            since_sync = 0
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def raw_floor(path: Path, per_read: list[list[tuple[Any, ...]]]) -> None:
    db = raw_db(path)
    insert = insert_sql(db)
    db.execute("BEGIN IMMEDIATE")
    db.executemany(insert, (row for rows in per_read for row in rows))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def cost_table(folder: Path, frames: int, read_sizes: list[int], window: int, rounds: int,
               ) -> tuple[list[str], list[list[str]]]:
    """Each stage runs ``rounds`` times, interleaved with the others; the median is shown.

    Interleaving matters on a VM or an SD card, where fsync latency drifts over
    seconds: the agent path and its raw baseline see the same disk.
    """
    profile = load_profile(PROFILE)
    stream = make_stream(profile, frames)
    names = (DECODE, STAMP, AGENT, NOSYNC, RAW, FLOOR)
    results: dict[str, list[str]] = {name: [] for name in names}
    for size in read_sizes:
        reads = chunks(stream, size)
        n = decode_only(profile, reads)
        if n != frames:
            raise RuntimeError(
                f"FrameDecoder decoded {n} of the {frames} frames simulators.frames.encode_frame"
                f" made from {PROFILE.name}: the encoder and the decoder disagree")
        per_read: list[list[tuple[Any, ...]]] | None = None
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in names}

        def stage(name: str, fn: Callable[..., object], *args: Any) -> None:
            with Timer() as t:
                fn(*args)
            timings[name].append((t.cpu / frames * 1e6, t.wall / frames * 1e6))  # noqa: B023

        for r in range(rounds):
            kept: list[Reading] = []
            stage(DECODE, decode_only, profile, reads)
            stage(STAMP, read_path, profile, reads, kept.extend)
            kept.clear()
            box = folder / f"agent-{size}-{r}.sqlite"
            stage(AGENT, agent_path, profile, reads, box, window)
            if per_read is None:
                per_read = stored_rows(box, reads)
            stage(NOSYNC, agent_path, profile, reads, folder / f"nosync-{size}-{r}.sqlite", 2**62)
            stage(RAW, raw_same, folder / f"raw-{size}-{r}.sqlite", per_read, window)
            stage(FLOOR, raw_floor, folder / f"floor-{size}-{r}.sqlite", per_read)
            for f in folder.glob("*.sqlite*"):
                f.unlink()
        for name in names:
            cpu = statistics.median(c for c, _ in timings[name])
            wall = statistics.median(w for _, w in timings[name])
            results[name] += [f"{cpu:.1f}", f"{wall:.1f}"]
    headers = ["per stored reading (us)"]
    for size in read_sizes:
        per = f"{size // FRAME} frame{'s' if size > FRAME else ''}/read"
        headers += [f"CPU, {per}", f"wall, {per}"]
    return headers, [[name, *cells] for name, cells in results.items()]


# -- part 2: RSS of a process holding a 1M-reading outbox ---------------------------------
def status_kib(key: str) -> int:
    """VmRSS (now) or VmHWM (peak of this address space) from /proc/self/status.

    Not getrusage's ru_maxrss: on Linux it survives exec, so a child started by
    a big parent would report the parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if key == "VmHWM" else -1


def rss_child(path: str, fetch: int) -> None:
    """Runs in a fresh process: open the outbox, report RSS after each step as JSON."""
    steps: list[tuple[str, int, int]] = []
    took: dict[str, float] = {}

    def step(name: str) -> None:
        steps.append((name, status_kib("VmRSS"), status_kib("VmHWM")))

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        result = fn()
        took[name] = time.perf_counter() - t
        return result

    step("after imports")
    box = timed("open", lambda: Outbox(path))
    step("after Outbox() open")
    depth = timed("depth()", box.depth)
    step("after depth() (health reading)")
    batch = timed(f"fetch_after({fetch})", lambda: box.fetch_after(0, box.last_seq, fetch))
    step(f"after fetch_after() of {len(batch)} (one uplink batch)")
    del batch
    for k in range(100):
        box.append([Reading(SENSOR, "particulate", {"pm2_5_ugm3": k}, k, "b00t", k)
                    for _ in range(10)])
    timed("sync()", box.sync)
    step("after 100 appends of 10 + sync()")
    box.close()
    print(json.dumps({"steps": steps, "took": took, "readings": depth.readings}))


def build_outbox(path: Path, n: int) -> float:
    fields = {"pm1_0_cf1_ugm3": 8, "pm2_5_cf1_ugm3": 13, "pm10_cf1_ugm3": 17, "pm1_0_ugm3": 8,
              "pm2_5_ugm3": 13, "pm10_ugm3": 17, "count_0_3um_per_0_1l": 1650,
              "count_0_5um_per_0_1l": 480, "count_1_0um_per_0_1l": 96,
              "count_2_5um_per_0_1l": 7, "count_5_0um_per_0_1l": 2, "count_10um_per_0_1l": 1}
    t = time.perf_counter()
    box = Outbox(path)
    for start in range(0, n, 20_000):
        box.append([Reading(SENSOR, "particulate", fields, 1_760_000_000 * 10**9 + i * 10**9,
                            "5f1c0e9a3b7d2c41", i * 10**9)
                    for i in range(start, min(n, start + 20_000))])
        box.sync()
    box.close()
    return time.perf_counter() - t


def rss_table(folder: Path, n: int, fetch: int) -> tuple[list[str], list[list[str]], str]:
    path = folder / "rss.sqlite"
    built = build_outbox(path, n)
    size = path.stat().st_size
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_rss", str(path),
                           str(fetch)], capture_output=True, text=True, cwd=REPO, check=True)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if got["readings"] != n:
        raise RuntimeError(f"the outbox holds {got['readings']} readings, not {n}")
    rows = [[name, f"{rss / 1024:.1f}", f"{peak / 1024:.1f}"] for name, rss, peak in got["steps"]]
    took = ", ".join(f"{name} {secs * 1e3:.1f} ms" for name, secs in got["took"].items())
    note = (f"outbox file: {size / 1e6:,.1f} MB for {n:,} readings ({size / n:.0f} B per"
            f" reading), built in {built:.1f} s; in the child: {took}")
    headers = [f"process holding {n:,} readings", "VmRSS (MiB)", "VmHWM, peak so far (MiB)"]
    return headers, rows, note


# -- output -------------------------------------------------------------------------------
def table(headers: list[str], body: list[list[str]]) -> str:
    """A plain-text table that is also a Markdown table (numbers right-aligned)."""
    widths = [max(len(r[c]) for r in [headers, *body]) for c in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                                 for c, (cell, w) in enumerate(zip(cells, widths, strict=True))
                                 ) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ("-" if c == 0 else ":")
                          for c, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in body)])


def machine() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for entry in f:
            if entry.startswith(("model name", "Model")):
                cpu = entry.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=None,
                    help="frames per stage and round (default 10000; --quick: 1000)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved rounds per stage, median shown (default 3; --quick: 1)")
    ap.add_argument("--read-sizes", default="32,4096",
                    help="bytes per serial read: 32 = one PMS5003 frame per read (a live"
                         " sensor), 4096 = the agent's READ_CHUNK full (a burst)")
    ap.add_argument("--window-readings", type=int, default=10,
                    help="readings per commit window: sync() after this many (default 10:"
                         " ten sensors at 1 Hz and the default 1 s window)")
    ap.add_argument("--rss-readings", type=int, default=None,
                    help="readings in the outbox for the RSS part (default 1000000;"
                         " --quick: 10000; 0 skips)")
    ap.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="where the files go: put it on the disk to measure (default: a"
                         " temporary folder under the current directory)")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    frames = args.frames or (1000 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 3)
    read_sizes = [int(x) for x in args.read_sizes.split(",") if x.strip()]
    if any(size % FRAME for size in read_sizes):
        ap.error(f"read sizes must be multiples of the {FRAME}-byte frame")
    rss_n = args.rss_readings if args.rss_readings is not None else (
        10_000 if args.quick else 1_000_000)

    base = args.dir or Path.cwd()
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="edge-cost-bench-", dir=base)).resolve()
    started = time.perf_counter()
    print(f"# edge_cost_bench {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}")
    print(f"files:   {folder}")
    print()
    try:
        print(f"## CPU and wall time per stored reading ({frames:,} PMS5003 frames per stage,"
              f" median of {rounds} interleaved rounds, sync() every {args.window_readings}"
              " readings)")
        headers, body = cost_table(folder, frames, read_sizes, args.window_readings, rounds)
        print(table(headers, body))
        print()
        if rss_n > 0:
            print(f"## RSS of a process holding an outbox with {rss_n:,} readings")
            headers, body, note = rss_table(folder, rss_n, 500)
            print(table(headers, body))
            print(note)
            print()
        print(f"total {time.perf_counter() - started:.0f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_rss":
        rss_child(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
