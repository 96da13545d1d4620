"""One collector's readings per second and CPU per reading, next to raw InfluxDB ingest.

Runs a real collector process against a local Mosquitto and InfluxDB and publishes
pre-encoded QoS 1 batches of 14-field PMS5003 readings from ``--gateways`` gateway
ids, at most ``--window`` batches unacked at a time (acks awaited, as gateways do).
Times first publish to last end-to-end ack, reads the collector's CPU time from
/proc, and checks that every reading is in InfluxDB exactly once. The baseline, in
the same run against the same InfluxDB: the same points as line protocol in
5,000-point requests from one writer, encoded before the clock starts.

``--before REV`` also runs the collector of git revision REV (exported to a temporary
folder) on the same load, for a before/after table in one run.

    python bench/collector_bench.py                          # 200,000 readings, batches of 100
    python bench/collector_bench.py --batch 10 --readings 50000
    python bench/collector_bench.py --before HEAD~3 --profile prof.out
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cityedge.uplink import Batch, Reading, Topics, encode_batch  # noqa: E402
from collector.ingest import ingest  # noqa: E402
from collector.lineprotocol import encode  # noqa: E402
from simulators.fleet import write_yaml  # noqa: E402
from simulators.services import LocalServices, influx_query, spawn  # noqa: E402

FIELDS = ("pm1_0_ugm3", "pm2_5_ugm3", "pm10_ugm3", "pm1_0_cf1_ugm3", "pm2_5_cf1_ugm3",
          "pm10_cf1_ugm3", "count_0_3um_per_0_1l", "count_0_5um_per_0_1l",
          "count_1_0um_per_0_1l", "count_2_5um_per_0_1l", "count_5_0um_per_0_1l",
          "count_10um_per_0_1l")
T0 = 1_790_000_000_000_000_000
TOPICS = Topics()
CLK_TCK = 100  # os.sysconf("SC_CLK_TCK") on Linux


def payloads(gateways: int, batch: int, readings: int) -> list[tuple[str, bytes]]:
    """(topic, payload) in publish order: round robin over gateways, seqs 1.. per gateway."""
    out = []
    per_gw = [0] * gateways
    for b in range(readings // batch):
        g = b % gateways
        seq0 = per_gw[g]
        per_gw[g] += batch
        rs = tuple(Reading("pm-1", "particulate",
                           {n: (seq0 + i + k) % 500 for k, n in enumerate(FIELDS)},
                           T0 + (seq0 + i) * 1_000_000, "b0", seq0 + i, True, seq0 + i + 1)
                   for i in range(batch))
        gw = f"gw-{g:05d}"
        out.append((TOPICS.up(gw), encode_batch(Batch(
            gw, f"{g:016x}", b, T0, True, "b0", 1,
            {"district": "강남구", "site": f"site-{g % 500}", "kind": "dust_zone"},
            {"pm-1": {"model": "pms5003"}}, rs))))
    return out


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def count(url: str, db: str) -> int:
    res = influx_query(url, "SELECT count(pm2_5_ugm3) FROM particulate", db)
    series = res["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def raw_ingest(url: str, items: list[tuple[str, bytes]]) -> float:
    """Seconds for one writer to post the same points as the collector makes of them."""
    db = "raw"
    influx_query(url, f'CREATE DATABASE "{db}"', post=True)
    points = [p for _, payload in items for p in ingest(payload, None).points]  # type: ignore[union-attr]
    bodies = [encode(points[i:i + 5000]) for i in range(0, len(points), 5000)]
    started = time.perf_counter()
    for body in bodies:
        req = urllib.request.Request(f"{url}/write?db={db}&precision=ns", data=body,
                                     method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 204
    took = time.perf_counter() - started
    assert count(url, db) == len(points)
    return took


class Load:
    """Publishes the batches with at most ``window`` unacked; counts end-to-end acks."""

    def __init__(self, port: int, window: int) -> None:
        self.window = window
        self.acked: set[tuple[str, int]] = set()
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-load",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(window)
        self.client.on_message = self._on_ack
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(TOPICS.ack("+"), 1)
        self.client.loop_start()

    def _on_ack(self, _c: object, _u: object, message: paho.MQTTMessage) -> None:
        doc = json.loads(message.payload)
        with self.cond:
            self.acked.add((doc["gateway"], doc["batch"]))
            self.cond.notify_all()

    def run(self, items: list[tuple[str, bytes]], timeout: float = 30.0) -> float:
        """Seconds from the first publish to the last ack; resends what waits ``timeout``."""
        started = time.perf_counter()
        for sent, (topic, payload) in enumerate(items):
            with self.cond:
                self.cond.wait_for(lambda s=sent: s - len(self.acked) < self.window, timeout)
            self.client.publish(topic, payload, qos=1)
        while True:
            with self.cond:
                if self.cond.wait_for(lambda: len(self.acked) >= len(items), timeout):
                    return time.perf_counter() - started
            for topic, payload in items:  # acks lost: resend the rest, as gateways do
                gw = topic.split("/")[-2]
                if (gw, json.loads(payload)["batch"]) not in self.acked:
                    self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass(frozen=True)
class Result:
    name: str
    seconds: float
    cpu_s: float
    peak_rss_mib: float
    landed: int


def run_collector(name: str, root: Path, tmp: Path, s: LocalServices, *,
                  items: list[tuple[str, bytes]], window: int, profile: Path | None) -> Result:
    db = f"c_{name}"
    config = write_yaml(tmp / f"{db}.yaml", {
        # A group of its own: an earlier run's session must not take a share.
        "mqtt": {"host": "127.0.0.1", "port": s.mosquitto.port, "client_id": f"bench-{db}",
                 "share_group": f"bench-{name}"},
        "writer": {"type": "influxdb_v1", "url": s.influxdb.url, "database": db},
        "insecure": True,  # a plain broker: no registry
        "health_interval": 3600,
    })
    argv = [sys.executable, "-m", "collector.cli", "run", "--config", str(config)]
    if profile is not None:
        argv[1:1] = ["-m", "cProfile", "-o", str(profile)]
    proc = spawn(argv, tmp / f"{db}.log", cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    load: Load | None = None
    try:
        log = tmp / f"{db}.log"
        deadline = time.monotonic() + 60
        while "collector running" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # its subscription, before the first batch (none is kept for a group)
        load = Load(s.mosquitto.port, window)
        before = cpu_s(proc.pid)
        took = load.run(items)
        used = cpu_s(proc.pid) - before
        peak = rss_mib(proc.pid)
    finally:
        if load is not None:
            load.close()
        proc.terminate()  # SIGTERM: cProfile writes its file on the way out
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return Result(name, took, used, peak, count(s.influxdb.url, db))


def export(rev: str, into: Path) -> Path:
    """The tree of git revision ``rev``, as files under ``into``."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=100, help="readings per batch")
    ap.add_argument("--gateways", type=int, default=200)
    ap.add_argument("--window", type=int, default=400, help="unacked batches at most")
    ap.add_argument("--before", metavar="REV", help="also run the collector of this revision")
    ap.add_argument("--profile", type=Path, help="cProfile the (current) collector into this file")
    args = ap.parse_args()
    items = payloads(args.gateways, args.batch, args.readings)
    n = len(items) * args.batch
    with (
        tempfile.TemporaryDirectory(prefix="cityedge-cbench-") as d,
        LocalServices(Path(d) / "s") as s,
    ):
        tmp = Path(d)
        raw_s = raw_ingest(s.influxdb.url, items)
        results = []
        if args.before:
            results.append(run_collector("before", export(args.before, tmp / "before"), tmp, s,
                                         items=items, window=args.window, profile=None))
        results.append(run_collector("now", ROOT, tmp, s, items=items, window=args.window,
                                     profile=args.profile))
    print(f"\n{n:,} readings, {args.batch} per batch, {args.gateways} gateways,"
          f" {args.window} batches unacked at most\n")
    print(f"| {'path':<46} | {'readings/s':>10} | {'vs raw':>6} | {'CPU us/reading':>14} |"
          f" {'peak RSS MiB':>12} | {'landed':>9} |")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 8}|{'-' * 16}|{'-' * 14}|{'-' * 11}|")
    print(f"| {'raw line protocol into InfluxDB, 1 writer':<46} | {n / raw_s:>10,.0f} |"
          f" {1:>5.2f}x | {'':>14} | {'':>12} | {n:>9,} |")
    for r in results:
        label = f"collector ({r.name}{' ' + args.before if r.name == 'before' else ''})"
        print(f"| {label:<46} | {n / r.seconds:>10,.0f} | {raw_s / r.seconds:>5.2f}x |"
              f" {r.cpu_s / n * 1e6:>14.1f} | {r.peak_rss_mib:>12.1f} | {r.landed:>9,} |")
    print(json.dumps({"readings": n, "batch": args.batch, "raw_per_s": round(n / raw_s),
                      **{r.name: {"per_s": round(n / r.seconds),
                                  "cpu_us": round(r.cpu_s / n * 1e6, 1),
                                  "peak_rss_mib": round(r.peak_rss_mib, 1),
                                  "landed": r.landed} for r in results}}))
    return 0 if all(r.landed == n for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
