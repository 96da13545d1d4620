"""InfluxDB credentials travel in an Authorization header, never in the URL: checked
against a real influxd with authentication on, and against a recording server."""

from __future__ import annotations

import asyncio
import base64
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cityedge import yamlconfig
from collector.lineprotocol import Point
from collector.writers.errors import Retryable
from collector.writers.influxdb_v1.writer import InfluxV1Config, InfluxV1Writer
from simulators.services import InfluxDB, free_port, influx_query

pytestmark = pytest.mark.integration


@pytest.fixture
def secured_influx(tmp_path: Path) -> Iterator[InfluxDB]:
    db = InfluxDB(tmp_path / "influxdb", auth=True)
    db.workdir.mkdir(parents=True, exist_ok=True)
    db.start()
    try:
        # With no user yet, influxd accepts exactly this unauthenticated query.
        influx_query(db.url, "CREATE USER admin WITH PASSWORD 'pa ss:w@rd' WITH ALL PRIVILEGES",
                     post=True)
        yield db
    finally:
        db.stop()


def writer(url: str, password: str) -> InfluxV1Writer:
    return InfluxV1Writer(InfluxV1Config(url=url, database="authtest", username="admin",
                                         password=password))


POINT = Point("particulate", {"sensor": "pm-1"}, {"pm2_5_ugm3": 12.5}, 1_700_000_000 * 10**9)


def test_basic_auth_writes_and_queries_a_secured_influxdb(secured_influx: InfluxDB) -> None:
    async def scenario() -> dict[str, Any]:
        w = writer(secured_influx.url, "pa ss:w@rd")
        await w.start()  # creates the database, authenticated
        try:
            await w.write([POINT])
            return await w.query("SELECT pm2_5_ugm3 FROM particulate")
        finally:
            await w.close()

    got = asyncio.run(scenario())
    assert got["results"][0]["series"][0]["values"][0][1] == 12.5
    # And the server really checks: without credentials it refuses.
    with pytest.raises(urllib.error.HTTPError) as refused:
        influx_query(secured_influx.url, "SHOW DATABASES")
    assert refused.value.code == 401


def test_a_wrong_password_is_refused_and_not_quoted(secured_influx: InfluxDB) -> None:
    async def scenario() -> None:
        w = writer(secured_influx.url, "wrong-secret")
        await w.start()
        try:
            await w.write([POINT])
        finally:
            await w.close()

    with pytest.raises(Retryable) as refused:  # 401: a person fixes it, readings wait
        asyncio.run(scenario())
    assert "HTTP 401" in str(refused.value)
    assert "wrong-secret" not in str(refused.value)


def test_no_credentials_in_the_url() -> None:
    seen: list[dict[str, Any]] = []
    port = free_port()

    async def record(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "query": dict(request.query),
                     "auth": request.headers.get("Authorization")})
        if request.path == "/write":
            return web.Response(status=204)
        return web.json_response({"results": [{}]})

    async def scenario() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        w = writer(f"http://127.0.0.1:{port}", "s3cret")
        try:
            await w.start()
            await w.write([POINT])
            await w.query("SHOW DATABASES")
        finally:
            await w.close()
            await runner.cleanup()

    asyncio.run(scenario())
    expected = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    assert [s["path"] for s in seen] == ["/query", "/write", "/query"]
    for s in seen:
        assert s["auth"] == expected
        assert not {"u", "p"} & set(s["query"]), s
        assert "s3cret" not in repr(s["query"])


def test_the_password_is_not_in_the_config_repr() -> None:
    doc = yamlconfig.parse("url: http://127.0.0.1:8086\nusername: admin\npassword: s3cret\n")
    config = yamlconfig.bind(InfluxV1Config, doc.data, doc)
    assert config.password == "s3cret"
    assert "s3cret" not in repr(config)
