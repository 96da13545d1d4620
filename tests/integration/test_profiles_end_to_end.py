"""Every firmware profile end to end: simulator on a pty -> agent -> broker -> collector -> Influx.

One gateway carries one simulated device per case below (every shipped profile,
some in two modes), all real processes on the secure broker as in test_end_to_end.py. The devices
answer the agent's commands byte for byte (queries, mode changes, Modbus reads
through pymodbus); each logs the readings it emitted, and each test checks
that exactly those readings, with exactly those values, landed in InfluxDB,
in every measurement the profile writes. The SPS30 case also checks the
warm-up: the first readings after its start measurement are discarded by the
agent, and counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_agent.decoding import Profile, load_profiles
from simulators.device import SimulatedDevice
from simulators.services import InfluxDB
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROFILES = load_profiles(ROOT / "firmware_profiles")
COUNT = 8  # readings each device emits


@dataclass(frozen=True)
class Case:
    sensor: str
    profile: str
    config: dict[str, Any]  # extra keys for the sensor's agent config
    slave: int | None = None
    warmup: int = 0  # readings the device flags (and the agent discards) after a start


CASES = [
    Case("pm-5003", "pms5003", {}),
    Case("pm-7003", "pms7003", {}),
    Case("pm-a003-passive", "pmsa003", {"mode": "passive", "poll_interval": 0.1}),
    Case("pm-a003-active", "pmsa003", {"mode": "active"}),
    Case("pm-5003t", "pms5003t", {}),
    Case("sds-active", "sds011", {"params": {"working_period_min": 0}}),
    Case("sds-passive", "sds011", {"mode": "passive", "poll_interval": 0.1}),
    Case("sps30", "sps30", {"poll_interval": 0.1, "warmup_s": 0, "warmup_readings": 2}, warmup=2),
    Case("wxt", "wxt530", {"poll_interval": 0.1}),
    Case("noise", "noise_meter_modbus", {"poll_interval": 0.1}),
    Case("climate", "climate_modbus", {"poll_interval": 0.1, "modbus_slave": 7}, slave=7),
    Case("bit", "bus_terminal_modbus", {"poll_interval": 0.1}),
]
# Every shipped profile is covered by at least one case, here or in
# test_profile_families_end_to_end.py (which checks it).


@dataclass
class Run:
    db: str
    influx: InfluxDB
    devices: dict[str, SimulatedDevice]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, secure_broker: SecureFleet,
          influxdb: InfluxDB) -> Iterator[Run]:
    with secure_broker.scope():
        yield from run_fleet(tmp_path_factory, secure_broker, influxdb, CASES)


def run_fleet(tmp_path_factory: pytest.TempPathFactory, secure: SecureFleet,
              influxdb: InfluxDB, cases: list[Case], gateway: str = "gw-profiles",
              ) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("profiles")
    name = f"t_{gateway.replace('-', '_')}_{os.getpid()}"
    devices = {
        case.sensor: SimulatedDevice(
            PROFILES[case.profile], link=tmp / "dev" / case.sensor, interval=0.05,
            seed=hash(case.sensor) & 0xFFFF, keep_values=True, slave=case.slave,
            warmup_frames=case.warmup,
        )
        for case in cases
    }
    site = {"district": "마포구", "site": "상암 시험대", "kind": "dust_zone"}
    secret = secure.add_gateway(gateway, **site)
    collector_cfg = write_yaml(tmp / "collector.yaml", {
        "registry": str(secure.registry_path),
        "mqtt": secure.collector_mqtt(f"c-{name}"),
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": name},
        "batching": {"linger": 0.02},
    })
    agent_cfg = write_yaml(tmp / "agent.yaml", {
        "gateway": {"id": gateway, "secret": secret, "site": site},
        "sensors": [
            {"id": case.sensor, "port": devices[case.sensor].path, "profile": case.profile,
             **case.config}
            for case in cases
        ],
        "outbox": {"path": str(tmp / "outbox.sqlite"), "commit_window": 0.2},
        "uplink": {"mqtt": secure.agent_mqtt(gateway), "batch_size": 50,
                   "ack_timeout": 5},
        "health_interval": 1,
    })
    collector = Proc(["collector.cli", "run", "--config", str(collector_cfg)],
                     tmp / "collector.log").start()
    agent = Proc(["edge_agent.cli", "run", "--config", str(agent_cfg)], tmp / "agent.log").start()
    try:
        # Let the agent open every port first: pyserial flushes the input on open.
        wait_for(lambda: agent.output().count("opened") >= len(cases), 20,
                 "the agent to open every port")
        for device in devices.values():
            device.start(count=COUNT)
        for sensor, device in devices.items():
            device.wait(30)
            assert device.stats.frames == COUNT, (sensor, device.stats)
        yield Run(name, influxdb, devices)
    finally:
        for device in devices.values():
            device.close()
        agent_rc = agent.stop()
        collector_rc = collector.stop()
    assert agent_rc == 0, agent.output()[-3000:]
    assert collector_rc == 0, collector.output()[-3000:]


def _points(run: Run, measurement: str, sensor: str) -> list[dict[str, Any]]:
    return rows(run.influx, run.db,
                f"SELECT * FROM {measurement} WHERE sensor='{sensor}' ORDER BY time")


def _fields(profile: Profile, measurement: str) -> list[str]:
    return [s.name for s in profile.fields if (s.measurement or profile.measurement) == measurement]


@pytest.mark.parametrize("case", CASES, ids=[case.sensor for case in CASES])
def test_every_reading_lands_with_the_values_sent(fleet: Run, case: Case) -> None:
    check_landed(fleet, case)


def check_landed(fleet: Run, case: Case) -> None:
    """Exactly the readings the device emitted, with their values, in every measurement."""
    profile = PROFILES[case.profile]
    emitted = fleet.devices[case.sensor].stats.values
    assert len(emitted) == COUNT
    for measurement in profile.measurements:
        wait_for(lambda m=measurement: len(_points(fleet, m, case.sensor)) >= COUNT, 30,
                 f"{COUNT} {measurement} readings of {case.sensor}")
        points = _points(fleet, measurement, case.sensor)
        assert len(points) == COUNT, "a reading was duplicated or lost"
        names = _fields(profile, measurement)
        for sent, point in zip(emitted, points, strict=True):
            assert {n: point[n] for n in names} == {n: sent[n] for n in names}
        assert {p["model"] for p in points} == {case.profile}


def test_health_counts_commands_replies_and_warmup(fleet: Run) -> None:
    def health(sensor: str) -> dict[str, Any]:
        got = rows(fleet.influx, fleet.db,
                   f"SELECT * FROM sensor_health WHERE sensor='{sensor}'"
                   " ORDER BY time DESC LIMIT 1")
        return got[0] if got else {}

    wait_for(lambda: (health("sps30").get("frames_ok") or 0) >= COUNT + 2, 20,
             "the sps30's health after its readings")
    sps30 = health("sps30")
    assert sps30["warmup_discarded"] == 2  # flagged by the device, discarded by the agent
    assert sps30["commands_sent"] >= COUNT + 1  # start measurement, then one query per reading
    assert sps30["port_open"] is True
    wait_for(lambda: (health("bit").get("replies") or 0) >= COUNT, 20, "the bit's health")
    bit = health("bit")
    assert bit["frames_ok"] >= COUNT  # one reading per poll of two requests
    assert bit["replies"] >= COUNT  # the first answer of each poll
    assert health("pm-5003").get("replies", 0) >= 1  # the answer to "active mode"
