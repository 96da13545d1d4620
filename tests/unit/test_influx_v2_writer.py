"""The influxdb_v2 writer against InfluxDB 2.x's recorded error answers.

No InfluxDB 2.x server is packaged for Debian, and the one that is tested
against (VictoriaMetrics, tests/integration/test_writer_suite.py) never
answers a partial write or a throttle. So a local aiohttp server replays what
InfluxDB 2.x and Cloud answer, status, headers and body as recorded:

- 400: the storage engine's partial write, in 2.x's ``{"code", "message"}``
  (the message is the 1.x engine's text: 2.x shares tsdb's PartialWriteError);
- 413: ``{"code":"request too large","message":"unable to read data: points batch
  is too large"}``, from InfluxDB 2.x's http/write_handler_test.go;
- 429: Cloud's rate limit, with ``Retry-After`` (docs "InfluxDB Cloud limits");
- 503: unavailable with ``Retry-After`` (Cloud: "Series cardinality exceeds your
  plan's limit").

The writer is driven through influxdb-client's real async write path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from cityedge.yamlconfig import ConfigError
from collector.config import load_config, make_writer
from collector.delivery import WritePipeline
from collector.ingest import Accepted, ingest
from collector.writers.errors import PartialWrite, RefusalKind, Retryable, Throttled, TooLarge
from collector.writers.influxdb_v2 import InfluxV2Config, InfluxV2Writer
from collector.writers.influxdb_v2.refusal import parse_refusal

CONFLICT = ('{"code":"invalid","message":"partial write: field type conflict: input field'
            ' \\"pm10_ugm3\\" on measurement \\"particulate\\" is type string, already exists'
            ' as type float dropped=1"}')
RECORDED = {
    "conflict": (400, {}, CONFLICT),
    "unparsed": (400, {}, '{"code":"invalid","message":"unable to parse \'m f=\': missing'
                          ' field value"}'),
    "too_large": (413, {}, '{"code":"request too large","message":"unable to read data:'
                           ' points batch is too large"}'),
    "rate": (429, {"Retry-After": "7"}, '{"code":"too many requests","message":"org'
                                        ' 0123 has exceeded limited_write plan limit"}'),
    "unavailable": (503, {"Retry-After": "3"}, '{"code":"unavailable","message":"Series'
                                               ' cardinality exceeds your plan\'s limit"}'),
    "unauthorized": (401, {}, '{"code":"unauthorized","message":"unauthorized access"}'),
    # The same refusal of a write holding two such points (the answer counts them all).
    "conflict_2": (400, {}, CONFLICT.replace("dropped=1", "dropped=2")),
    "ok": (204, {}, ""),
}


class Recorded:
    """Answers /api/v2/write with the recorded answers in ``script``, then 204s."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def write(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.query), await request.read()))
        assert request.headers["Authorization"] == "Token t0ken"
        status, headers, body = RECORDED[self.script.pop(0) if self.script else "ok"]
        return web.Response(status=status, text=body or None, headers=headers,
                            content_type="application/json" if body else None)


@asynccontextmanager
async def server(script: list[str]) -> AsyncIterator[tuple[Recorded, InfluxV2Writer]]:
    recorded = Recorded(script)
    app = web.Application()
    app.router.add_post("/api/v2/write", recorded.write)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    writer = InfluxV2Writer(InfluxV2Config(url=f"http://127.0.0.1:{port}", org="city",
                                           bucket="readings", token="t0ken"))
    await writer.start()
    try:
        yield recorded, writer
    finally:
        await writer.close()
        await runner.cleanup()


def batch(values: list[object]) -> Accepted:
    doc = {"v": 1, "gateway": "gw-1", "epoch": "0123456789abcdef", "batch": 1, "sent_ns": 1,
           "clock": {"synced": True, "boot": "b", "mono_ns": 1}, "sensors": {"pm-1": {}},
           "readings": [{"seq": i + 1, "sensor": "pm-1", "m": "particulate",
                         "t": 1_760_000_000_000_000_000 + i, "boot": "b", "mono": 1,
                         "f": {"pm10_ugm3": v}} for i, v in enumerate(values)]}
    out = ingest(json.dumps(doc).encode(), "gw-1")
    assert isinstance(out, Accepted)
    return out


def test_recorded_answers_are_classified_as_the_pipeline_needs() -> None:
    async def main() -> None:
        points = list(batch([1.5]).points)
        async with server(["conflict", "unparsed", "too_large", "rate", "unavailable",
                           "unauthorized"]) as (recorded, writer):
            with pytest.raises(PartialWrite) as conflict:
                await writer.write(points)
            r = conflict.value.refusal
            assert (r.kind, r.measurement, r.field, r.value_type, r.dropped) == (
                RefusalKind.FIELD_TYPE, "particulate", "pm10_ugm3", "string", 1)
            with pytest.raises(PartialWrite) as unparsed:
                await writer.write(points)
            assert unparsed.value.refusal.kind is RefusalKind.UNNAMED
            with pytest.raises(TooLarge):
                await writer.write(points)
            with pytest.raises(Throttled) as rate:
                await writer.write(points)
            assert rate.value.retry_after == 7.0
            with pytest.raises(Throttled) as busy:
                await writer.write(points)
            assert busy.value.retry_after == 3.0
            # A wrong token is fixed by a person: retried, never dead-lettered.
            with pytest.raises(Retryable):
                await writer.write(points)
            await writer.write(points)  # 204: accepted
            query, body = recorded.requests[-1]
            assert query == {"org": "city", "bucket": "readings", "precision": "ns"}
            assert body.startswith(b"particulate,gateway=gw-1,sensor=pm-1 pm10_ugm3=1.5,seq=1i")
            assert writer.requests == 7

    asyncio.run(asyncio.wait_for(main(), 20))


def test_pipeline_dead_letters_a_type_conflict_and_writes_the_rest() -> None:
    async def main() -> None:
        async with server(["conflict_2"]) as (recorded, writer):
            pipeline = WritePipeline(writer, linger=0, retry=(0.01, 0.05))
            task = asyncio.create_task(pipeline.run())
            try:
                # Two readings whose field is a string where the bucket has floats.
                await asyncio.wait_for(pipeline.submit(batch([1.5, "high", 2.5, "low"])), 10)
            finally:
                await pipeline.close()
                await task
            # After the refusal, what the bucket can take, and the two dead letters.
            after = [line for _, body in recorded.requests[1:]
                     for line in body.decode().splitlines()]
            readings = [line for line in after if line.startswith("particulate,")]
            dead = [line for line in after if line.startswith("cityedge_deadletter,")]
            assert sorted(line.split(" ")[1].split(",")[0] for line in readings) == [
                "pm10_ugm3=1.5", "pm10_ugm3=2.5"]
            assert len(dead) == 2 and all("reason=database_refused" in line for line in dead)
            assert pipeline.stats.rejected_points == 2

    asyncio.run(asyncio.wait_for(main(), 20))


def test_messages_that_are_not_json_name_nothing() -> None:
    assert parse_refusal("<html>bad gateway</html>").kind is RefusalKind.UNNAMED
    assert parse_refusal('{"code":"invalid"}').kind is RefusalKind.UNNAMED
    assert parse_refusal(CONFLICT).kind is RefusalKind.FIELD_TYPE


def test_configured_by_writer_type(tmp_path: Path) -> None:
    text = """writer:
  type: influxdb_v2
  url: https://eu-central-1-1.aws.cloud2.influxdata.com
  org: city
  bucket: readings
  token: t0ken
  gzip: true
insecure: true
"""
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    loaded = load_config(tmp_path / "c.yaml")
    writer = make_writer(loaded.config, loaded.doc)
    assert isinstance(writer, InfluxV2Writer)
    assert writer.config == InfluxV2Config(url="https://eu-central-1-1.aws.cloud2.influxdata.com",
                                           org="city", bucket="readings", token="t0ken",
                                           gzip=True)
    assert "t0ken" not in repr(writer.config)
    (tmp_path / "c.yaml").write_text(text.replace("https://", "ftp://"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"writer\.url"):
        load_config(tmp_path / "c.yaml")  # checked at load, before any connection
