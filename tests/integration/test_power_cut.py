"""Power cuts, not kill -9: the agent's outbox on a filesystem that loses every write not
yet fsynced (tests/powercut/), the real agent against real Mosquitto, InfluxDB and a
collector, cut again and again, then rebooted with a new boot id and a clock that is
not synchronised.

Two gateways run side by side, one per `commit_window` setting the docs offer (1 s:
`synchronous=NORMAL` and a checkpoint per window; 0: `synchronous=FULL`). Each cut
comes either at a moment the test picks or at an exact filesystem call (the N-th
write, fsync, truncate or unlink: inside an append, a checkpoint or a delete), and
a third of the cuts are torn: the disk persists a random half of its unsynced pages
first. The device writes one frame every 50 ms, and now and then a burst of 30 in one
write, which the agent appends in one transaction; in a third of the boots the uplink
goes down for a few seconds, so stored readings wait unacked when the power goes.

After every reboot the agent must open the outbox without repair. At the end:
- no reading lands twice and no (epoch, seq) is used for two readings;
- the outbox survived every cut (one epoch);
- every frame the agent read more than one commit window (plus a second of reading
  and queueing) before a cut landed; what was lost lies inside that window. The agent
  cannot count those: they were never durable, and neither was their seq.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.decoding import load_profiles
from simulators.frames import encode_frame
from simulators.pty_device import PtyDevice
from simulators.services import InfluxDB
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.powercut.mount import PowerCutMount, need_fuse
from tests.secure_fleet import SecureFleet
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PROFILE = load_profiles(ROOT / "firmware_profiles")["pms5003"]
FRAME_INTERVAL = 0.05
SLACK_S = 1.0  # from the frame's write to its append returning, on this slow filesystem
# The call a boot's cut waits for, and how many of them at most; boots take turns, and
# a "time" boot is cut at a moment the test picks.
CUT_ON = {"write": 400, "fsync": 8, "truncate": 3, "any": 600}
KINDS = ("time", *CUT_ON)

# The agent with a boot id of the test's choosing: a reboot is a new boot.
AGENT = ("import sys, edge_agent.clock as c; c.boot_id = lambda: sys.argv[1];"
         " from edge_agent.cli import main; sys.exit(main(sys.argv[2:]))")


def frame(n: int) -> bytes:
    return encode_frame(PROFILE, {"pm2_5_ugm3": 12, "pm10_ugm3": 20,
                                  "count_0_3um_per_0_1l": n})


@dataclass
class Gateway:
    id: str
    commit_window: float
    disk: PowerCutMount
    device: PtyDevice
    config: Path
    log: Path
    proxy: CuttableProxy
    emitted: list[tuple[int, float]] = field(default_factory=list)
    # (port open from, cut at): frames written in between were read by a live agent
    runs: list[tuple[float, float]] = field(default_factory=list)
    paused: threading.Event = field(default_factory=threading.Event)
    proc: subprocess.Popen[bytes] | None = None
    boots: int = 0

    def produce(self, stop: threading.Event, rng: random.Random) -> None:
        n = 0
        while not stop.is_set():
            if not self.paused.is_set():
                burst = 30 if rng.random() < 0.03 else 1
                data = b""
                now = time.monotonic()
                for _ in range(burst):
                    n += 1
                    data += frame(n)
                    self.emitted.append((n, now))
                written = 0
                while written < len(data) and not stop.is_set():
                    written += self.device.write(data[written:])
                    if written < len(data):
                        time.sleep(0.005)
            time.sleep(FRAME_INTERVAL)

    def start_agent(self) -> None:
        self.boots += 1
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", AGENT, f"{self.id}-boot{self.boots:03d}", "run",
                 "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                env=env)

    def opened(self) -> int:
        return self.log.read_text(errors="replace").count("opened") if self.log.exists() else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_agent(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def cycle(self, rng: random.Random) -> None:
        """Boot, run a while, lose the power."""
        kind = KINDS[self.boots % len(KINDS)]
        torn = rng.randrange(1 << 30) if rng.random() < 1 / 3 else None
        if kind == "time":
            self.disk.mount(torn_seed=torn)
        else:
            self.disk.mount(cut_at=rng.randint(1, CUT_ON[kind]), cut_on=kind, torn_seed=torn)
        before = self.opened()
        self.start_agent()
        deadline = time.monotonic() + 20
        while self.opened() == before and self.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.alive() or self.disk.cut_by_itself(), self.tail()
        started = self.opened() > before
        if started:
            self.paused.clear()
            open_from = time.monotonic()
        if rng.random() < 0.3:  # the uplink is down: stored readings wait unacked
            self.proxy.cut(rng.uniform(1.0, 4.0))
        until = time.monotonic() + (rng.uniform(0.3, 2.0) if kind == "time" else 5.0)
        while time.monotonic() < until and not self.disk.cut_by_itself():
            time.sleep(0.01)
        self.paused.set()
        cut_at = time.monotonic()
        self.kill_agent()
        self.disk.cut()
        if started:
            self.runs.append((open_from, cut_at))

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def landed(influxdb: InfluxDB, db: str, gateway: str) -> list[dict[str, object]]:
    if not [r for r in rows(influxdb, "", "SHOW DATABASES") if r["name"] == db]:
        return []
    return rows(influxdb, db, "SELECT count_0_3um_per_0_1l AS n, seq, epoch FROM particulate"
                              f" WHERE gateway = '{gateway}'")


def make_gateways(tmp: Path, secure: SecureFleet) -> list[Gateway]:
    """One gateway per commit_window setting, each with its own power-cut disk."""
    site = {"district": "종로구", "site": "power cut", "kind": "dust_zone"}
    gateways: list[Gateway] = []
    for n, window in enumerate((1.0, 0.0)):
        gw = f"gw-pc-{n}"
        secret = secure.add_gateway(gw, **site)
        disk = PowerCutMount(tmp / f"{gw}-durable", tmp / f"{gw}-mnt", tmp / f"{gw}-cuts.jsonl")
        device = PtyDevice(tmp / f"{gw}-pm")
        proxy = CuttableProxy(secure.broker.address).start()
        config = write_yaml(tmp / f"{gw}.yaml", {
            "gateway": {"id": gw, "secret": secret, "site": site},
            "clock_synced": False,
            "sensors": [{"id": "pm-1", "port": device.path, "profile": "pms5003"}],
            "outbox": {"path": str(disk.mountpoint / "outbox.sqlite"),
                       "commit_window": window},
            "uplink": {"mqtt": secure.agent_mqtt(gw, port=proxy.port, keepalive=5,
                                                 reconnect_max=1),
                       "batch_size": 50, "max_in_flight": 2, "ack_timeout": 5},
            "health_interval": 2,
            "shutdown_timeout": 5,
        })
        g = Gateway(gw, window, disk, device, config, tmp / f"{gw}.log", proxy)
        g.paused.set()
        gateways.append(g)
    return gateways


def cut_again_and_again(gateways: list[Gateway], cuts: int, seed: int) -> None:
    """Each gateway in its own thread: boot, run, cut; ``cuts`` times."""
    errors: list[BaseException] = []

    def run(g: Gateway, rng: random.Random) -> None:
        try:
            for _ in range(cuts):
                g.cycle(rng)
        except BaseException as exc:
            errors.append(exc)

    runners = [threading.Thread(target=run, args=(g, random.Random(seed * 7 + i)))
               for i, g in enumerate(gateways)]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    assert not errors, errors


def boot_until_drained(gateways: list[Gateway], influxdb: InfluxDB, db: str) -> None:
    """The last boot: the power stays on until every stored reading has landed."""
    for g in gateways:
        g.disk.mount()
        before = g.opened()
        g.start_agent()
        wait_for(lambda g=g, b=before: g.opened() > b, 30, f"{g.id} to open its port")
        g.paused.clear()
        g.runs.append((time.monotonic(), float("inf")))
    time.sleep(2)
    for g in gateways:
        g.paused.set()
    time.sleep(FRAME_INTERVAL * 2)
    for g in gateways:
        last = g.emitted[-1][0]
        wait_for(lambda g=g, last=last: any(p["n"] == last for p in landed(influxdb, db, g.id)),
                 90, f"{g.id}'s last frame in InfluxDB", step=1)
    time.sleep(3)  # anything still on its way (a resend) would land by now


def check(g: Gateway, points: list[dict[str, object]], cuts: int) -> None:
    counters = [int(str(p["n"])) for p in points]
    assert len(counters) == len(set(counters)), f"{g.id}: a reading landed twice"
    ids = {(p["epoch"], p["seq"]) for p in points}
    assert len(ids) == len(points), f"{g.id}: a seq was used for two readings"
    emitted_at = dict(g.emitted)
    assert set(counters) <= set(emitted_at)
    window = g.commit_window + SLACK_S

    def run_of(at: float) -> tuple[float, float] | None:
        return next(((s, e) for s, e in g.runs if s <= at <= e), None)

    read = {n for n, at in g.emitted if run_of(at) is not None}
    must = {n for n in read if emitted_at[n] <= run_of(emitted_at[n])[1] - window}  # type: ignore[index]
    missing = must - set(counters)
    assert not missing, (g.id, sorted(missing)[:20], len(missing))
    lost = read - set(counters)
    ages = [run_of(emitted_at[n])[1] - emitted_at[n] for n in lost]  # type: ignore[index]
    kinds: dict[str, int] = {}
    for c in g.disk.cuts:
        word = str(c["during"]).split(" ")[0]
        kinds[word] = kinds.get(word, 0) + 1
    print(f"{g.id} commit_window={g.commit_window}: {len(g.disk.cuts)} cuts {kinds},"
          f" {len({p['epoch'] for p in points})} epoch(s), {len(read)} frames read,"
          f" {len(counters)} landed once, {len(lost)} lost in the window before a cut"
          f" (oldest {max(ages, default=0):.2f} s before it)")
    assert len(g.disk.cuts) >= cuts
    # The outbox survived every cut: a new epoch would mean a new, empty file.
    assert len({p["epoch"] for p in points}) == 1, f"{g.id}: the outbox was lost in a cut"
    if cuts >= 25:  # the calls a cut can land on all came up (boots take turns)
        assert all(kinds.get(k) for k in ("write", "fsync", "truncate", "test")), kinds


def test_power_cuts_lose_at_most_one_window_and_duplicate_nothing(
    tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, unique_name: str,
    request: pytest.FixtureRequest,
) -> None:
    need_fuse()
    cuts = request.config.getoption("--power-cuts")
    seed = request.config.getoption("--power-cut-seed") or random.randrange(1 << 30)
    print(f"power-cut seed {seed}, {cuts} cuts per gateway")
    collector_cfg = write_yaml(tmp_path / "collector.yaml", {
        "registry": str(secure.registry_path),
        "mqtt": secure.collector_mqtt(f"c-{unique_name}"),
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": unique_name},
        "batching": {"linger": 0.02},
    })
    gateways = make_gateways(tmp_path, secure)
    collector = Proc(["collector.cli", "run", "--config", str(collector_cfg)],
                     tmp_path / "collector.log").start()
    stop = threading.Event()
    for i, g in enumerate(gateways):
        threading.Thread(target=g.produce, args=(stop, random.Random(seed + i)),
                         daemon=True).start()
    try:
        cut_again_and_again(gateways, cuts, seed)
        boot_until_drained(gateways, influxdb, unique_name)
        for g in gateways:
            check(g, landed(influxdb, unique_name, g.id), cuts)
    finally:
        stop.set()
        for g in gateways:
            if g.proc is not None and g.proc.poll() is None:
                g.proc.terminate()
                try:
                    g.proc.wait(15)
                except subprocess.TimeoutExpired:
                    g.proc.kill()
            g.disk.unmount()
            g.device.close()
            g.proxy.close()
        collector.stop(timeout=10)
