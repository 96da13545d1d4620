"""What is already in the field, through the collector into a real InfluxDB.

The collector's HTTP half (HttpSource, WritePipeline, InfluxV1Writer) in this
process, against the suite's InfluxDB: an airrohr device's push, byte for byte
(tests/airrohr_firmware.py), lands with cityedge's schema; Telegraf's line
protocol written to /write lands with the registry's tags, and a bad line gets
a 400 naming it.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import aiohttp
import pytest

from collector.admission import Admission
from collector.delivery import WritePipeline
from collector.registry import model
from collector.registry.live import LiveRegistry
from collector.sources.airrohr_http import AirrohrConfig
from collector.sources.http import HttpSource, HttpSourceConfig
from collector.sources.influx_http import InfluxWriteConfig
from collector.writers.influxdb_v1 import InfluxV1Config, InfluxV1Writer
from simulators.services import InfluxDB
from tests.airrohr_firmware import BODY, request
from tests.helpers import rows

pytestmark = pytest.mark.integration

GW = "esp8266-13597771"


def test_firmware_push_lands_in_influxdb_beside_a_gateways_readings(
        tmp_path: Path, influxdb: InfluxDB) -> None:
    db = "airrohr_push"
    reg, secret = model.add_gateway(model.Registry(), GW, district="마포구", site="망원초등학교",
                                    kind="dust_zone", now="2024-05-01T09:00:00Z")
    model.save(tmp_path / "registry.yaml", reg)

    async def main() -> int:
        writer = InfluxV1Writer(InfluxV1Config(url=influxdb.url, database=db))
        await writer.start()
        pipeline = WritePipeline(writer, linger=0.01)
        task = asyncio.create_task(pipeline.run())
        source = HttpSource(HttpSourceConfig(port=0, airrohr=AirrohrConfig()), pipeline,
                            admission=Admission(LiveRegistry(tmp_path / "registry.yaml")))
        await source.start()
        try:
            reader, w = await asyncio.open_connection("127.0.0.1", source.port)
            w.write(request("127.0.0.1", source.port, "/v1/airrohr", BODY, user=GW,
                            password=secret))
            answer = await reader.read()
            w.close()
            return int(answer.split(b" ", 2)[1])
        finally:
            await source.close()
            await pipeline.close()
            await task
            await writer.close()

    assert asyncio.run(asyncio.wait_for(main(), 30)) == 200
    pm = rows(influxdb, db, "SELECT * FROM particulate GROUP BY *")
    assert len(pm) == 1
    assert (pm[0]["pm10_ugm3"], pm[0]["pm2_5_ugm3"]) == (12.3, 7.1)
    assert (pm[0]["gateway"], pm[0]["sensor"], pm[0]["district"], pm[0]["site"],
            pm[0]["site_kind"]) == (GW, "sds011", "마포구", "망원초등학교", "dust_zone")
    climate = rows(influxdb, db, "SELECT temperature_c, humidity_pct, pressure_hpa FROM climate")
    assert [(r["temperature_c"], r["humidity_pct"], r["pressure_hpa"]) for r in climate] == [
        (21.37, 48.92, 1007.1234)]
    noise = rows(influxdb, db, "SELECT laeq_dba, lmin_dba, lmax_dba FROM noise")
    assert [(r["laeq_dba"], r["lmin_dba"], r["lmax_dba"]) for r in noise] == [
        (55.81, 48.2, 71.44)]
    # Each reading carries its identity fields, as a gateway's does.
    ids = rows(influxdb, db, "SELECT seq, epoch FROM particulate, climate, noise")
    assert len({r["seq"] for r in ids}) == 3 and len({r["epoch"] for r in ids}) == 1


TELEGRAF = (b"cpu,cpu=cpu-total,host=edge-1 usage_idle=97.5,usage_user=1.25 1750000000000000000\n"
            b"mem,host=edge-1 available=1634525184i,used_percent=61.9 1750000000000000000\n")


def test_telegraf_line_protocol_lands_and_a_bad_line_is_named(
        tmp_path: Path, influxdb: InfluxDB) -> None:
    db = "telegraf_through"
    reg, secret = model.add_gateway(model.Registry(), "gw-1", district="강남구", site="역삼역",
                                    kind="bus_stop", now="2024-05-01T09:00:00Z")
    model.save(tmp_path / "registry.yaml", reg)
    auth = {"Authorization": "Basic " + base64.b64encode(f"gw-1:{secret}".encode()).decode(),
            "Content-Type": "text/plain; charset=utf-8", "User-Agent": "Telegraf/1.30.0"}

    async def main() -> list[tuple[int, str]]:
        writer = InfluxV1Writer(InfluxV1Config(url=influxdb.url, database=db))
        await writer.start()
        pipeline = WritePipeline(writer, linger=0.01)
        task = asyncio.create_task(pipeline.run())
        source = HttpSource(HttpSourceConfig(port=0, influx_write=InfluxWriteConfig()),
                            pipeline,
                            admission=Admission(LiveRegistry(tmp_path / "registry.yaml")))
        await source.start()
        answers = []
        try:
            async with aiohttp.ClientSession(headers=auth) as s:
                for body in (TELEGRAF, b"disk used=1i 1750000000000000000\ndisk used=x 1\n"):
                    async with s.post(f"{source.url}/write", params={"db": "telegraf"},
                                      data=body) as r:
                        answers.append((r.status, await r.text()))
        finally:
            await source.close()
            await pipeline.close()
            await task
            await writer.close()
        return answers

    answers = asyncio.run(asyncio.wait_for(main(), 30))
    assert answers[0] == (204, "")
    assert answers[1][0] == 400 and "line 2: bad_line" in answers[1][1]
    cpu = rows(influxdb, db, "SELECT * FROM cpu GROUP BY *")
    assert [(r["usage_idle"], r["host"], r["gateway"], r["site"], r["district"]) for r in cpu] == [
        (97.5, "edge-1", "gw-1", "역삼역", "강남구")]
    assert [r["used"] for r in rows(influxdb, db, "SELECT used FROM disk")] == [1]
    dead = rows(influxdb, db, "SELECT * FROM cityedge_deadletter GROUP BY *")
    assert [(r["reason"], r["raw"]) for r in dead] == [("bad_line", "disk used=x 1")]
