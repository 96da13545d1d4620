"""``edge-collector fleet`` against the real InfluxDB and Mosquitto: gateways with their health,
status messages and agent version, the alerts firing on them, stale ones marked and first,
problems named; text and JSON."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from paho.mqtt import publish

from cityedge.uplink.status import encode_status
from cityedge.uplink.topics import Topics
from collector.lineprotocol import Identity, Point
from collector.schema.retention import RetentionLayout
from collector.schema.setup import Target, apply
from collector.writers.influxdb_v1.writer import InfluxV1Config, InfluxV1Writer
from simulators.services import InfluxDB, Mosquitto
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


def test_the_fleet_view_hears_status_messages_and_names_problems(
        influxdb: InfluxDB, mosquitto: Mosquitto, unique_name: str, tmp_path: Path) -> None:
    """The agents' retained status messages (version, online/offline) from the real broker,
    beside their health in InfluxDB; each gateway's problems named."""
    layout = RetentionLayout()
    apply(Target(influxdb.url, unique_name), layout)
    now = time.time_ns()
    points = [
        health("gw-ok", "강남구", now - 3 * S, 1, link_up=True, outbox_full_pct=1.0,
               dropped_readings=0, clock_synced=True, clock_offset_ms=4.0),
        health("gw-full", "강남구", now - 3 * S, 1, link_up=False, outbox_full_pct=92.5,
               dropped_readings=17, clock_synced=False),
    ]
    points[0] = Point("gateway_health", points[0].tags,
                      {**points[0].fields, "agent_version": "0.0.9"}, points[0].time_ns,
                      points[0].identity)

    async def write() -> None:
        w = InfluxV1Writer(InfluxV1Config(url=influxdb.url, database=unique_name,
                                          retention=layout))
        await w.start()
        try:
            await w.write(points)
        finally:
            await w.close()
    asyncio.run(write())
    prefix = f"test/{unique_name}"
    topics = Topics(prefix)
    for gw, state, version in (("gw-ok", "online", "1.2.3"), ("gw-full", "offline", None)):
        publish.single(topics.status(gw), encode_status(gw, state, version), qos=1, retain=True,
                       hostname="127.0.0.1", port=mosquitto.port)
    # Not statuses: a hostile topic and another gateway's message are left out.
    publish.single(f"{prefix}/<b>x/status", b'{"gateway": "<b>x", "state": "online"}', qos=1,
                   retain=True, hostname="127.0.0.1", port=mosquitto.port)
    config = write_yaml(tmp_path / "collector.yaml", {
        "insecure": True,
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": f"c-{unique_name}",
                 "topic_prefix": prefix},
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": unique_name,
                   "retention": {}}})
    try:
        out = fleet_cli("--config", str(config), "--json", "--status-wait", "1.5")
    finally:
        for topic in (topics.status("gw-ok"), topics.status("gw-full"), f"{prefix}/<b>x/status"):
            publish.single(topic, b"", qos=1, retain=True, hostname="127.0.0.1",
                           port=mosquitto.port)
    assert out.returncode == 0, out.stderr
    got = {g["gateway"]: g for g in json.loads(out.stdout)["gateways"]}
    assert sorted(got) == ["gw-full", "gw-ok"]
    ok, full = got["gw-ok"], got["gw-full"]
    # The status message's version is newer than the health point's.
    assert (ok["status"], ok["agent_version"], ok["problems"]) == ("online", "1.2.3", [])
    assert (full["status"], full["agent_version"]) == ("offline", None)
    assert full["problems"] == ["offline", "filling", "dropping", "off_clock"]
    assert full["outbox_full_pct"] == 92.5 and full["clock_synced"] is False

    text = fleet_cli("--config", str(config), "--status-wait", "0")
    row = next(line for line in text.stdout.splitlines() if line.startswith("gw-full"))
    assert row.endswith("[filling dropping off_clock]"), row  # no broker asked: no offline
    row_ok = next(line for line in text.stdout.splitlines() if line.startswith("gw-ok"))
    assert " 0.0.9 " in row_ok
