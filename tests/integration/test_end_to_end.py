"""The whole path: PMS5003 simulator -> pty -> agent -> Mosquitto -> collector -> InfluxDB.

Every stage is the real one, each service and command a real process, on the
suite's secure broker: the agent logs in with its registry secret over TLS, the
collector with its account and the registry, under the generated ACLs. The
check is the product's promise: every frame the simulator wrote is in
InfluxDB exactly once, with the values it wrote.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from edge_agent.decoding import load_profiles
from simulators.device import SimulatedDevice
from simulators.services import InfluxDB
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ("pm1_0_ugm3", "pm2_5_ugm3", "pm10_ugm3", "count_0_3um_per_0_1l")


def configs(tmp: Path, name: str, secure: SecureFleet, influxdb: InfluxDB, port: str, *,
            gateway: str, health_interval: float = 3600) -> tuple[Path, Path]:
    site = {"district": "강남구", "site": "역삼동 정류장", "kind": "dust_zone"}
    secret = secure.add_gateway(gateway, **site)
    collector = write_yaml(tmp / "collector.yaml", {
        "registry": str(secure.registry_path),
        "mqtt": secure.collector_mqtt(f"c-{name}"),
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": name},
        "batching": {"linger": 0.02},
    })
    agent = write_yaml(tmp / "agent.yaml", {
        "gateway": {"id": gateway, "secret": secret, "site": site},
        "sensors": [{"id": "pm-1", "port": port, "profile": "pms5003"}],
        "outbox": {"path": str(tmp / "outbox.sqlite"), "commit_window": 0.2},
        "uplink": {"mqtt": secure.agent_mqtt(gateway), "batch_size": 7, "ack_timeout": 5},
        "health_interval": health_interval,
    })
    return collector, agent


def test_every_emitted_reading_lands_once_with_its_values(
    tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, unique_name: str
) -> None:
    profile = load_profiles(ROOT / "firmware_profiles")["pms5003"]
    device = SimulatedDevice(profile, link=tmp_path / "dev" / "pm-1", interval=0.02, seed=7,
                             keep_values=True)
    collector_cfg, agent_cfg = configs(tmp_path, unique_name, secure, influxdb, device.path,
                                       gateway="gw-e2e", health_interval=1)
    collector = Proc(["collector.cli", "run", "--config", str(collector_cfg)],
                     tmp_path / "collector.log").start()
    agent = Proc(["edge_agent.cli", "run", "--config", str(agent_cfg)],
                 tmp_path / "agent.log").start()
    try:
        count = 60
        # Let the agent open the port first: pyserial flushes the input on open.
        wait_for(lambda: "opened" in agent.output(), 15, "the agent to open the port")
        device.start(count=count)
        device.wait(30)
        assert device.stats.frames == count

        def landed() -> int:
            got = rows(influxdb, unique_name,
                       "SELECT count(pm2_5_ugm3) FROM particulate WHERE gateway='gw-e2e'")
            return int(got[0]["count"]) if got else 0

        wait_for(lambda: landed() >= count, 30, f"{count} readings in InfluxDB")
        points = rows(influxdb, unique_name,
                      "SELECT * FROM particulate WHERE gateway='gw-e2e' ORDER BY time")
        assert len(points) == count, "a reading was duplicated or lost"
        assert len({p["seq"] for p in points}) == count
        for emitted, point in zip(device.stats.values, points, strict=True):
            for name in FIELDS:
                assert point[name] == emitted[name], (name, emitted, point)
        first = points[0]
        assert first["district"] == "강남구"
        assert first["site"] == "역삼동 정류장"
        assert first["site_kind"] == "dust_zone"
        assert first["sensor"] == "pm-1"
        assert first["model"] == "pms5003"
        assert isinstance(first["epoch"], str) and len(first["epoch"]) == 16
        # Timed by the gateway's clock, or (no NTP here) corrected from the boot's
        # anchor on the collector's clock; never sent with an undecided time.
        now = time.time_ns()
        for p in points:
            assert p.get("time_unverified") is None
            assert abs(p["time"] - now) < 120 * 10**9

        # The gateway's health series travels the same way.
        wait_for(lambda: bool(rows(influxdb, unique_name,
                                   "SELECT last(outbox_readings) FROM gateway_health")),
                 15, "a gateway_health point")
        health = rows(influxdb, unique_name, "SELECT * FROM sensor_health WHERE sensor='pm-1'")
        assert health and health[-1]["frames_ok"] >= 1

        # Acked readings leave the outbox (health readings may still be on their way).
        def outbox_drained() -> bool:
            db = sqlite3.connect(tmp_path / "outbox.sqlite")
            n = db.execute("SELECT count(*) FROM readings WHERE sensor='pm-1'").fetchone()[0]
            db.close()
            return bool(n == 0)

        wait_for(outbox_drained, 15, "the outbox to drain")
    finally:
        device.close()
        agent_rc = agent.stop()
        collector_rc = collector.stop()
    assert agent_rc == 0, agent.output()[-3000:]
    assert collector_rc == 0, collector.output()[-3000:]


def test_readings_of_a_sensor_removed_from_the_config_still_land_under_their_model(
    tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, unique_name: str
) -> None:
    """An installer takes a sensor out of the config while the outbox still holds its
    readings (the uplink was down): they land in their measurement with the model and
    tags they were read with, not in the dead letters as an unknown sensor."""
    profile = load_profiles(ROOT / "firmware_profiles")["pms5003"]
    device = SimulatedDevice(profile, link=tmp_path / "dev" / "pm-1", interval=0.02, seed=9)
    collector_cfg, agent_cfg = configs(tmp_path, unique_name, secure, influxdb, device.path,
                                       gateway="gw-e2e-removed")
    offline = yaml.safe_load(agent_cfg.read_text())
    offline["sensors"][0]["tags"] = {"pole": "A-12"}
    offline["uplink"]["mqtt"]["port"] = 1  # nothing listens: readings stay in the outbox
    write_yaml(agent_cfg, offline)
    agent = Proc(["edge_agent.cli", "run", "--config", str(agent_cfg)],
                 tmp_path / "agent.log").start()
    try:
        wait_for(lambda: "opened" in agent.output(), 15, "the agent to open the port")
        device.start(count=30)
        device.wait(30)
        time.sleep(0.5)  # past the commit window
    finally:
        device.close()
        assert agent.stop() == 0, agent.output()[-2000:]
    write_yaml(agent_cfg, {**offline, "sensors": [],
                           "uplink": {**offline["uplink"],
                                      "mqtt": {**offline["uplink"]["mqtt"],
                                               "port": secure.broker.port}}})
    collector = Proc(["collector.cli", "run", "--config", str(collector_cfg)],
                     tmp_path / "collector.log").start()
    agent = Proc(["edge_agent.cli", "run", "--config", str(agent_cfg)],
                 tmp_path / "agent.log").start()
    try:
        def landed() -> list[dict[str, object]]:
            try:
                return rows(influxdb, unique_name, "SELECT pm2_5_ugm3, model, pole FROM"
                            " particulate WHERE gateway='gw-e2e-removed'")
            except AssertionError as exc:  # the collector creates the database on first write
                if "database not found" in str(exc):
                    return []
                raise

        wait_for(lambda: len(landed()) >= 30, 30, "30 readings in InfluxDB")
        got = landed()
        assert len(got) == 30 and {(p["model"], p["pole"]) for p in got} == {("pms5003", "A-12")}
        assert rows(influxdb, unique_name, "SELECT * FROM cityedge_deadletter") == []
    finally:
        agent.stop()
        collector.stop()
