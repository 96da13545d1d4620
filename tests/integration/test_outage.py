"""After an outage: live readings first, the backlog behind them; a full outbox drops
readings by policy and every drop is recorded exactly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge_agent.decoding import load_profiles
from simulators.device import SimulatedDevice
from simulators.services import InfluxDB
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.secure_fleet import SecureFleet
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def start(tmp: Path, name: str, secure: SecureFleet, influxdb: InfluxDB, proxy: CuttableProxy,
          *, gateway: str, device: SimulatedDevice, outbox: dict[str, object],
          batch_size: int = 100, linger: float = 0.01,
          health_interval: float = 3600) -> tuple[Proc, Proc]:
    """The agent reaches the broker through ``proxy`` (TLS end to end, the proxy sees bytes)."""
    site = {"district": "서초구", "site": "s", "kind": "dust_zone"}
    secret = secure.add_gateway(gateway, **site)
    collector = write_yaml(tmp / "collector.yaml", {
        "registry": str(secure.registry_path),
        "mqtt": secure.collector_mqtt(f"c-{name}"),
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": name},
        "batching": {"linger": linger},
    })
    agent = write_yaml(tmp / "agent.yaml", {
        "gateway": {"id": gateway, "secret": secret, "site": site},
        "sensors": [{"id": "pm-1", "port": device.path, "profile": "pms5003"}],
        "outbox": {"path": str(tmp / "outbox.sqlite"), "commit_window": 0.2, **outbox},
        "uplink": {"mqtt": secure.agent_mqtt(gateway, port=proxy.port, keepalive=5,
                                             reconnect_max=1),
                   "batch_size": batch_size, "max_in_flight": 2, "ack_timeout": 5},
        "health_interval": health_interval,
    })
    c = Proc(["collector.cli", "run", "--config", str(collector)], tmp / "collector.log").start()
    a = Proc(["edge_agent.cli", "run", "--config", str(agent)], tmp / "agent.log").start()
    wait_for(lambda: "opened" in a.output(), 15, "the agent to open its port")
    return c, a


def count(influxdb: InfluxDB, db: str, where: str = "") -> int:
    """Readings landed; 0 until the collector has created its database (start() waits for
    the agent only, and a collector can take longer to come up than an agent)."""
    if not [r for r in rows(influxdb, "", "SHOW DATABASES") if r["name"] == db]:
        return 0
    got = rows(influxdb, db, f"SELECT count(pm2_5_ugm3) FROM particulate {where}")
    return int(got[0]["count"]) if got else 0


def test_live_readings_land_within_seconds_while_the_backlog_drains(
    tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, unique_name: str
) -> None:
    profile = load_profiles(ROOT / "firmware_profiles")["pms5003"]
    device = SimulatedDevice(profile, link=tmp_path / "pm-1", interval=0.004, seed=3)
    proxy = CuttableProxy(secure.broker.address).start()
    # Small batches and a slow collector make the drain take several seconds, so a
    # fresh reading can only be early if it overtakes the backlog.
    collector, agent = start(tmp_path, unique_name, secure, influxdb, proxy,
                             gateway="gw-out-live", device=device, outbox={}, batch_size=50,
                             linger=0.1)
    try:
        device.start()
        wait_for(lambda: count(influxdb, unique_name) > 0, 15, "first readings")
        proxy.cut(10)  # about 2,500 readings pile up in the outbox
        time.sleep(10.5)
        backlog_at_reconnect = device.stats.frames - count(influxdb, unique_name)
        reconnected_ns = time.time_ns()
        fresh = f"WHERE time > {reconnected_ns + 2 * 10**9}"  # taken 2 s after the link came back

        wait_for(lambda: count(influxdb, unique_name, fresh) > 0, 10, "a fresh reading")
        latency_s = (time.time_ns() - reconnected_ns) / 1e9 - 2
        still_waiting = device.stats.frames - count(influxdb, unique_name)
        print(f"backlog {backlog_at_reconnect}, fresh reading landed {latency_s:.1f} s after it "
              f"was taken, {still_waiting} readings still waiting then")
        assert backlog_at_reconnect > 1000
        assert latency_s < 5
        assert still_waiting > 100, "the fresh reading did not overtake the backlog"
        device.stop()
        total = device.stats.frames
        wait_for(lambda: count(influxdb, unique_name) >= total, 60, "the backlog to drain")
        assert count(influxdb, unique_name) == total
    finally:
        device.close()
        agent.stop()
        collector.stop()
        proxy.close()


def test_a_full_outbox_drops_oldest_and_records_exactly_what_it_dropped(
    tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, unique_name: str
) -> None:
    profile = load_profiles(ROOT / "firmware_profiles")["pms5003"]
    device = SimulatedDevice(profile, link=tmp_path / "pm-1", interval=0.005, seed=4,
                             keep_values=True)
    proxy = CuttableProxy(secure.broker.address).start()
    # About 430 bytes a reading: 0.1 MB holds some 240 of them.
    # Open gaps become outbox_drops readings every health interval.
    collector, agent = start(tmp_path, unique_name, secure, influxdb, proxy,
                             gateway="gw-out-full", device=device, outbox={"max_size_mb": 0.1},
                             health_interval=1)
    try:
        proxy.cut(3600)
        time.sleep(1.5)  # the link is seen down before anything is sent
        device.start(count=1500)
        device.wait(30)
        time.sleep(1)
        proxy.cut(0)

        def dropped() -> int:
            got = rows(influxdb, unique_name,
                       "SELECT sum(dropped) FROM outbox_drops WHERE sensor = 'pm-1'"
                       " AND of_measurement = 'particulate'")
            return int(got[0]["sum"]) if got else 0

        # Every frame on the line is a reading, warm-up frames included: the agent
        # discards warm-up only after it woke the sensor itself.
        produced = device.stats.frames + device.stats.warmup
        try:
            wait_for(lambda: count(influxdb, unique_name) + dropped() >= produced, 60,
                     "every reading landed or recorded as dropped")
        finally:
            print(f"landed {count(influxdb, unique_name)}, dropped {dropped()}, "
                  f"produced {device.stats.frames} + {device.stats.warmup} warm-up")
        landed = rows(influxdb, unique_name, "SELECT seq FROM particulate")
        gaps = rows(influxdb, unique_name, "SELECT * FROM outbox_drops WHERE sensor = 'pm-1'"
                    " AND of_measurement = 'particulate'")
        dropped_seqs = set()
        for g in gaps:
            dropped_seqs |= set(range(g["first_seq"], g["last_seq"] + 1))
        landed_seqs = {r["seq"] for r in landed}
        print(f"{len(landed_seqs)} landed, {dropped()} dropped in {len(gaps)} gaps")
        # Nothing vanished silently: every reading landed or is counted as dropped,
        # no landed reading lies inside a recorded gap, and the oldest went first.
        assert dropped() > 0
        assert len(landed_seqs) + dropped() == produced
        assert not landed_seqs & dropped_seqs
        assert min(landed_seqs) > max(dropped_seqs)
    finally:
        device.close()
        agent.stop()
        collector.stop()
        proxy.close()
