"""A collector's memory under a flood of batches from invented gateway ids.

Runs a real collector process against a local Mosquitto and InfluxDB, then
publishes one batch from each of N invented gateway ids (100,000 by default),
at most ``--window`` unacked at a time so nothing is dropped on the way, and reads
the collector's resident memory (VmRSS in /proc/PID/status) before, during and
after. The baseline is the same collector after 1,000 gateways: memory that
keeps growing past it is held per gateway. Also counts the readings that
landed in InfluxDB, which must be all of them.

    python bench/flood_bench.py                       # 100,000 gateways, alerts off
    python bench/flood_bench.py --alerts              # with the shipped alert rules
    python bench/flood_bench.py --gateways 20000      # quicker
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cityedge.uplink import Topics  # noqa: E402
from simulators.fleet import write_yaml  # noqa: E402
from simulators.services import LocalServices, influx_query, spawn  # noqa: E402

TOPICS = Topics()
T0 = 1_790_000_000_000_000_000
READINGS = 2  # per batch


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def batch(i: int) -> bytes:
    gw = f"gw-flood-{i}"
    return json.dumps({
        "v": 1, "gateway": gw, "epoch": f"{i:016x}", "batch": 1, "sent_ns": T0,
        "clock": {"synced": True, "boot": "b", "mono_ns": 1},
        "site": {"district": "강남구", "site": f"site-{i % 500}", "kind": "dust_zone"},
        "sensors": {"pm-1": {"model": "pms5003"}},
        "readings": [{"seq": s, "sensor": "pm-1", "m": "particulate", "t": T0 + i * 10**6 + s,
                      "boot": "b", "mono": s, "f": {"pm2_5_ugm3": (i + s) % 300}}
                     for s in range(1, READINGS + 1)],
    }).encode()


class Flood:
    """Publishes QoS 1 batches and notes which gateways the collector acked; resends the
    rest at the end, as gateways do after their ack timeout."""

    def __init__(self, port: int) -> None:
        self.acked: set[int] = set()
        self.lo = 0  # the run in progress starts here
        self.acked_in_run = 0
        self.resent = 0
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="flood",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(100)
        self.client.on_message = self._on_ack
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(TOPICS.ack("+"), 1)
        self.client.loop_start()

    def _on_ack(self, _c: object, _u: object, message: paho.MQTTMessage) -> None:
        i = int(message.topic.split("/")[-2].rsplit("-", 1)[1])
        with self.lock:
            if i not in self.acked:
                self.acked.add(i)
                self.acked_in_run += i >= self.lo

    def send(self, i: int) -> None:
        self.client.publish(TOPICS.up(f"gw-flood-{i}"), batch(i), qos=1)

    def run(self, first: int, last: int, window: int, ack_timeout: float = 10.0) -> None:
        """Publish first..last with at most ``window`` unacked; then resend what was not
        acked within ``ack_timeout`` until everything is."""
        with self.lock:
            self.lo = first
            self.acked_in_run = sum(1 for i in self.acked if i >= first)
        for i in range(first, last):
            waited = time.monotonic()
            while i - first - self.acked_in_run >= window:
                if time.monotonic() - waited > ack_timeout:
                    break  # acks lost on the way: go on, the resends below cover them
                time.sleep(0.002)
            self.send(i)
        for _ in range(10):
            deadline = time.monotonic() + ack_timeout
            while self.acked_in_run < last - first and time.monotonic() < deadline:
                time.sleep(0.05)
            missing = [i for i in range(first, last) if i not in self.acked]
            if not missing:
                return
            self.resent += len(missing)
            for i in missing:
                self.send(i)
        raise SystemExit(f"batches never acked: {missing[:10]}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def landed(url: str, db: str) -> int:
    res = influx_query(url, "SELECT count(pm2_5_ugm3) FROM particulate", db)
    series = res["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateways", type=int, default=100_000)
    # Below the collector's paho queue (1,000 outgoing acks): a larger window loses acks.
    ap.add_argument("--window", type=int, default=500, help="unacked batches at most")
    ap.add_argument("--alerts", action="store_true", help="evaluate the shipped alert rules")
    ap.add_argument("--log", type=Path, help="keep the collector's log here")
    args = ap.parse_args()
    n, warm = args.gateways, min(1000, args.gateways)
    with (
        tempfile.TemporaryDirectory(prefix="cityedge-flood-") as d,
        LocalServices(Path(d) / "s") as s,
    ):
        tmp, db = Path(d), "flood"
        config: dict[str, object] = {
            "mqtt": {"host": "127.0.0.1", "port": s.mosquitto.port, "client_id": "flood-c"},
            "writer": {"type": "influxdb_v1", "url": s.influxdb.url, "database": db},
            # No registry: the worst case, where every invented id is taken at its word
            # (with a registry they are refused before any state is kept for them).
            "insecure": True,
            "health_interval": 5,
        }
        if args.alerts:
            rules = sorted(str(p) for p in (ROOT / "configs" / "rules").glob("*.yaml"))
            config["alerts"] = {"rules": rules, "notifiers": [{"type": "log"}]}
        path = write_yaml(tmp / "collector.yaml", config)
        proc = spawn([sys.executable, "-m", "collector.cli", "run", "--config", str(path)],
                     tmp / "collector.log", cwd=ROOT)
        flood: Flood | None = None
        try:
            time.sleep(2.0)
            idle = rss_kib(proc.pid)
            flood = Flood(s.mosquitto.port)
            started = time.perf_counter()
            flood.run(0, warm, args.window)
            after_warm = rss_kib(proc.pid)
            marks = []
            step = max(warm, n // 5)
            for lo in range(warm, n, step):
                flood.run(lo, min(n, lo + step), args.window)
                marks.append((min(n, lo + step), rss_kib(proc.pid)))
            took = time.perf_counter() - started
            time.sleep(6.0)  # a health point, the last writes
            settled = rss_kib(proc.pid)
            got = landed(s.influxdb.url, db)
            resent = flood.resent
            alive = proc.poll() is None
        finally:
            if args.log is not None:
                args.log.write_bytes((tmp / "collector.log").read_bytes())
            if flood is not None:
                flood.close()
            proc.terminate()
            proc.wait(30)
    print(f"\ncollector VmRSS, {n:,} invented gateway ids, one {READINGS}-reading batch each"
          f" ({'alerts on' if args.alerts else 'alerts off'}):\n")
    print(f"| {'after':<30} | {'VmRSS MiB':>10} |")
    print(f"|{'-' * 32}|{'-' * 12}|")
    print(f"| {'start (idle)':<30} | {idle / 1024:>10.1f} |")
    print(f"| {f'{warm:,} gateways (baseline)':<30} | {after_warm / 1024:>10.1f} |")
    for count, kib in marks:
        print(f"| {f'{count:,} gateways':<30} | {kib / 1024:>10.1f} |")
    print(f"| {'6 s later':<30} | {settled / 1024:>10.1f} |")
    print(f"\n{got:,} of {n * READINGS:,} readings landed; {n / took:,.0f} batches/s;"
          f" {resent:,} batches resent for want of an ack;"
          f" collector {'still running' if alive else 'EXITED'}")
    print(json.dumps({"gateways": n, "alerts": args.alerts, "idle_kib": idle,
                      "baseline_kib": after_warm, "final_kib": settled, "landed": got,
                      "expected": n * READINGS, "resent": resent,
                      "alive": alive}))
    return 0 if alive and got == n * READINGS else 1


if __name__ == "__main__":
    sys.exit(main())
