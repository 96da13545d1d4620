"""Chaos: gateways produce continuously while agents, the collector, the broker and the
database are killed, restarted and cut off at random moments. At the end every reading
is in InfluxDB exactly once.

What "produced" means: a frame the simulator wrote while its gateway's agent had the
port open. Bytes written to a port nobody has open are lost on the wire (a real UART
buffers nothing for a closed port, and pyserial flushes on open), so before killing an
agent the test pauses that gateway's devices, and resumes them once the new agent has
the port open again. Everything after the port (decode, outbox, uplink, broker,
collector, database) is hit at random moments.

The broker is a secure one of the test's own (it is killed and restarted) on
the suite's registry and certificates: TLS, the generated password and ACL
files, the agents logging in with their secrets, the collector with its account.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.decoding import load_profiles
from simulators.device import SimulatedDevice
from simulators.services import InfluxDB, Mosquitto, free_port
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.secure_fleet import SecureFleet
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DB = "chaos"
GATEWAYS = ("gw-chaos-a", "gw-chaos-b", "gw-chaos-c")
INFLUX_OUTAGE_S = 20.0


@dataclass
class Gateway:
    id: str
    config: Path
    log: Path
    devices: list[SimulatedDevice]
    proc: Proc | None = None
    paused: threading.Event = field(default_factory=threading.Event)
    opens_seen: int = 0

    def start(self) -> None:
        self.opens_seen = self.log.read_text().count("opened") if self.log.exists() else 0
        self.proc = Proc(["edge_agent.cli", "run", "--config", str(self.config)], self.log).start()
        want = self.opens_seen + len(self.devices)
        wait_for(lambda: self.log.read_text().count("opened") >= want, 30,
                 f"{self.id} to open its ports")


class Chaos:
    def __init__(self, tmp: Path, rng: random.Random, secure: SecureFleet) -> None:
        self.tmp, self.rng = tmp, rng
        (tmp / "mosquitto").mkdir()
        (tmp / "influxdb").mkdir()
        sites = {gw: {"district": "중구", "site": f"site {n}", "kind": "dust_zone"}
                 for n, gw in enumerate(GATEWAYS)}
        secrets = {gw: secure.add_gateway(gw, **site) for gw, site in sites.items()}
        # Reads the registry's files as they are now, every gateway in them.
        self.mosquitto = Mosquitto(tmp / "mosquitto", security=secure.setup.security()).start()
        self.influx = InfluxDB(tmp / "influxdb", port=free_port()).start()
        self.proxy = CuttableProxy(self.mosquitto.address).start()
        self.faults: list[str] = []
        self.stop = threading.Event()
        self.influx_back: threading.Timer | None = None
        profile = load_profiles(ROOT / "firmware_profiles")["pms5003"]
        cfg = write_yaml(tmp / "collector.yaml", {
            "registry": str(secure.registry_path),
            "mqtt": secure.collector_mqtt("chaos-collector",
                                          port=self.mosquitto.collector_port),
            "writer": {"type": "influxdb_v1", "url": self.influx.url, "database": DB,
                       "timeout": 3},
            "batching": {"linger": 0.02},
            "health_interval": 2,
            "shutdown_timeout": 2,
        })
        self.collector_cfg = cfg
        self.collector: Proc | None = None
        self.gateways: list[Gateway] = []
        for n, gw in enumerate(GATEWAYS):
            devices = [
                SimulatedDevice(profile, link=tmp / "dev" / gw / f"pm-{i}",
                                interval=0.05 + 0.05 * i, seed=100 * n + i, keep_values=True)
                for i in range(2)
            ]
            config = write_yaml(tmp / f"{gw}.yaml", {
                "gateway": {"id": gw, "secret": secrets[gw], "site": sites[gw]},
                "sensors": [{"id": f"pm-{i}", "port": d.path, "profile": "pms5003"}
                            for i, d in enumerate(devices)],
                "outbox": {"path": str(tmp / gw / "outbox.sqlite"), "commit_window": 0.2},
                "uplink": {"mqtt": secure.agent_mqtt(gw, port=self.proxy.port, keepalive=5),
                           "batch_size": 50, "ack_timeout": 4, "max_in_flight": 4},
                "health_interval": 2,
                "shutdown_timeout": 2,
            })
            self.gateways.append(Gateway(gw, config, tmp / f"{gw}.log", devices))

    # -- producing ------------------------------------------------------------------
    def produce(self, gw: Gateway) -> None:
        next_at = {id(d): time.monotonic() for d in gw.devices}
        while not self.stop.is_set():
            now = time.monotonic()
            for d in gw.devices:
                if now >= next_at[id(d)]:
                    if not gw.paused.is_set():
                        d.emit_one()
                    next_at[id(d)] = now + d.interval
            time.sleep(0.01)

    # -- faults ---------------------------------------------------------------------------
    def kill_agent(self) -> None:
        gw = self.rng.choice(self.gateways)
        gw.paused.set()
        time.sleep(0.3)  # what was read is committed well within this
        assert gw.proc is not None
        gw.proc.kill()
        time.sleep(self.rng.uniform(0.5, 2.0))
        gw.start()
        gw.paused.clear()
        self.faults.append(f"kill -9 agent {gw.id}")

    def kill_collector(self) -> None:
        assert self.collector is not None
        self.collector.kill()
        time.sleep(self.rng.uniform(0.5, 3.0))
        self.start_collector()
        self.faults.append("kill -9 collector")

    def restart_mosquitto(self) -> None:
        self.mosquitto.kill()
        time.sleep(self.rng.uniform(0.2, 2.0))
        self.mosquitto.start()
        self.faults.append("restart mosquitto (kill -9)")

    def influx_outage(self) -> None:
        if self.influx_back is not None:
            return
        self.influx.stop()
        self.influx_back = threading.Timer(INFLUX_OUTAGE_S, self.influx.start)
        self.influx_back.start()
        self.faults.append(f"influxd stopped for {INFLUX_OUTAGE_S:.0f} s")

    def cut_uplink(self) -> None:
        seconds = self.rng.uniform(3, 8)
        self.proxy.cut(seconds)
        self.faults.append(f"uplink cut for {seconds:.1f} s")

    def start_collector(self) -> None:
        self.collector = Proc(["collector.cli", "run", "--config", str(self.collector_cfg)],
                              self.tmp / "collector.log").start()

    def run_round(self) -> None:
        # While InfluxDB is down, batches exist only in the collector's memory
        # and the broker's session. Restarting the broker and then killing the
        # collector leaves the gateways' outboxes as the only copy: what the
        # promise rests on (a broker restart alone is covered by the collector's
        # memory, a collector kill alone by the broker's session).
        self.influx_outage()
        during: list[Callable[[], None]] = [self.restart_mosquitto, self.kill_collector]
        during.insert(self.rng.randrange(3), self.kill_agent)
        for fault in during:
            time.sleep(self.rng.uniform(1.0, 4.0))
            fault()
        after = [self.kill_agent, self.kill_collector, self.restart_mosquitto, self.cut_uplink,
                 self.kill_agent]
        self.rng.shuffle(after)
        for fault in after:
            time.sleep(self.rng.uniform(1.5, 4.0))
            fault()
        if self.influx_back is not None:
            self.influx_back.join()
            self.influx_back = None

    def close(self) -> None:
        self.stop.set()
        for gw in self.gateways:
            if gw.proc is not None:
                gw.proc.stop(timeout=10)
            for d in gw.devices:
                d.close()
        if self.collector is not None:
            self.collector.stop(timeout=10)
        if self.influx_back is not None:
            self.influx_back.cancel()
        self.proxy.close()
        self.mosquitto.stop()
        self.influx.stop()


def test_chaos_every_reading_lands_exactly_once(tmp_path: Path, request: pytest.FixtureRequest,
                                               secure: SecureFleet) -> None:
    rounds = request.config.getoption("--chaos-rounds")
    seed = request.config.getoption("--chaos-seed") or random.randrange(1 << 30)
    print(f"chaos seed {seed}, {rounds} round(s)")
    chaos = Chaos(tmp_path, random.Random(seed), secure)
    producers = []
    try:
        chaos.start_collector()
        for gw in chaos.gateways:
            gw.start()
            t = threading.Thread(target=chaos.produce, args=(gw,), daemon=True)
            t.start()
            producers.append(t)
        for _ in range(rounds):
            chaos.run_round()
        time.sleep(2)
        chaos.stop.set()
        for t in producers:
            t.join()
        produced = {(gw.id, f"pm-{i}"): d.stats.values
                    for gw in chaos.gateways for i, d in enumerate(gw.devices)}
        total = sum(len(v) for v in produced.values())
        print(f"produced {total} readings; faults: {chaos.faults}")

        def landed() -> int:
            got = rows(chaos.influx, DB, "SELECT count(pm2_5_ugm3) FROM particulate")
            return int(got[0]["count"]) if got else 0

        wait_for(lambda: landed() >= total, 120, f"{total} readings in InfluxDB", step=1.0)
        for (gw_id, sensor), values in produced.items():
            points = rows(chaos.influx, DB,
                          f"SELECT pm2_5_ugm3, pm10_ugm3, count_0_3um_per_0_1l, seq, epoch "
                          f"FROM particulate WHERE gateway='{gw_id}' AND sensor='{sensor}' "
                          f"ORDER BY time")
            assert len(points) == len(values), (gw_id, sensor, len(points), len(values))
            assert len({(p["epoch"], p["seq"]) for p in points}) == len(points)
            for emitted, point in zip(values, points, strict=True):
                assert (point["pm2_5_ugm3"], point["pm10_ugm3"]) == (
                    emitted["pm2_5_ugm3"], emitted["pm10_ugm3"]), (gw_id, sensor)
        # No reading of any series was written twice with different timestamps,
        # and nothing was dropped (the outbox never filled).
        for measurement in ("particulate", "gateway_health", "sensor_health"):
            for r in rows(chaos.influx, DB, f"SELECT count(seq) AS n, count(distinct(seq)) AS d "
                                            f"FROM {measurement} GROUP BY gateway"):
                assert r["n"] == r["d"], (measurement, r)
        assert rows(chaos.influx, DB, "SELECT * FROM outbox_drops") == []
        assert rows(chaos.influx, DB, "SELECT * FROM cityedge_deadletter") == []
        assert any("agent" in f for f in chaos.faults) and any("influxd" in f for f in chaos.faults)
    finally:
        chaos.close()
    for gw in chaos.gateways:
        assert gw.proc is not None and gw.proc.proc is not None
        assert gw.proc.proc.returncode in {0, -signal.SIGKILL}
