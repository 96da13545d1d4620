"""The HTTP source's /write and /api/v2/write: Influx clients and Telegraf write through us.

A real aiohttp server, a real WritePipeline with the gated in-memory writer of
test_http_source.py, the registry from a file. The 2.x path is driven by
influxdb-client's own synchronous write API (its real HTTP request, gzip on);
the 1.x path by the request Telegraf's influxdb output makes (line protocol as
its serializer writes it, basic auth or u/p, gzip when content_encoding is set).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from collector.admission import Admission
from collector.delivery import WritePipeline
from collector.ratelimit import RateLimiter
from collector.registry import model
from collector.registry.live import LiveRegistry
from collector.sources.http import HttpSource, HttpSourceConfig
from collector.sources.influx_http import InfluxWriteConfig
from tests.unit.test_http_source import GatedWriter, run

NOW = "2024-05-01T09:00:00Z"
T = 1_750_000_000_000_000_000
TELEGRAF = (b"cpu,cpu=cpu-total,host=edge-1 usage_idle=97.5,usage_user=1.25 1750000000000000000\n"
            b"mem,host=edge-1 available=1634525184i,used_percent=61.9 1750000000000000000\n")


class Rig:
    def __init__(self, source: HttpSource, writer: GatedWriter, secret: str,
                 session: aiohttp.ClientSession) -> None:
        self.source, self.writer, self.secret, self.session = source, writer, secret, session

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None,
                   **params: str) -> tuple[int, Any, Any]:
        async with self.session.post(self.source.url + path, data=body, params=params,
                                     headers=headers or {}) as r:
            raw = await r.read()
            return r.status, json.loads(raw) if raw else None, r.headers

    def telegraf_v1(self, body: bytes, *, gzipped: bool = False,
                    password: str | None = None) -> dict[str, str]:
        """The headers of Telegraf's influxdb output (username/password set)."""
        auth = base64.b64encode(f"gw-1:{password or self.secret}".encode()).decode()
        headers = {"Content-Type": "text/plain; charset=utf-8", "User-Agent": "Telegraf/1.30.0",
                   "Authorization": f"Basic {auth}"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return headers

    def client(self, token: str | None = None) -> InfluxDBClient:
        return InfluxDBClient(url=self.source.url, token=token or f"gw-1:{self.secret}",
                              org="cityedge", enable_gzip=True, timeout=5_000)


@asynccontextmanager
async def rig(tmp_path: Path, limiter: RateLimiter | None = None,
              **config: Any) -> AsyncIterator[Rig]:
    reg, secret = model.add_gateway(model.Registry(), "gw-1", district="강남구", site="역삼역",
                                    kind="bus_stop", now=NOW)
    reg, _ = model.add_gateway(reg, "gw-old", district="d", site="s", kind="apartment", now=NOW)
    model.save(tmp_path / "registry.yaml", model.revoke(reg, "gw-old", now=NOW))
    writer = GatedWriter()
    pipeline = WritePipeline(writer, max_points=1000, linger=0)
    task = asyncio.create_task(pipeline.run())
    source = HttpSource(HttpSourceConfig(port=0, write_timeout=0.5, retry_after=2,
                                         influx_write=InfluxWriteConfig(), **config),
                        pipeline, admission=Admission(LiveRegistry(tmp_path / "registry.yaml")),
                        limiter=limiter)
    await source.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Rig(source, writer, secret, session)
    finally:
        writer.gate.set()
        await source.close()
        await pipeline.close()
        await task


def test_influxdb_client_v2_write_api_lands_with_registry_tags(tmp_path: Path) -> None:
    async def main() -> None:
        async with rig(tmp_path) as r:
            def write() -> None:
                with r.client() as client:
                    api = client.write_api(write_options=SYNCHRONOUS)
                    # Dict records: the client serializes them to line protocol itself.
                    api.write(bucket="city", record=[
                        {"measurement": "particulate", "tags": {"sensor": "pm-1"},
                         "fields": {"pm10_ugm3": 163.4}, "time": T // 10**9},
                        {"measurement": "particulate", "tags": {"sensor": "pm-1"},
                         "fields": {"pm10_ugm3": 12.0}, "time": T // 10**9 + 60}],
                        write_precision=WritePrecision.S)

            await asyncio.to_thread(write)
            assert [(p.measurement, p.tags["gateway"], p.tags["site"], p.tags["sensor"],
                     dict(p.fields), p.time_ns) for p in r.writer.written] == [
                ("particulate", "gw-1", "역삼역", "pm-1", {"pm10_ugm3": 163.4}, T),
                ("particulate", "gw-1", "역삼역", "pm-1", {"pm10_ugm3": 12.0}, T + 60 * 10**9)]
            assert r.source.health()["influx_write_writes"] == 1

    run(main())


def test_influxdb_client_sees_the_errors_it_handles(tmp_path: Path) -> None:
    async def main() -> None:
        async with rig(tmp_path) as r:
            def write(token: str | None, record: str) -> ApiException:
                with r.client(token) as client, pytest.raises(ApiException) as info:
                    client.write_api(write_options=SYNCHRONOUS).write("city", record=record)
                return info.value

            e = await asyncio.to_thread(write, f"gw-1:{r.secret}x", "m f=1")
            assert e.status == 401 and json.loads(e.body)["code"] == "unauthorized"
            e = await asyncio.to_thread(write, f"gw-old:{r.secret}", "m f=1")
            assert e.status == 403 and "revoked" in json.loads(e.body)["message"]
            e = await asyncio.to_thread(write, None, "m f=1 1\nm f=bad 2\nm g=1 3")
            assert e.status == 400
            assert "line 2: bad_line: field 'f': invalid value 'bad'" in json.loads(
                e.body)["message"]
            assert [dict(p.fields) for p in r.writer.written if p.measurement == "m"] == [
                {"f": 1.0}, {"g": 1.0}]  # the good lines of a partial write are written

    run(main())


def test_telegraf_v1_write_basic_auth_gzip_and_u_p(tmp_path: Path) -> None:
    async def main() -> None:
        async with rig(tmp_path) as r:
            status, _, _ = await r.post("/write", gzip.compress(TELEGRAF),
                                        r.telegraf_v1(TELEGRAF, gzipped=True), db="telegraf")
            assert status == 204
            assert [(p.measurement, p.tags["host"], p.tags["gateway"]) for p in
                    r.writer.written] == [("cpu", "edge-1", "gw-1"), ("mem", "edge-1", "gw-1")]
            # Alert rules can tell them from an agent's readings (rule key `sources`).
            assert {p.source for p in r.writer.written} == {"line_protocol"}
            status, _, _ = await r.post("/write", b"disk,host=edge-1 used=1i 1750000000\n",
                                        db="telegraf", precision="s", u="gw-1", p=r.secret)
            assert status == 204 and r.writer.written[-1].time_ns == T
            # 1.x error bodies: {"error": ...}.
            status, doc, headers = await r.post("/write", TELEGRAF,
                                                r.telegraf_v1(TELEGRAF, password="nope"),
                                                db="telegraf")
            assert status == 401 and "wrong token" in doc["error"]
            assert headers["WWW-Authenticate"].startswith("Basic")
            status, doc, _ = await r.post("/write", TELEGRAF, r.telegraf_v1(TELEGRAF))
            assert status == 400 and doc == {"error": "database is required"}
            status, doc, _ = await r.post("/write", TELEGRAF, r.telegraf_v1(TELEGRAF),
                                          db="telegraf", precision="x")
            assert status == 400 and "precision" in doc["error"]

    run(main())


def test_too_large_and_gzip_bombs_get_413(tmp_path: Path) -> None:
    async def main() -> None:
        async with rig(tmp_path, max_body_bytes=4096) as r:
            big = b"m f=1\n" * 1000
            status, doc, _ = await r.post("/write", big, r.telegraf_v1(big), db="t")
            assert status == 413 and "too_large" in doc["error"]
            status, doc, _ = await r.post("/api/v2/write", gzip.compress(big),
                                          {"Authorization": f"Token gw-1:{r.secret}",
                                           "Content-Encoding": "gzip"}, bucket="b", org="o")
            assert status == 413 and doc["code"] == "request too large"
            assert r.writer.written == []

    run(main())


def test_busy_and_rate_limited_answers_carry_retry_after(tmp_path: Path) -> None:
    async def main() -> None:
        async with rig(tmp_path, limiter=RateLimiter(0.01, 1, 100)) as r:
            token = {"Authorization": f"Token gw-1:{r.secret}"}
            r.writer.gate.clear()  # the database is slow: not written within write_timeout
            status, doc, headers = await r.post("/api/v2/write", b"m f=1 1", token,
                                                bucket="b", org="o")
            assert status == 503 and doc["code"] == "unavailable"
            assert headers["Retry-After"] == "2"
            status, doc, headers = await r.post("/api/v2/write", b"m f=1 1", token,
                                                bucket="b", org="o")
            assert status == 429 and doc["code"] == "too many requests"
            assert int(headers["Retry-After"]) >= 1
            r.writer.gate.set()
            assert dict(r.source.refused) == {"rate_limited": 1}

    run(main())


def test_missing_bucket_or_token(tmp_path: Path) -> None:
    async def main() -> None:
        async with rig(tmp_path) as r:
            status, doc, _ = await r.post("/api/v2/write", b"m f=1", org="o")
            assert status == 400 and doc["code"] == "invalid"
            status, doc, _ = await r.post("/api/v2/write", b"m f=1", bucket="b", org="o")
            assert status == 401 and "<gateway id>:<secret>" in doc["message"]
            status, _, _ = await r.post("/api/v2/write", b"m f=1", {
                "Authorization": f"Token gw-9:{r.secret}"}, bucket="b", orgID="1")
            assert status == 403

    run(main())


def test_a_body_that_is_not_gzip_is_a_400(tmp_path: Path) -> None:
    async def main() -> None:
        async with rig(tmp_path) as r:
            status, doc, _ = await r.post("/api/v2/write", b"m f=1 1", {
                "Authorization": f"Token gw-1:{r.secret}", "Content-Encoding": "gzip"},
                bucket="b", org="o")
            assert status == 400 and doc["code"] == "invalid"
            assert r.writer.written == []

    run(main())
