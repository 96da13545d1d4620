"""``edge-collector fleet`` against the real InfluxDB: gateways with their health, the alerts
firing on them, stale ones marked and first; text and JSON."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.lineprotocol import Identity, Point
from collector.schema.retention import RetentionLayout
from collector.schema.setup import Target, apply
from collector.writers.influxdb_v1.writer import InfluxV1Config, InfluxV1Writer
from simulators.services import InfluxDB
from tests.helpers import write_yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
S = 10**9


def fleet_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "collector.cli", "fleet", *args],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def health(gw: str, district: str, t: int, seq: int, **fields: float | int | bool) -> Point:
    tags = {"district": district, "site": f"site-{gw}", "site_kind": "dust_zone",
            "gateway": gw, "sensor": "agent", "model": "agent"}
    return Point("gateway_health", tags, {"uptime_s": 1.0, **fields}, t, Identity(seq, "e"))


def alert(state: str, t: int, alert_id: str, **scope: str) -> Point:
    return Point("alerts", {**scope, "rule": "pm25_warning", "severity": "warning",
                            "state": state}, {"alert_id": alert_id, "value": 80.0}, t)


def test_the_fleet_view_from_influxdb(influxdb: InfluxDB, unique_name: str,
                                      tmp_path: Path) -> None:
    layout = RetentionLayout()
    apply(Target(influxdb.url, unique_name), layout)
    now = time.time_ns()
    points = [
        # gw-a: two health points, the newest counts; its district has a firing alert.
        health("gw-a", "강남구", now - 40 * S, 1, link_up=False, outbox_readings=9),
        health("gw-a", "강남구", now - 5 * S, 2, link_up=True, outbox_readings=3,
               oldest_age_s=1.5, dropped_readings=0, clock_offset_ms=-12.5),
        # gw-b: fresh; its alert fired and resolved.
        health("gw-b", "종로구", now - 2 * S, 1, link_up=True, outbox_readings=0),
        # gw-c: silent for ten minutes: stale.
        health("gw-c", "종로구", now - 600 * S, 7, link_up=True, outbox_readings=120,
               dropped_readings=4),
        alert("firing", now - 100 * S, "a1", district="강남구"),
        alert("firing", now - 100 * S, "b1", gateway="gw-b"),
        alert("resolved", now - 50 * S, "b1", gateway="gw-b"),
    ]

    async def write() -> None:
        w = InfluxV1Writer(InfluxV1Config(url=influxdb.url, database=unique_name,
                                          retention=layout))
        await w.start()
        try:
            await w.write(points)
        finally:
            await w.close()
    asyncio.run(write())
    config = write_yaml(tmp_path / "collector.yaml", {"insecure": True, "writer": {
        "type": "influxdb_v1", "url": influxdb.url, "database": unique_name, "retention": {}}})

    out = fleet_cli("--config", str(config), "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)["gateways"]
    assert [g["gateway"] for g in got] == ["gw-c", "gw-a", "gw-b"]  # stale first
    c, a, b = got
    assert c["stale"] and not a["stale"] and not b["stale"]
    assert (c["outbox_readings"], c["dropped_readings"], c["age_s"] >= 600) == (120, 4, True)
    assert (a["link_up"], a["outbox_readings"], a["oldest_age_s"], a["clock_offset_ms"]) == (
        True, 3, 1.5, -12.5)
    assert a["last_seen_ns"] == now - 5 * S
    assert a["firing"] == ["pm25_warning (a1)"] and b["firing"] == [] and c["firing"] == []

    text = fleet_cli("--config", str(config), "--stale", "1000")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[-1] == "3 gateways, 0 stale"
    row_a = next(line for line in lines if line.startswith("gw-a"))
    assert " up " in row_a and "pm25_warning (a1)" in row_a and "STALE" not in row_a

    # Without the policies named, the default one is read (here: raw, which has no health).
    plain = fleet_cli("--influx", influxdb.url, "--database", unique_name)
    assert plain.returncode == 0 and plain.stdout.splitlines()[-1] == "0 gateways, 0 stale"
    assert fleet_cli("--influx", "http://127.0.0.1:9").returncode == 1
    assert fleet_cli().returncode == 2
