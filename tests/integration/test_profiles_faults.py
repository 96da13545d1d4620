"""Robustness end to end: noisy lines, damaged frames, stalls and an unplugged device.

Real processes on the secure broker, as in test_end_to_end.py. The simulators inject the faults on
the wire; every reading a device logged as intact must reach InfluxDB exactly
once with its values, nothing else may, and the gateway's sensor_health
readings must show what happened (rejected frames, skipped bytes, reply
timeouts, the port lost and reopened).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.decoding import load_profiles
from simulators.device import Faults, SimulatedDevice
from simulators.services import InfluxDB
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROFILES = load_profiles(ROOT / "firmware_profiles")


def _health(influx: InfluxDB, db: str, sensor: str) -> dict[str, Any]:
    got = rows(influx, db, f"SELECT * FROM sensor_health WHERE sensor='{sensor}' "
                           "ORDER BY time DESC LIMIT 1")
    return got[0] if got else {}


def _landed(influx: InfluxDB, db: str, measurement: str, sensor: str) -> list[dict[str, Any]]:
    return rows(influx, db, f"SELECT * FROM {measurement} WHERE sensor='{sensor}' ORDER BY time")


def test_faults_and_an_unplug_lose_nothing_intact(
    tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB
) -> None:
    db = f"t_faults_{os.getpid()}"
    site = {"district": "종로구", "site": "세종로 01-147", "kind": "bus_stop"}
    secret = secure.add_gateway("gw-faults", **site)
    devices = {
        "pm-noisy": SimulatedDevice(
            PROFILES["pms5003"], link=tmp_path / "dev" / "pm-noisy", interval=0.03, seed=11,
            keep_values=True, faults=Faults(noise=0.3, bad_checksum=0.15, drop=0.15)),
        "sds-unplugged": SimulatedDevice(
            PROFILES["sds011"], link=tmp_path / "dev" / "sds-unplugged", interval=0.05, seed=12,
            keep_values=True),
        "noise-stalling": SimulatedDevice(
            PROFILES["noise_meter_modbus"], link=tmp_path / "dev" / "noise-stalling",
            interval=0.05, seed=13, keep_values=True,
            faults=Faults(bad_checksum=0.15, stall=0.1, stall_s=0.4)),
    }
    sensors = [
        {"id": "pm-noisy", "port": devices["pm-noisy"].path, "profile": "pms5003"},
        {"id": "sds-unplugged", "port": devices["sds-unplugged"].path, "profile": "sds011",
         "mode": "passive", "poll_interval": 0.25},
        {"id": "noise-stalling", "port": devices["noise-stalling"].path,
         "profile": "noise_meter_modbus", "poll_interval": 0.1},
    ]
    collector = Proc(["collector.cli", "run", "--config", str(write_yaml(
        tmp_path / "collector.yaml", {
            "registry": str(secure.registry_path),
            "mqtt": secure.collector_mqtt(f"c-{db}"),
            "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": db},
            "batching": {"linger": 0.02},
        }))], tmp_path / "collector.log").start()
    agent = Proc(["edge_agent.cli", "run", "--config", str(write_yaml(tmp_path / "agent.yaml", {
        "gateway": {"id": "gw-faults", "secret": secret, "site": site},
        "sensors": sensors,
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "commit_window": 0.2},
        "uplink": {"mqtt": secure.agent_mqtt("gw-faults"), "batch_size": 20, "ack_timeout": 5},
        "health_interval": 1,
    }))], tmp_path / "agent.log").start()
    try:
        wait_for(lambda: agent.output().count("opened") >= len(devices), 20, "ports open")
        devices["pm-noisy"].start(count=40)
        devices["noise-stalling"].start(count=15)
        unplugged = devices["sds-unplugged"].start(count=12)
        wait_for(lambda: unplugged.stats.frames >= 5, 20, "5 polled SDS011 readings")
        unplugged.unplug()  # the USB adapter is pulled out ...
        time.sleep(1.5)
        unplugged.plug()  # ... and put back: same /dev/serial/by-id link, new tty
        for device in devices.values():
            device.wait(60)
        assert [d.stats.frames for d in devices.values()] == [40, 12, 15], (
            {name: d.stats for name, d in devices.items()}, agent.output()[-2000:])
        noisy = devices["pm-noisy"].stats
        assert noisy.corrupted + noisy.dropped > 0 and noisy.noise_bytes > 0
        assert devices["noise-stalling"].stats.stalls + devices["noise-stalling"].stats.corrupted

        for sensor, measurement, field in (("pm-noisy", "particulate", "pm2_5_ugm3"),
                                           ("sds-unplugged", "particulate", "pm10_ugm3"),
                                           ("noise-stalling", "noise", "laeq_1min_dba")):
            sent = devices[sensor].stats.values
            count = len(sent)
            wait_for(lambda s=sensor, m=measurement, n=count: len(_landed(influxdb, db, m, s)) >= n,
                     30, f"{count} readings of {sensor}")
            time.sleep(0.5)  # anything extra would have landed too
            points = _landed(influxdb, db, measurement, sensor)
            assert len(points) == len(sent), (sensor, "a reading was lost or duplicated")
            assert [p[field] for p in points] == [v[field] for v in sent], sensor

        wait_for(lambda: (_health(influxdb, db, "sds-unplugged").get("port_reopens") or 0) >= 1,
                 15, "the unplug in sensor_health")
        sds = _health(influxdb, db, "sds-unplugged")
        assert sds["port_errors"] >= 1 and sds["port_open"] is True
        pm = _health(influxdb, db, "pm-noisy")
        assert (pm.get("rejected_bad_checksum") or 0) + (pm.get("rejected_bad_length") or 0) >= 1
        assert pm["bytes_skipped"] >= 1 and pm["frames_ok"] >= 40
        noise = _health(influxdb, db, "noise-stalling")
        assert noise["reply_timeouts"] >= 1
    finally:
        for device in devices.values():
            device.close()
        agent_rc, collector_rc = agent.stop(), collector.stop()
    assert agent_rc == 0, agent.output()[-3000:]
    assert collector_rc == 0, collector.output()[-3000:]
    assert "reopening with backoff" in agent.output()
