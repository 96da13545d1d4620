"""How fast a gateway's backlog drains into InfluxDB, next to raw InfluxDB ingest.

Fills an outbox with N PMS5003 readings (as after an outage), then runs a real
agent process and a real collector process against a local Mosquitto and
InfluxDB and times how long until all N are in InfluxDB. The baseline, in the
same run and against the same InfluxDB, posts the same N points as line
protocol in 5,000-point batches from one client: the ceiling the whole path
can approach.

    python bench/drain_bench.py                   # 200,000 readings
    python bench/drain_bench.py --readings 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cityedge.uplink import Reading  # noqa: E402
from collector.lineprotocol import Point, encode  # noqa: E402
from edge_agent.outbox import Outbox  # noqa: E402
from simulators.fleet import write_yaml  # noqa: E402
from simulators.services import LocalServices, influx_query, spawn  # noqa: E402

FIELDS = ("pm1_0_ugm3", "pm2_5_ugm3", "pm10_ugm3", "pm1_0_cf1_ugm3", "pm2_5_cf1_ugm3",
          "pm10_cf1_ugm3", "count_0_3um_per_0_1l", "count_0_5um_per_0_1l",
          "count_1_0um_per_0_1l", "count_2_5um_per_0_1l", "count_5_0um_per_0_1l",
          "count_10um_per_0_1l")
T0 = 1_790_000_000_000_000_000


def values(i: int) -> dict[str, int]:
    return {name: (i * 7 + k) % 500 for k, name in enumerate(FIELDS)}


def count(url: str, db: str) -> int:
    res = influx_query(url, "SELECT count(pm2_5_ugm3) FROM particulate", db)
    series = res["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def baseline(url: str, n: int) -> float:
    db = "baseline"
    influx_query(url, f'CREATE DATABASE "{db}"', post=True)
    tags = {"district": "강남구", "site": "bench", "site_kind": "dust_zone", "gateway": "gw-b",
            "sensor": "pm-1", "model": "pms5003"}
    started = time.perf_counter()
    for lo in range(0, n, 5000):
        points = [Point("particulate", tags, {**values(i), "seq": i + 1, "epoch": "0" * 16},
                        T0 + i * 1_000_000) for i in range(lo, min(n, lo + 5000))]
        req = urllib.request.Request(f"{url}/write?db={db}&precision=ns", data=encode(points),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 204
    return time.perf_counter() - started


def fill(path: Path, n: int) -> float:
    started = time.perf_counter()
    outbox = Outbox(path)
    for lo in range(0, n, 10_000):
        outbox.append([Reading("pm-1", "particulate", values(i), T0 + i * 1_000_000, "old-boot", 0)
                       for i in range(lo, min(n, lo + 10_000))])
    outbox.close()
    return time.perf_counter() - started


def drain(tmp: Path, services: LocalServices, n: int, batch_size: int, in_flight: int) -> float:
    db = "drain"
    mqtt, url = services.mosquitto.address, services.influxdb.url
    collector = write_yaml(tmp / "collector.yaml", {
        "mqtt": {"host": mqtt[0], "port": mqtt[1], "client_id": "bench-collector"},
        "insecure": True,  # a plain broker: no registry
        "writer": {"type": "influxdb_v1", "url": url, "database": db},
    })
    agent = write_yaml(tmp / "agent.yaml", {
        "gateway": {"id": "gw-bench", "site": {"district": "강남구", "site": "bench",
                                               "kind": "dust_zone"}},
        # The sensor the backlog came from; its port is gone (as after an outage with
        # the sensor unplugged): the agent retries opening it and drains meanwhile.
        "sensors": [{"id": "pm-1", "port": str(tmp / "no-such-port"), "profile": "pms5003"}],
        "outbox": {"path": str(tmp / "outbox.sqlite"), "max_size_mb": 4096},
        "uplink": {"mqtt": {"host": mqtt[0], "port": mqtt[1]}, "batch_size": batch_size,
                   "max_in_flight": in_flight, "ack_timeout": 60},
        "clock_synced": True,
        "health_interval": 3600,
    })
    procs = [spawn([sys.executable, "-m", "collector.cli", "run", "--config", str(collector)],
                   tmp / "collector.log", cwd=ROOT)]
    time.sleep(1.0)
    started = time.perf_counter()
    procs.append(spawn([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(agent)],
                       tmp / "agent.log", cwd=ROOT))
    try:
        while count(url, db) < n:
            if any(p.poll() is not None for p in procs):
                raise SystemExit("a process exited:\n" + (tmp / "agent.log").read_text()[-2000:])
            time.sleep(0.2)
        return time.perf_counter() - started
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--in-flight", type=int, default=4)
    args = ap.parse_args()
    n = args.readings
    with (
        tempfile.TemporaryDirectory(prefix="cityedge-drain-") as d,
        LocalServices(Path(d) / "s") as s,
    ):
        tmp = Path(d)
        fill_s = fill(tmp / "outbox.sqlite", n)
        base_s = baseline(s.influxdb.url, n)
        drain_s = drain(tmp, s, n, args.batch_size, args.in_flight)
    rows = [
        ("raw InfluxDB ingest (5,000-point line protocol, 1 client)", base_s),
        (f"backlog drain: outbox -> agent -> MQTT -> collector -> InfluxDB "
         f"(batch {args.batch_size}, {args.in_flight} in flight)", drain_s),
    ]
    print(f"\n{n:,} readings (outbox filled in {fill_s:.1f} s)\n")
    print(f"| {'path':<88} | {'seconds':>8} | {'readings/s':>11} | {'vs raw':>7} |")
    print(f"|{'-' * 90}|{'-' * 10}|{'-' * 13}|{'-' * 9}|")
    for name, secs in rows:
        print(f"| {name:<88} | {secs:>8.1f} | {n / secs:>11,.0f} | {base_s / secs:>6.2f}x |")
    print(json.dumps({"readings": n, "raw_s": round(base_s, 2), "drain_s": round(drain_s, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
