"""The HTTP source's airrohr route: the firmware's request, byte for byte, on a real server.

A real aiohttp server on a free loopback port, a real WritePipeline, the gated
in-memory writer of test_http_source.py, the registry from a file, and the
alert engine fed what the pipeline wrote (the collector's own wiring). The
request is written to a socket as the firmware writes it (tests/airrohr_firmware.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cityedge.yamlconfig import ConfigError
from collector.admission import Admission
from collector.alerts.engine import Engine
from collector.alerts.events import AlertEvent
from collector.config import load_config
from collector.delivery import WritePipeline
from collector.registry import model
from collector.registry.live import LiveRegistry
from collector.sources.airrohr_http import AirrohrConfig, AutoRegister
from collector.sources.http import HttpSource, HttpSourceConfig
from tests.airrohr_firmware import BODY, request
from tests.alerts_helpers import rules_from_text
from tests.unit.test_http_source import GatedWriter, run

ROOT = Path(__file__).resolve().parents[2]
GW = "esp8266-13597771"
NOW = "2024-05-01T09:00:00Z"
PATH = "/v1/airrohr"


class Rig:
    def __init__(self, source: HttpSource, writer: GatedWriter, events: list[AlertEvent]):
        self.source, self.writer, self.events = source, writer, events

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Write the request, read to the end (Connection: close): status and body."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.source.port)
        writer.write(raw)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    async def push(self, data: bytes = BODY, **kw: Any) -> tuple[int, bytes]:
        return await self.send(request("127.0.0.1", self.source.port, PATH, data, **kw))


@asynccontextmanager
async def rig(registry: Path | None, **airrohr: Any) -> AsyncIterator[Rig]:
    writer = GatedWriter()
    pipeline = WritePipeline(writer, max_points=1000, linger=0)
    engine = Engine(rules_from_text((ROOT / "simulators" / "demo_rules.yaml").read_text()))
    events: list[AlertEvent] = []
    pipeline.on_written = lambda points: events.extend(engine.readings(points))
    task = asyncio.create_task(pipeline.run())
    admission = None if registry is None else Admission(LiveRegistry(registry))
    source = HttpSource(HttpSourceConfig(port=0, write_timeout=1.0, retry_after=1,
                                         airrohr=AirrohrConfig(**airrohr)),
                        pipeline, admission=admission)
    await source.start()
    try:
        yield Rig(source, writer, events)
    finally:
        await source.close()
        await pipeline.close()
        await task


def registry(tmp_path: Path) -> tuple[Path, str]:
    reg, secret = model.add_gateway(model.Registry(), GW, district="강남구", site="역삼역",
                                    kind="dust_zone", now=NOW)
    reg, _ = model.add_gateway(reg, "esp8266-1", district="d", site="s", kind="apartment",
                               now=NOW)
    path = tmp_path / "registry.yaml"
    model.save(path, model.revoke(reg, "esp8266-1", now=NOW))
    return path, secret


def test_firmware_push_lands_with_the_registry_site_and_raises_the_same_alert(
        tmp_path: Path) -> None:
    path, secret = registry(tmp_path)

    async def main() -> None:
        async with rig(path) as r:
            # PM10 at 150 or more raises the demo advisory, as a gateway's reading would.
            data = BODY.replace(b'"SDS_P1","value":"12.30"', b'"SDS_P1","value":"163.40"')
            status, _ = await r.push(data, user="x", password=secret)
            assert status == 200
            by = {p.measurement: p for p in r.writer.written}
            assert set(by) == {"particulate", "climate", "noise"}
            assert dict(by["particulate"].fields) == {"pm10_ugm3": 163.4, "pm2_5_ugm3": 7.1,
                                                      "fw_interval_ms": 145000,
                                                      "fw_samples": 5118}
            assert by["climate"].fields["pressure_hpa"] == 1007.1234
            assert dict(by["noise"].fields) == {"laeq_dba": 55.81, "lmin_dba": 48.2,
                                                "lmax_dba": 71.44, "fw_interval_ms": 145000,
                                                "fw_samples": 5118}
            assert {p.source for p in by.values()} == {"airrohr"}  # for rules' `sources`
            for p in by.values():
                assert (p.tags["district"], p.tags["site"], p.tags["site_kind"],
                        p.tags["gateway"]) == ("강남구", "역삼역", "dust_zone", GW)
            assert [(e.rule, e.state, e.scope) for e in r.events] == [
                ("pm10_advisory_demo", "firing", {"district": "강남구"})]
            health = r.source.health()
            assert health["airrohr_pushes"] == 1 and health["airrohr_readings"] == 3
            assert health["airrohr_metadata_values"] == 5

    run(main())


def test_refusals_are_counted_with_their_reason(tmp_path: Path) -> None:
    path, secret = registry(tmp_path)

    async def main() -> None:
        async with rig(path) as r:
            assert (await r.push(password="wrong"))[0] == 401
            assert (await r.push())[0] == 401  # no password at all
            assert (await r.push(chip="99", password=secret))[0] == 403  # not registered
            assert (await r.push(chip="1", password=secret))[0] == 403  # revoked
            # The body names another chip than X-Sensor.
            assert (await r.push(BODY.replace(b"13597771", b"1"), password=secret))[0] == 400
            raw = request("127.0.0.1", r.source.port, PATH, BODY).replace(
                b"X-Sensor: esp8266-13597771\r\n", b"")
            status, answer = await r.send(raw)
            assert status == 400 and b"no_sensor_id" in answer
            assert r.writer.written == []
            assert dict(r.source.refused) == {"unauthorized": 2, "unknown_gateway": 1,
                                              "revoked_gateway": 1, "sensor_mismatch": 1,
                                              "no_sensor_id": 1}

    run(main())


def test_auto_register_admits_unknown_devices_under_its_site(tmp_path: Path) -> None:
    path, _ = registry(tmp_path)

    async def main() -> None:
        auto = AutoRegister(district="마포구", site="citizen sensors", kind="dust_zone")
        async with rig(path, auto_register=auto) as r:
            status, _ = await r.push(BODY.replace(b"13597771", b"42"), chip="42")
            assert status == 200
            assert {(p.tags["gateway"], p.tags["district"], p.tags["site"])
                    for p in r.writer.written} == {("esp8266-42", "마포구", "citizen sensors")}
            assert (await r.push(chip="1"))[0] == 403  # revoked stays refused
            assert r.source.health()["airrohr_auto_admitted"] == 1

    run(main())


def test_answer_only_after_the_write_and_503_when_it_does_not_land(tmp_path: Path) -> None:
    path, _ = registry(tmp_path)

    async def main() -> None:
        async with rig(path, require_password=False) as r:
            r.writer.gate.clear()  # the database is slow
            pending = asyncio.create_task(r.push())
            await asyncio.sleep(0.3)
            assert not pending.done() and r.writer.written == []
            r.writer.gate.set()
            assert (await pending)[0] == 200 and len(r.writer.written) == 3
            r.writer.gate.clear()  # slower than write_timeout: 503, the write still lands
            status, answer = await r.push()
            assert status == 503 and b"write_timeout" in answer
            r.writer.gate.set()
            await asyncio.sleep(0.2)
            assert len(r.writer.written) == 6

    run(main())


def test_bad_values_become_dead_letters_not_silence(tmp_path: Path) -> None:
    async def main() -> None:
        async with rig(None) as r:  # no registry (insecure), no token: every device
            data = BODY.replace(b'"SDS_P2","value":"7.10"', b'"SDS_P2","value":"-"')
            assert (await r.push(data))[0] == 200
            dead = [p for p in r.writer.written if p.measurement == "cityedge_deadletter"]
            assert [(p.tags["reason"], p.tags["sensor"]) for p in dead] == [
                ("bad_value", "sds011")]
            assert r.source.pipeline.stats.dead_letter_reasons["bad_value"] == 1

    run(main())


def test_the_route_is_configured_under_http(tmp_path: Path) -> None:
    text = """writer: {type: influxdb_v1, url: "http://127.0.0.1:8086", database: cityedge}
insecure: true
mqtt: null
http:
  airrohr:
    path: /data.php
    auto_register: {district: 마포구, site: citizen sensors, kind: dust_zone}
"""
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    http = load_config(tmp_path / "c.yaml").config.http
    assert http is not None and http.airrohr == AirrohrConfig(
        path="/data.php", auto_register=AutoRegister("마포구", "citizen sensors", "dust_zone"))
    (tmp_path / "c.yaml").write_text(text.replace("dust_zone", "park"), encoding="utf-8")
    with pytest.raises(ConfigError, match="auto_register: kind 'park'"):
        load_config(tmp_path / "c.yaml")
