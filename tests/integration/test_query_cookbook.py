"""Every query of docs/queries.md, read from the file, run against a real InfluxDB set up by
influx-setup and filled through the collector's writer with known data; each result checked."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collector.lineprotocol import Identity, Point
from collector.schema.retention import RetentionLayout
from collector.schema.setup import Target, apply
from collector.writers.influxdb_v1.writer import InfluxV1Config, InfluxV1Writer
from simulators.services import InfluxDB
from tests.helpers import rows

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
QUERY = re.compile(r"<!-- query: (\w+) -->\n```sql\n(.*?)```", re.S)
H, M, S = 3600 * 10**9, 60 * 10**9, 10**9
KST = 9 * H
DAY = 24 * H

GANGNAM = {"district": "강남구", "site": "역삼초등학교", "site_kind": "dust_zone",
           "gateway": "gw-gangnam-1", "sensor": "pm-1", "model": "pms5003"}
JONGNO = {"district": "종로구", "site": "종로2가 정류장", "site_kind": "bus_stop",
          "gateway": "gw-jongno-1", "sensor": "pm-1", "model": "pms5003"}
MAPO = {"district": "마포구", "site": "마포 래미안", "site_kind": "apartment",
        "gateway": "gw-apt-1", "sensor": "nz-1", "model": "noise_meter_modbus"}


def cookbook() -> dict[str, str]:
    text = (ROOT / "docs" / "queries.md").read_text(encoding="utf-8")
    found = QUERY.findall(text)
    queries = {name: " ".join(q.split()) for name, q in found}
    assert len(queries) == len(found), "two queries share a name"
    return queries


class Day:
    """Yesterday, Korean time: every point of the known data is on it or just after."""

    def __init__(self) -> None:
        now = time.time_ns()
        self.start = ((now + KST) // DAY - 1) * DAY - KST  # 00:00 KST, in UTC ns

    def at(self, hour: int, minute: int = 0, second: int = 0) -> int:
        return self.start + hour * H + minute * M + second * S


def reading(m: str, tags: dict[str, str], fields: dict[str, Any], t: int, seq: int) -> Point:
    return Point(m, tags, fields, t, Identity(seq, "e1"))


def known_data(day: Day) -> list[Point]:
    points = []
    # Gangnam: two PM2.5 readings an hour; hourly means 12 (good), 25, 35 (moderate),
    # 50 (bad), 90 (very bad); no readings 14:00-15:00; seq 6 never landed.
    pairs = {10: (10, 14), 11: (20, 30), 12: (40, 60), 13: (80, 100), 15: (30, 40)}
    seqs = iter([1, 2, 3, 4, 5, 7, 8, 9, 10, 11])
    for hour, (a, b) in pairs.items():
        for minute, v in ((0, a), (30, b)):
            points.append(reading("particulate", GANGNAM, {"pm2_5_ugm3": float(v)},
                                  day.at(hour, minute), next(seqs)))
    points.append(reading("gateway_health", {**GANGNAM, "sensor": "agent", "model": "agent"},
                          {"uptime_s": 100.0, "outbox_readings": 0}, day.at(16), 12))
    points.append(reading("outbox_drops", GANGNAM, {"dropped": 3, "of_measurement":
                          "particulate", "reason": "outbox_full"}, day.at(16, 1), 13))
    # Jongno: two very bad readings ten minutes apart; its gateway reported just now.
    points += [reading("particulate", JONGNO, {"pm2_5_ugm3": 100.0}, day.at(10), 1),
               reading("particulate", JONGNO, {"pm2_5_ugm3": 100.0}, day.at(10, 10), 2),
               reading("gateway_health", {**JONGNO, "sensor": "agent", "model": "agent"},
                       {"uptime_s": 5.0, "outbox_readings": 7}, time.time_ns() - 30 * S, 3)]
    # Mapo apartment: at night two minutes over (LAeq 36 > 34; Lmax 55 > 52), one
    # under; in the afternoon one over the night limits (a day row).
    noise = [(day.at(23, 10), 36.0, 50.0), (day.at(23, 11), 30.0, 55.0),
             (day.at(23, 12), 30.0, 45.0), (day.at(14), 45.0, 60.0)]
    points += [reading("noise", MAPO, {"laeq_1min_dba": a, "lmax_dba": b}, t, i + 1)
               for i, (t, a, b) in enumerate(noise)]
    points.append(reading("gateway_health", {**MAPO, "sensor": "agent", "model": "agent"},
                          {"uptime_s": 900.0, "outbox_readings": 1}, day.at(23, 15), 5))
    # Alerts: Jongno fires and resolves, Gangnam fires.
    for tags, state, t, value in (
            ({"district": "종로구", "rule": "pm25_warning"}, "firing", day.at(10, 5), 100.0),
            ({"district": "종로구", "rule": "pm25_warning"}, "resolved", day.at(11), 20.0),
            ({"district": "강남구", "rule": "pm25_warning"}, "firing", day.at(13, 30), 90.0)):
        points.append(Point("alerts", {**tags, "severity": "warning", "state": state},
                            {"value": value, "alert_id": f"id-{tags['district']}"}, t))
    return points


def by(result: list[dict[str, Any]], *keys: str) -> dict[Any, dict[str, Any]]:
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in result}


def check_bands(results: dict[str, list[dict[str, Any]]], day: Day) -> None:
    got: dict[str, dict[str, int]] = {}
    for band in ("good", "moderate", "bad", "very_bad"):
        for r in results[f"hours_{band}"]:
            if r["time"] == day.start:
                got.setdefault(r["site"], {})[band] = r[f"hours_{band}"]
    # A band with no hours that day for a site has no row (count of nothing).
    assert got == {"역삼초등학교": {"good": 1, "moderate": 2, "bad": 1, "very_bad": 1},
                   "종로2가 정류장": {"very_bad": 1}}


def check_completeness(result: list[dict[str, Any]]) -> None:
    per: dict[str, list[dict[str, Any]]] = {}
    for r in result:
        per.setdefault(r["gateway"], []).append(r)
    summary = {gw: (sum(r["landed"] for r in rs),
                    max(r["last_seq"] for r in rs) - min(r["first_seq"] for r in rs) + 1)
               for gw, rs in per.items()}
    # Gangnam: seqs 1-13 expected, seq 6 missing; the others complete.
    assert summary == {"gw-gangnam-1": (12, 13), "gw-jongno-1": (3, 3), "gw-apt-1": (5, 5)}


def checks(day: Day) -> dict[str, Callable[[dict[str, list[dict[str, Any]]]], None]]:
    def latest(res: dict[str, list[dict[str, Any]]]) -> None:
        got = by(res["latest_per_site"], "district", "site")
        assert {k: (r["pm2_5_ugm3"], r["time"]) for k, r in got.items()} == {
            ("강남구", "역삼초등학교"): (40.0, day.at(15, 30)),
            ("종로구", "종로2가 정류장"): (100.0, day.at(10, 10))}

    def hourly(res: dict[str, list[dict[str, Any]]]) -> None:
        got = sorted((r["district"], (r["time"] - day.start) // H, r["pm2_5_ugm3"])
                     for r in res["hourly_means_per_district"])
        assert got == [("강남구", 10, 12.0), ("강남구", 11, 25.0), ("강남구", 12, 50.0),
                       ("강남구", 13, 90.0), ("강남구", 15, 35.0), ("종로구", 10, 100.0)]

    def night(res: dict[str, list[dict[str, Any]]]) -> None:
        got = {(r["time"] - day.start) // H: r["minutes_over"]
               for r in res["night_noise_exceedances"] if r["site"] == "마포 래미안"}
        assert got == {22: 2, 14: 1}  # the night bucket 22:00-06:00, and the afternoon's

    def drops(res: dict[str, list[dict[str, Any]]]) -> None:
        assert [(r["gateway"], r["sensor"], r["dropped"]) for r in res["drops_per_sensor"]] == [
            ("gw-gangnam-1", "pm-1", 3)]

    def gaps(res: dict[str, list[dict[str, Any]]]) -> None:
        got = {r["gateway"]: r["longest_gap_s"] for r in res["longest_gap_per_sensor"]}
        assert got == {"gw-gangnam-1": 5400, "gw-jongno-1": 600}  # 13:30 to 15:00; 10 min

    def alerts(res: dict[str, list[dict[str, Any]]]) -> None:
        got = [(r["district"], r["rule"], r["state"], r["value"], r["time"])
               for r in res["alert_timeline"]]
        assert sorted(got) == sorted([
            ("강남구", "pm25_warning", "firing", 90.0, day.at(13, 30)),
            ("종로구", "pm25_warning", "firing", 100.0, day.at(10, 5)),
            ("종로구", "pm25_warning", "resolved", 20.0, day.at(11))])
        jongno = [r["state"] for r in res["alert_timeline"] if r["district"] == "종로구"]
        assert jongno == ["firing", "resolved"]  # in time order

    def stale(res: dict[str, list[dict[str, Any]]]) -> None:
        seen = by(res["last_seen"], "gateway")
        assert {gw: r["uptime_s"] for gw, r in seen.items()} == {
            "gw-gangnam-1": 100.0, "gw-jongno-1": 5.0, "gw-apt-1": 900.0}
        assert seen["gw-apt-1"]["time"] == day.at(23, 15)
        recent = {r["gateway"] for r in res["seen_recently"]}
        assert set(seen) - recent == {"gw-gangnam-1", "gw-apt-1"}

    return {
        "latest_per_site": latest, "hourly_means_per_district": hourly,
        "hours_good": lambda res: check_bands(res, day), "night_noise_exceedances": night,
        "completeness_per_gateway": lambda res: check_completeness(
            res["completeness_per_gateway"]),
        "drops_per_sensor": drops, "longest_gap_per_sensor": gaps, "alert_timeline": alerts,
        "last_seen": stale,
    }


def test_every_cookbook_query_gives_the_known_answer(influxdb: InfluxDB,
                                                     unique_name: str) -> None:
    queries = cookbook()
    assert len(queries) >= 12
    for name, q in queries.items():
        assert re.search(r"\b(mean|last|count|sum|max|min|spread)\(", q) is None or " AS " in q, (
            f"{name}: computed columns need a name (AS)")
    apply(Target(influxdb.url, unique_name), RetentionLayout())
    day = Day()

    async def write() -> None:
        w = InfluxV1Writer(InfluxV1Config(url=influxdb.url, database=unique_name,
                                          retention=RetentionLayout()))
        await w.start()
        try:
            await w.write(known_data(day))
        finally:
            await w.close()
    asyncio.run(write())

    results = {name: rows(influxdb, unique_name, q) for name, q in queries.items()}
    for name, result in results.items():
        assert result, f"{name}: no rows"
    table = checks(day)
    checked = set(table) | {"hours_moderate", "hours_bad", "hours_very_bad", "seen_recently"}
    assert checked == set(queries), "each query in docs/queries.md needs its check here"
    for check in table.values():
        check(results)
