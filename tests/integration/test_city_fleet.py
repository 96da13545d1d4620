"""The simulated fleet (simulators/city_fleet) against real Mosquitto, collector and InfluxDB.

A fleet gateway must be a faithful stand-in for a real agent: for the same
readings, in the same outbox (same epoch and seqs), both produce the very same
InfluxDB points. And the fleet's delivery keeps the promise: with an outage in
the middle, every reading taken lands exactly once. The fleet speaks plain
MQTT to the suite's anonymous broker; its collectors run ``insecure: true``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.outbox import Outbox
from simulators.city_fleet import Fault, Fleet, FleetOptions, first
from simulators.city_fleet.fleet import profile_values
from simulators.city_fleet.gateway import SimGateway
from simulators.city_fleet.sites import KIND_SENSORS, SitePlan
from simulators.services import InfluxDB, Mosquitto
from tests.helpers import ROOT, Proc, rows, wait_for, write_yaml

pytestmark = pytest.mark.integration

MEASUREMENTS = ("particulate", "bus_terminal", "noise", "climate")


def start_collector(tmp: Path, name: str, mosquitto: Mosquitto, influxdb: InfluxDB) -> Proc:
    config = write_yaml(tmp / f"{name}.yaml", {
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": f"c-{name}",
                 "topic_prefix": f"test/{name}"},
        "insecure": True,
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": name},
        "health_interval": 3600,
    })
    proc = Proc(["collector.cli", "run", "--config", str(config)], tmp / f"{name}.log").start()
    wait_for(lambda: "collector running" in proc.output(), 30, f"collector {name}")
    return proc


def points(influxdb: InfluxDB, db: str, measurement: str) -> list[dict[str, Any]]:
    return sorted(rows(influxdb, db, f'SELECT * FROM "{measurement}" GROUP BY *'),
                  key=lambda r: (r["time"], r["sensor"]))


def count(influxdb: InfluxDB, db: str) -> int:
    return sum(int(r["count"]) for m in MEASUREMENTS
               for r in rows(influxdb, db, f'SELECT count(seq) FROM "{m}"'))


def test_a_fleet_gateway_and_a_real_agent_write_the_same_points(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str) -> None:
    gateway = f"gw-{unique_name[-30:]}".replace("_", "-")
    plan = SitePlan(gateway, "종로구", "세종로 정류장 01-147", "bus_stop", KIND_SENSORS["bus_stop"])
    # 40 s of one bus stop's readings, from the fleet's own sensors.
    made = SimGateway(plan, profile_values, start_ns=1_790_000_000_000_000_000, seed=7)
    made.take_readings(1_790_000_040_000_000_000, 40_000_000_000)
    readings = list(made.outbox.values())
    assert len(readings) > 40 and {r.measurement for r in readings} == {"particulate",
                                                                         "bus_terminal"}
    # The agent's outbox holds them under the same seqs; its epoch is the fleet gateway's.
    outbox = Outbox(tmp_path / "outbox.sqlite")
    assert outbox.append(readings) == [r.seq for r in readings]
    epoch = outbox.epoch
    outbox.close()

    agent_db, fleet_db = f"{unique_name}_a", f"{unique_name}_f"
    collectors = [start_collector(tmp_path, agent_db, mosquitto, influxdb),
                  start_collector(tmp_path, fleet_db, mosquitto, influxdb)]
    agent_config = write_yaml(tmp_path / "agent.yaml", {
        "gateway": {"id": gateway, "site": {"district": plan.district, "site": plan.site,
                                            "kind": plan.kind}},
        # The sensors the readings came from; their ports are gone, so the agent only drains.
        "sensors": [{"id": s.id, "port": str(tmp_path / f"no-{s.id}"), "profile": s.profile}
                    for s in plan.sensors],
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "uplink": {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port,
                            "topic_prefix": f"test/{agent_db}"}},
        "clock_synced": True,
        "health_interval": 3600,
    })
    agent = Proc(["edge_agent.cli", "run", "--config", str(agent_config)],
                 tmp_path / "agent.log").start()
    try:
        fleet = Fleet(FleetOptions(host="127.0.0.1", port=mosquitto.port, sites=(plan,),
                                   duration=0.0, prefix=f"test/{fleet_db}", drain_timeout=30))
        fleet.gateways[0].epoch = epoch
        fleet.gateways[0].preload(readings)
        report = asyncio.run(fleet.run())
        assert report.acked == len(readings) and report.unacked == 0, report
        wait_for(lambda: count(influxdb, agent_db) == len(readings), 60,
                 f"the agent's readings:\n{agent.output()[-2000:]}")
    finally:
        agent.stop()
        for c in collectors:
            c.stop()
    for measurement in ("particulate", "bus_terminal"):
        theirs, ours = points(influxdb, agent_db, measurement), points(influxdb, fleet_db,
                                                                        measurement)
        assert ours == theirs, measurement
        assert {r["epoch"] for r in ours} == {epoch}
    assert count(influxdb, fleet_db) == len(readings)


def test_fifty_gateways_through_an_outage_land_every_reading_exactly_once(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str) -> None:
    collector = start_collector(tmp_path, unique_name, mosquitto, influxdb)
    sites = tuple(first(50))
    assert {s.kind for s in sites} == {"apartment", "bus_stop", "dust_zone"}
    # A fifth of the gateways lose their link for 8 s, longer than the 5 s ack timeout:
    # batches in flight then are resent, and a backlog builds and drains.
    options = FleetOptions(host="127.0.0.1", port=mosquitto.port, sites=sites, duration=16.0,
                           prefix=f"test/{unique_name}", ack_timeout=5.0,
                           faults=(Fault("outage", 3.0, 0.2, 8.0),), drain_timeout=60)
    try:
        started = time.monotonic()
        report = asyncio.run(Fleet(options).run())
        assert time.monotonic() - started < 90
    finally:
        collector.stop()
    assert report.dropped == 0 and report.unacked == 0 and report.connect_failures == 0, report
    assert report.reconnects >= 10  # the outage happened: ten gateways came back
    assert report.acked == report.readings > 0
    # Exactly once, per gateway: as many points as readings taken, seqs 1..n all there.
    landed: dict[str, int] = {}
    top: dict[str, int] = {}
    for m in MEASUREMENTS:
        for r in rows(influxdb, unique_name, f'SELECT count(seq), max(seq) FROM "{m}"'
                                             " GROUP BY gateway"):
            landed[r["gateway"]] = landed.get(r["gateway"], 0) + int(r["count"])
            top[r["gateway"]] = max(top.get(r["gateway"], 0), int(r["max"]))
    assert landed == report.per_gateway
    assert top == report.per_gateway


def test_the_city_bench_runs_and_checks_every_reading(tmp_path: Path) -> None:
    """bench/city.py --quick: every phase runs and every acked reading is found once."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "city.py"), "--quick",
                           "--city-seconds", "4"], cwd=ROOT, capture_output=True, text=True,
                          timeout=400, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout
    for figure in ("raw InfluxDB ingest, 1 writer", "Mosquitto, city batches",
                   "the city: landed and acked readings/s", "5x the city's readings: publish",
                   "saturation:", "3 collector(s), shared subscription",
                   "edge agent, 20 PMS5003"):
        assert f"| {figure}" in table, figure
    checks = [line for line in table.splitlines() if "exactly once" in line
              or "shared subscription" in line or "drain time" in line]
    assert len(checks) == 6 and all("ok" in line for line in checks), checks
