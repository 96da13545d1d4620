"""The pieces bench/city.py measures with: collectors as processes with their CPU and
memory, the baselines (raw InfluxDB ingest, plain paho through Mosquitto), the fleet's
backlogs, the exactly-once check and the profile summary."""

from __future__ import annotations

import multiprocessing
import os
import pstats
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cityedge.uplink import Reading, dump_fields  # noqa: E402
from cityedge.uplink.reading import StoredFields  # noqa: E402
from collector.lineprotocol import Point, encode  # noqa: E402
from simulators.city_fleet import Fleet  # noqa: E402
from simulators.fleet import write_yaml  # noqa: E402
from simulators.services import influx_query, spawn  # noqa: E402

T0 = 1_790_000_000_000_000_000
MEASUREMENTS = ("particulate", "bus_terminal", "noise", "climate")
PM_FIELDS = ("pm1_0_cf1_ugm3", "pm2_5_cf1_ugm3", "pm10_cf1_ugm3", "pm1_0_ugm3", "pm2_5_ugm3",
             "pm10_ugm3", "count_0_3um_per_0_1l", "count_0_5um_per_0_1l",
             "count_1_0um_per_0_1l", "count_2_5um_per_0_1l", "count_5_0um_per_0_1l",
             "count_10um_per_0_1l")
TICK = os.sysconf("SC_CLK_TCK")


def pm_values(i: int) -> dict[str, int]:
    return {name: (i * 7 + k) % 500 for k, name in enumerate(PM_FIELDS)}


# -- processes --------------------------------------------------------------------------
def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


@dataclass
class Collectors:
    pids: list[int]

    def cpu(self) -> float:
        return sum(cpu_s(p) for p in self.pids)

    def rss_mib(self, key: str = "VmRSS") -> float:
        return max(status_kib(p, key) for p in self.pids) / 1024


@contextmanager
def collectors(tmp: Path, port: int, influx: str, *, prefix: str, db: str, n: int = 1,
               profile: Path | None = None) -> Iterator[Collectors]:
    """``n`` collector processes on one shared subscription (``prefix``), writing to ``db``;
    ``profile``: the first runs under cProfile and leaves its stats there."""
    procs = []
    for k in range(n):
        name = f"{db}-{k}"
        config = write_yaml(tmp / f"{name}.yaml", {
            "mqtt": {"host": "127.0.0.1", "port": port, "client_id": f"bench-{name}",
                     "topic_prefix": prefix},
            "insecure": True,  # the bench's broker is plain: no registry
            "writer": {"type": "influxdb_v1", "url": influx, "database": db},
            "health_interval": 3600,
        })
        pre = ["-m", "cProfile", "-o", str(profile)] if profile and k == 0 else []
        procs.append(spawn([sys.executable, *pre, "-m", "collector.cli", "run", "--config",
                            str(config)], tmp / f"{name}.log", cwd=ROOT))
    try:
        for k in range(n):
            log = tmp / f"{db}-{k}.log"
            deadline = time.monotonic() + 30
            while "collector running" not in log.read_text(errors="replace"):
                if time.monotonic() > deadline or procs[k].poll() is not None:
                    raise SystemExit(f"collector did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield Collectors([p.pid for p in procs])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)


# -- baselines ---------------------------------------------------------------------------
def raw_ingest(url: str, n: int, writers: int, tag: str) -> float:
    """Points/s of plain line-protocol posts, 5,000 points each, from ``writers`` threads:
    the same 14-field points the collector writes for the same readings."""
    db = "raw"
    influx_query(url, f'CREATE DATABASE "{db}"', post=True)
    bodies = []
    for lo in range(0, n, 5000):
        tags = {"district": "강남구", "site": "bench", "site_kind": "dust_zone",
                "gateway": f"gw-{tag}-{lo // 50_000}", "sensor": "pm-roof", "model": "pms5003"}
        bodies.append(encode([Point("particulate", tags,
                                    {**pm_values(i), "seq": i + 1, "epoch": "0" * 16},
                                    T0 + i * 1_000_000) for i in range(lo, min(n, lo + 5000))]))

    def post(mine: list[bytes]) -> None:
        for body in mine:
            req = urllib.request.Request(f"{url}/write?db={db}&precision=ns", data=body,
                                         method="POST")
            with urllib.request.urlopen(req, timeout=60) as resp:
                assert resp.status == 204

    threads = [threading.Thread(target=post, args=(bodies[k::writers],)) for k in range(writers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - started)


def _publish(port: int, payloads: list[bytes], n: int) -> None:
    """The baseline's publisher, in a process of its own (no GIL shared with the subscriber)."""
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-mq-pub")
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    infos = [pub.publish(f"bench/mq/gw-{i % 1000}/up", payloads[i % len(payloads)], qos=1)
             for i in range(n)]
    for info in infos:
        info.wait_for_publish(120)
    pub.loop_stop()
    pub.disconnect()


def mosquitto_rate(port: int, payloads: list[bytes], n: int) -> float:
    """Messages/s from one plain paho publisher process to one paho subscriber, QoS 1."""
    got = threading.Event()
    seen = [0, 0.0, 0.0]

    def on_message(_c: object, _u: object, _m: object) -> None:
        seen[0] += 1
        now = time.perf_counter()
        if seen[0] == 1:
            seen[1] = now
        seen[2] = now
        if seen[0] >= n:
            got.set()

    pub = multiprocessing.get_context("spawn").Process(target=_publish, args=(port, payloads, n))
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-mq-sub")
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("bench/mq/+/up", 1)
    sub.loop_start()
    time.sleep(0.5)
    pub.start()
    got.wait(180)
    pub.join(60)
    sub.loop_stop()
    sub.disconnect()
    if seen[0] < n:
        raise SystemExit(f"paho baseline: {seen[0]} of {n} messages arrived")
    return (n - 1) / (seen[2] - seen[1])


# -- fleet backlogs and checks ---------------------------------------------------------------
def preload(fleet: Fleet, per_gateway: int) -> int:
    """Each gateway's outbox holds ``per_gateway`` PM readings (as after an outage)."""
    pool = [StoredFields(dump_fields(pm_values(i))) for i in range(64)]
    for gw in fleet.gateways:
        sensor = next(s for s in gw.sensors if s.measurement == "particulate")
        gw.preload(Reading(sensor.id, "particulate", pool[i % 64], T0 + i * 1_000_000_000,
                           gw.boot, i, seq=i + 1) for i in range(per_gateway))
    return per_gateway * len(fleet.gateways)


def exactly_once(url: str, db: str, expected: dict[str, int]) -> str:
    """Every gateway has as many points as readings taken, seqs 1..n: "ok", else what is off."""
    landed: dict[str, int] = {}
    top: dict[str, int] = {}
    for m in MEASUREMENTS:
        res = influx_query(url, f'SELECT count(seq), max(seq) FROM "{m}" GROUP BY gateway', db)
        for series in res["results"][0].get("series", []):
            gw = series["tags"]["gateway"]
            _t, c, mx = series["values"][0]
            landed[gw] = landed.get(gw, 0) + int(c)
            top[gw] = max(top.get(gw, 0), int(mx))
    # A gateway that took no reading (a fleet short of CPU may never tick one) has none.
    wrong = [gw for gw, n in expected.items()
             if landed.get(gw, 0) != n or top.get(gw, 0) != n]
    extra = set(landed) - set(expected)
    if wrong or extra:
        return (f"{len(wrong)} gateways off (e.g. {wrong[:3]}:"
                f" {[(landed.get(g), expected[g]) for g in wrong[:3]]}), {len(extra)} unknown")
    return "ok"


def profile_summary(path: Path, top: int = 10) -> list[tuple[str, float, float]]:
    """(function, share of busy time, with callees) for the functions with the most own
    time; busy time leaves out the event loop's wait in epoll and the start-up (imports)."""
    stats = pstats.Stats(str(path))
    entries = stats.stats  # type: ignore[attr-defined]
    idle = {k for k in entries if "epoll" in k[2] or k[2] in IDLE_OR_START}
    total = sum(v[2] for k, v in entries.items() if k not in idle) or 1.0
    rows = sorted(((k, v) for k, v in entries.items() if k not in idle),
                  key=lambda kv: kv[1][2], reverse=True)[:top]
    out = []
    for (file, line, func), (_cc, _nc, tt, ct, _callers) in rows:
        where = f"{Path(file).name}:{line} {func}" if line else func
        out.append((where, tt / total, ct / total))
    return out


# Not the collector's work: imports (compile, unmarshal, exec) and the TLS defaults.
IDLE_OR_START = frozenset({"<built-in method builtins.compile>",
                           "<built-in method marshal.loads>", "<built-in method builtins.exec>",
                           "<method 'set_default_verify_paths' of '_ssl._SSLContext' objects>"})
