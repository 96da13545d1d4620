"""``edge-collector influx-setup`` against the real InfluxDB: policies and continuous queries
made once and left alone after, downsampled values right, and the writer routing alerts and
health to their own policies."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.alerts.points import ALERTS_MEASUREMENT
from collector.lineprotocol import Identity, Point
from collector.schema.retention import RetentionLayout, duration_s
from collector.writers.influxdb_v1.writer import InfluxV1Config, InfluxV1Writer
from simulators.services import InfluxDB
from tests.helpers import rows, wait_for, write_yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MINUTE_NS, HOUR_NS = 60 * 10**9, 3600 * 10**9


def setup_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "collector.cli", "influx-setup", *args],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def policies(influx: InfluxDB, db: str) -> dict[str, tuple[int, bool]]:
    return {r["name"]: (duration_s(r["duration"]), r["default"])
            for r in rows(influx, db, f'SHOW RETENTION POLICIES ON "{db}"')}


def queries(influx: InfluxDB, db: str) -> dict[str, str]:
    answer = influx.query("SHOW CONTINUOUS QUERIES")
    return {name: q for s in answer["results"][0].get("series", []) if s["name"] == db
            for name, q in s.get("values") or []}


def write(influx: InfluxDB, db: str, points: list[Point], rp: str | None = None) -> None:
    async def go() -> None:
        w = InfluxV1Writer(InfluxV1Config(url=influx.url, database=db, retention_policy=rp,
                                          create_database=False))
        await w.start()
        try:
            await w.write(points)
        finally:
            await w.close()
    asyncio.run(go())


def test_setup_twice_the_second_run_changes_nothing(influxdb: InfluxDB, unique_name: str) -> None:
    first = setup_cli("--influx", influxdb.url, "--database", unique_name)
    assert first.returncode == 0, first.stderr
    assert f"database {unique_name} created" in first.stdout
    assert "policy raw created (30d)" in first.stdout
    assert "continuous query cq_particulate_1m created" in first.stdout
    want = {"raw": (30 * 86400, True), "mean_1m": (52 * 7 * 86400, False),
            "mean_1h": (0, False), "health": (52 * 7 * 86400, False), "events": (0, False)}
    got = policies(influxdb, unique_name)
    assert {k: got[k] for k in want} == want
    cqs = queries(influxdb, unique_name)
    assert {f"cq_{m}_{i}" for m in ("particulate", "noise", "climate", "bus_terminal", "gas")
            for i in ("1m", "1h")} == set(cqs)
    assert "max(co2_ppm) AS co2_ppm_max" in cqs["cq_gas_1m"]
    assert "GROUP BY time(1h), *" in cqs["cq_noise_1h"]
    assert "max(lmax_dba) AS lmax_dba_max" in cqs["cq_noise_1m"]

    second = setup_cli("--influx", influxdb.url, "--database", unique_name)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == (f"{unique_name}: retention policies and continuous queries"
                                     " already as configured, nothing changed")
    assert policies(influxdb, unique_name) == got
    assert queries(influxdb, unique_name) == cqs


def test_a_changed_layout_is_applied_once(influxdb: InfluxDB, unique_name: str,
                                          tmp_path: Path) -> None:
    assert setup_cli("--influx", influxdb.url, "--database", unique_name).returncode == 0
    config = write_yaml(tmp_path / "collector.yaml", {
        "insecure": True,
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": unique_name,
                   "retention": {"raw": "14d", "events": "520w", "resample_every": "30s"}},
    })
    changed = setup_cli("--config", str(config))
    assert changed.returncode == 0, changed.stderr
    assert "policy raw set to 14d default" in changed.stdout
    assert "policy events set to 520w" in changed.stdout
    assert "continuous query cq_noise_1m changed: dropped" in changed.stdout
    assert "cq_noise_1h" not in changed.stdout  # the hour queries did not change
    assert policies(influxdb, unique_name)["raw"] == (14 * 86400, True)
    assert "RESAMPLE EVERY 30s" in queries(influxdb, unique_name)["cq_noise_1m"]
    again = setup_cli("--config", str(config))
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout


def test_bad_input_is_an_error(influxdb: InfluxDB, tmp_path: Path) -> None:
    assert setup_cli().returncode == 2
    bad = write_yaml(tmp_path / "c.yaml", {"insecure": True, "writer": {
        "type": "influxdb_v1", "url": influxdb.url, "retention": {"raw": "30 days"}}})
    out = setup_cli("--config", str(bad))
    assert out.returncode == 2 and "writer.retention.raw" in out.stderr
    down = setup_cli("--influx", "http://127.0.0.1:9", "--database", "x")
    assert down.returncode == 1 and "influx-setup:" in down.stderr


def reading(measurement: str, tags: dict[str, str], fields: dict[str, float], t: int,
            seq: int) -> Point:
    return Point(measurement, tags, fields, t, Identity(seq, "e1"))


def test_backfill_downsamples_known_data_keeping_tags(influxdb: InfluxDB,
                                                      unique_name: str) -> None:
    hour = (time.time_ns() // HOUR_NS - 3) * HOUR_NS  # a whole hour, three hours ago
    site = {"district": "Gangnam-gu", "site": "s1", "site_kind": "dust_zone",
            "gateway": "gw-1", "sensor": "pm-1"}
    other = {**site, "site": "s2", "sensor": "pm-2"}
    points = []
    # s1: two readings in each of the hour's first two minutes; s2: one reading.
    for i, (minute, value) in enumerate([(0, 10.0), (0, 20.0), (1, 30.0), (1, 50.0)]):
        points.append(reading("particulate", site, {"pm2_5_ugm3": value, "pm10_ugm3": 2 * value},
                              hour + minute * MINUTE_NS + i * 10**9, i))
    points.append(reading("particulate", other, {"pm2_5_ugm3": 99.0}, hour + 5 * 10**9, 7))
    points.append(reading("noise", {**site, "sensor": "nz-1"},
                          {"laeq_1min_dba": 40.0, "lmax_dba": 61.5}, hour + 10**9, 8))
    assert setup_cli("--influx", influxdb.url, "--database", unique_name).returncode == 0
    write(influxdb, unique_name, points)  # no policy named: the default, raw
    out = setup_cli("--influx", influxdb.url, "--database", unique_name, "--backfill", "1d")
    assert out.returncode == 0, out.stderr
    assert "mean_1h.particulate filled from raw (last 1d)" in out.stdout
    assert "nothing changed" in out.stdout

    minute = rows(influxdb, unique_name, 'SELECT pm2_5_ugm3, pm2_5_ugm3_max, pm10_ugm3, readings'
                  ' FROM "mean_1m"."particulate" WHERE "site" = \'s1\'')
    assert [(r["time"], r["pm2_5_ugm3"], r["pm2_5_ugm3_max"], r["pm10_ugm3"], r["readings"])
            for r in minute] == [(hour, 15.0, 20.0, 30.0, 2),
                                 (hour + MINUTE_NS, 40.0, 50.0, 80.0, 2)]
    hourly = rows(influxdb, unique_name, 'SELECT pm2_5_ugm3, readings FROM "mean_1h".'
                  '"particulate" GROUP BY *')
    assert sorted((r["site"], r["sensor"], r["district"], r["time"], r["pm2_5_ugm3"],
                   r["readings"]) for r in hourly) == [
        ("s1", "pm-1", "Gangnam-gu", hour, 27.5, 4), ("s2", "pm-2", "Gangnam-gu", hour, 99.0, 1)]
    noise = rows(influxdb, unique_name, 'SELECT lmax_dba_max, laeq_1min_dba FROM "mean_1h".noise')
    assert [(r["lmax_dba_max"], r["laeq_1min_dba"]) for r in noise] == [(61.5, 40.0)]


def test_continuous_queries_fill_the_minute_policy_on_influxdbs_schedule(
        influxdb: InfluxDB, unique_name: str, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "collector.yaml", {
        "insecure": True,
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": unique_name,
                   "retention": {"resample_every": "1s", "resample_for": "3m"}},
    })
    out = setup_cli("--config", str(config))
    assert out.returncode == 0, out.stderr
    # A whole minute that is over by now: InfluxDB's next run (each second) covers it.
    start = (time.time_ns() // MINUTE_NS - 1) * MINUTE_NS
    tags = {"district": "Mapo-gu", "site": "apt-3", "gateway": "gw-2", "sensor": "nz-2"}
    write(influxdb, unique_name, [
        reading("noise", tags, {"laeq_1min_dba": v, "lmax_dba": v + 20}, start + i * 10**9, i)
        for i, v in enumerate([40.0, 44.0, 48.0])])

    def filled() -> bool:
        return bool(rows(influxdb, unique_name, 'SELECT * FROM "mean_1m".noise'))

    wait_for(filled, 30, "the continuous query to fill mean_1m")
    got = rows(influxdb, unique_name, 'SELECT * FROM "mean_1m".noise')
    assert [(r["time"], r["laeq_1min_dba"], r["lmax_dba_max"], r["readings"], r["site"],
             r["sensor"]) for r in got] == [(start, 44.0, 68.0, 3, "apt-3", "nz-2")]


def test_the_writer_routes_alerts_and_health_to_their_own_policies(
        influxdb: InfluxDB, unique_name: str) -> None:
    assert setup_cli("--influx", influxdb.url, "--database", unique_name).returncode == 0
    now = time.time_ns()
    points = [
        reading("particulate", {"sensor": "pm-1"}, {"pm2_5_ugm3": 5.0}, now, 1),
        Point("gateway_health", {"gateway": "gw-1"}, {"outbox_readings": 3}, now),
        Point(ALERTS_MEASUREMENT, {"rule": "pm25"}, {"value": 80.0}, now),
        Point("cityedge_deadletter", {"reason": "bad"}, {"seq": 4}, now),
    ]

    async def go() -> None:
        w = InfluxV1Writer(InfluxV1Config(url=influxdb.url, database=unique_name,
                                          retention=RetentionLayout()))
        await w.start()
        try:
            await w.write(points)
            assert w.requests == 3  # one per policy
        finally:
            await w.close()
    asyncio.run(go())

    def where(measurement: str) -> list[str]:
        return [rp for rp in ("raw", "health", "events", "autogen")
                if rows(influxdb, unique_name, f'SELECT * FROM "{rp}"."{measurement}"')]
    assert where("particulate") == ["raw"]
    assert where("gateway_health") == ["health"]
    assert where("alerts") == ["events"]
    assert where("cityedge_deadletter") == ["events"]
