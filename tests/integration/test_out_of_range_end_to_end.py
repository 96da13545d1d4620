"""Extreme readings are data, end to end: a saturated PMS5003's frame lands in InfluxDB, flagged.

A pty plays the sensor and writes, byte for byte, a PMS5003 frame with PM1.0 =
1245 ug/m3 (past the manual's 1000, checksum right: tests/profiles/pms5003/
heavy_smoke_pm1_0_1245_is_kept_flagged.yaml) and then an ordinary one. Real
agent, secure broker, collector and InfluxDB, as in test_profiles_faults.py.
Both readings land; the extreme one carries the field out_of_range and the tag
quality=out_of_range, the ordinary one neither, and sensor_health counts one
reading out of range.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simulators.pty_device import PtyDevice
from simulators.services import InfluxDB
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration

SMOKE = bytes.fromhex("42 4D 00 1C 05 1E 07 51 08 03 04 DD 06 F4 07 9D FF FF 8C A0 53 FC 0B 54"
                      " 01 9A 00 5F 00 00 09 82")
CLEAR = bytes.fromhex("42 4D 00 1C 00 0C 00 12 00 15 00 0C 00 12 00 15 08 37 02 67 00 60 00 07"
                      " 00 02 00 00 00 00 02 22")


def test_a_reading_past_the_datasheet_range_lands_flagged(
    tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB
) -> None:
    db = f"t_extreme_{os.getpid()}"
    site = {"district": "강남구", "site": "역삼초등학교 옥상", "kind": "dust_zone"}
    secret = secure.add_gateway("gw-extreme", **site)
    device = PtyDevice(tmp_path / "dev" / "pm-smoke")
    collector = Proc(["collector.cli", "run", "--config", str(write_yaml(
        tmp_path / "collector.yaml", {
            "registry": str(secure.registry_path),
            "mqtt": secure.collector_mqtt(f"c-{db}"),
            "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": db},
            "batching": {"linger": 0.02},
        }))], tmp_path / "collector.log").start()
    agent = Proc(["edge_agent.cli", "run", "--config", str(write_yaml(tmp_path / "agent.yaml", {
        "gateway": {"id": "gw-extreme", "secret": secret, "site": site},
        "sensors": [{"id": "pm-smoke", "port": device.path, "profile": "pms5003"}],
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "commit_window": 0.1},
        "uplink": {"mqtt": secure.agent_mqtt("gw-extreme"), "batch_size": 10, "ack_timeout": 5},
        "health_interval": 1,
    }))], tmp_path / "agent.log").start()
    try:
        wait_for(lambda: "opened" in agent.output(), 20, "the port open")
        assert device.write(SMOKE + CLEAR) == len(SMOKE) + len(CLEAR)
        query = "SELECT * FROM particulate WHERE sensor='pm-smoke' ORDER BY time"
        wait_for(lambda: len(rows(influxdb, db, query)) >= 2, 30, "both readings")
        smoke, clear = rows(influxdb, db, query)
        assert smoke["pm1_0_ugm3"] == 1245 and smoke["pm10_ugm3"] == 1949
        assert smoke["quality"] == "out_of_range"
        assert smoke["out_of_range"] == ("pm1_0_cf1_ugm3,pm2_5_cf1_ugm3,pm10_cf1_ugm3,"
                                         "pm1_0_ugm3,pm2_5_ugm3,pm10_ugm3")
        assert clear["pm1_0_ugm3"] == 12 and not clear.get("quality")
        assert clear.get("out_of_range") is None
        within = rows(influxdb, db, "SELECT pm1_0_ugm3 FROM particulate WHERE quality = ''")
        assert [r["pm1_0_ugm3"] for r in within] == [12]
        health = "SELECT * FROM sensor_health WHERE sensor='pm-smoke' ORDER BY time DESC LIMIT 1"
        wait_for(lambda: (rows(influxdb, db, health) or [{}])[0].get("readings_out_of_range") == 1,
                 15, "readings_out_of_range in sensor_health")
        assert not (rows(influxdb, db, health)[0].get("rejected_out_of_range"))
    finally:
        device.unplug()
        agent_rc, collector_rc = agent.stop(), collector.stop()
    assert agent_rc == 0, agent.output()[-3000:]
    assert collector_rc == 0, collector.output()[-3000:]
