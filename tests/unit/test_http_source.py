"""HttpSource: a batch POSTed is acked in the response, and only after the write.

A real aiohttp server on a free loopback port, a real WritePipeline, and a
gated in-memory writer at the pipeline's seam (the Writer protocol), so a test
decides when "InfluxDB" accepts. Nothing is patched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest

from cityedge import yamlconfig
from cityedge.uplink import Ack, Batch, Reading, SeqRanges, decode_ack, encode_batch
from collector.delivery import WritePipeline
from collector.lineprotocol import Point
from collector.sources.http import HttpSource, HttpSourceConfig
from collector.writers import WriteError
from collector.writers.errors import PartialWrite, Refusal, RefusalKind

EPOCH = "00112233aabbccdd"
T0 = 1_700_000_000_000_000_000
TIMEOUT = 10.0


class GatedWriter:
    """Keeps what it is given; while ``gate`` is clear, writes wait (the database is slow)."""

    name = "memory"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.written: list[Point] = []
        self.calls = 0
        self.refusal: WriteError | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def write(self, points: Sequence[Point]) -> None:
        self.calls += 1
        await self.gate.wait()
        if self.refusal is not None:
            raise self.refusal
        self.written.extend(points)


def batch(first: int = 1, n: int = 3, gateway: str = "gw-1", batch_id: int = 1) -> Batch:
    return Batch(
        gateway=gateway,
        epoch=EPOCH,
        batch_id=batch_id,
        sent_ns=T0,
        clock_synced=True,
        boot="b00t",
        mono_ns=1,
        site={"district": "마포구", "site": "망원동", "kind": "bus_stop"},
        sensors={"pm-1": {"model": "pms5003"}},
        readings=tuple(
            Reading("pm-1", "particulate", {"pm2_5_ugm3": s}, T0 + s, "b00t", s, seq=s)
            for s in range(first, first + n)
        ),
    )


def expected_ack(b: Batch) -> Ack:
    return Ack(b.gateway, b.epoch, b.batch_id, b.all_seqs())


def ack_of(body: bytes) -> Ack:
    """The ack in a response, without the collector's clock (which differs per answer)."""
    ack = decode_ack(body)
    assert ack.time_ns is not None and abs(ack.time_ns - time.time_ns()) < 60e9
    return dataclasses.replace(ack, time_ns=None)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, TIMEOUT))


class Rig:
    def __init__(self, source: HttpSource, writer: GatedWriter, session: aiohttp.ClientSession):
        self.source, self.writer, self.session = source, writer, session

    def url(self, path: str) -> str:
        return self.source.url + path

    async def post(self, gateway: str, body: bytes, **kw: Any) -> tuple[int, bytes, Any]:
        async with self.session.post(self.url(f"/v1/gateways/{gateway}/batches"), data=body,
                                     **kw) as r:
            return r.status, await r.read(), r.headers

    async def post_batch(self, b: Batch, **kw: Any) -> tuple[int, bytes, Any]:
        return await self.post(b.gateway, encode_batch(b), **kw)


@asynccontextmanager
async def rig(**config: Any) -> AsyncIterator[Rig]:
    writer = GatedWriter()
    pipeline = WritePipeline(writer, max_points=1000, linger=0)
    task = asyncio.create_task(pipeline.run())
    source = HttpSource(HttpSourceConfig(port=0, **config), pipeline)
    await source.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Rig(source, writer, session)
    finally:
        writer.gate.set()
        await source.close()
        await pipeline.close()
        await task


def with_rig(**config: Any) -> Callable[[Callable[[Rig], Awaitable[None]]], Callable[[], None]]:
    def wrap(test: Callable[[Rig], Awaitable[None]]) -> Callable[[], None]:
        async def main() -> None:
            async with rig(**config) as r:
                await test(r)

        def runner() -> None:
            run(main())

        runner.__name__ = test.__name__
        return runner

    return wrap


def seqs_written(writer: GatedWriter) -> list[int]:
    return sorted(p.identity.seq for p in writer.written if p.identity)


# -- the ack ---------------------------------------------------------------------
@with_rig()
async def test_the_ack_is_sent_only_after_the_write(r: Rig) -> None:
    r.writer.gate.clear()
    b = batch(1, 3)
    answer = asyncio.create_task(r.post_batch(b))
    while r.writer.calls == 0:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert not answer.done(), "answered before the database accepted the write"
    r.writer.gate.set()
    status, body, headers = await answer
    assert status == 200
    assert ack_of(body) == expected_ack(b)
    assert decode_ack(body).seqs == SeqRanges(((1, 3),))
    assert headers["Content-Type"].startswith("application/json")
    assert seqs_written(r.writer) == [1, 2, 3]
    assert r.source.stats.batches == 1
    assert r.source.stats.readings == 3


@with_rig()
async def test_responses_carry_a_date(r: Rig) -> None:
    _, _, headers = await r.post_batch(batch())
    assert parsedate_to_datetime(headers["Date"]).tzinfo is not None
    async with r.session.get(r.url("/v1/health")) as resp:
        assert "Date" in resp.headers


@with_rig()
async def test_a_bad_reading_is_dead_lettered_and_acked_with_the_rest(r: Rig) -> None:
    doc = json.loads(encode_batch(batch(1, 2)))
    doc["readings"][1]["f"] = {}
    status, body, _ = await r.post("gw-1", json.dumps(doc).encode())
    assert status == 200
    assert decode_ack(body).seqs == SeqRanges(((1, 2),))
    assert {p.measurement for p in r.writer.written} == {"particulate", "cityedge_deadletter"}


# -- refusals --------------------------------------------------------------------
def _doc(**over: Any) -> bytes:
    doc = json.loads(encode_batch(batch()))
    doc.update(over)
    return json.dumps(doc).encode()


REFUSALS = [
    ("not json", b"{nope", "bad_json"),
    ("a list", b"[1, 2]", "bad_json"),
    ("future version", _doc(v=2), "unsupported_version"),
    ("no version", _doc(v=None), "unsupported_version"),
    ("another gateway", _doc(gateway="gw-2"), "gateway_mismatch"),
    ("bad epoch", _doc(epoch="XYZ"), "bad_field"),
    ("empty body", b"", "bad_json"),
]


@pytest.mark.parametrize(("case", "body", "reason"), REFUSALS, ids=[c[0] for c in REFUSALS])
def test_a_refused_batch_is_answered_400_with_the_reason(case: str, body: bytes,
                                                         reason: str) -> None:
    @with_rig()
    async def check(r: Rig) -> None:
        status, answer, headers = await r.post("gw-1", body)
        assert status == 400, case
        assert headers["Content-Type"].startswith("application/json")
        doc = json.loads(answer)
        assert doc["reason"] == reason
        assert isinstance(doc["detail"], str) and doc["detail"]
        assert r.source.refused == {reason: 1}
        assert r.writer.calls == 0

    check()


@with_rig(max_body_bytes=4096)
async def test_a_body_over_the_limit_is_413(r: Rig) -> None:
    big = b"x" * 5000
    status, answer, _ = await r.post("gw-1", big)
    assert status == 413
    assert json.loads(answer)["reason"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit still holds
        for _ in range(5):
            yield b"x" * 1000

    status, answer, _ = await r.post("gw-1", chunks())  # type: ignore[arg-type]
    assert status == 413
    assert json.loads(answer)["reason"] == "too_large"
    assert r.source.refused["too_large"] == 2
    assert r.writer.calls == 0


@with_rig()
async def test_only_post_on_known_paths(r: Rig) -> None:
    async with r.session.get(r.url("/v1/gateways/gw-1/batches")) as resp:
        assert resp.status == 405
    async with r.session.post(r.url("/v1/gateways/gw-1/other"), data=b"{}") as resp:
        assert resp.status == 404
    async with r.session.post(r.url("/v2/gateways/gw-1/batches"), data=b"{}") as resp:
        assert resp.status == 404


# -- when the database will not take it now ------------------------------------------
@with_rig(retry_after=7)
async def test_a_batch_the_pipeline_answers_not_written_gets_503_not_an_ack(r: Rig) -> None:
    r.writer.refusal = PartialWrite("HTTP 400: partial write: max-series-per-database limit "
                                    "exceeded", Refusal(RefusalKind.SERIES_LIMIT, 3))
    status, answer, headers = await r.post_batch(batch(1, 3))
    assert status == 503
    assert headers["Retry-After"] == "7"
    assert json.loads(answer)["reason"] == "not_written"
    assert r.source.refused == {"not_written": 1}
    assert r.source.stats.write_timeouts == 0
    r.writer.refusal = None  # the limit is raised: the resend lands
    status, _, _ = await r.post_batch(batch(1, 3, batch_id=2))
    assert status == 200
    assert seqs_written(r.writer) == [1, 2, 3]


# -- when the database is slow ------------------------------------------------------
@with_rig(write_timeout=0.2, retry_after=7)
async def test_a_slow_write_answers_503_and_still_lands_and_the_resend_joins_it(r: Rig) -> None:
    r.writer.gate.clear()
    b = batch(1, 3, batch_id=1)
    status, answer, headers = await r.post_batch(b)
    assert status == 503
    assert headers["Retry-After"] == "7"
    assert json.loads(answer)["reason"] == "write_timeout"
    assert r.source.pending_batches == 1  # the write goes on without the request

    # The gateway resends the same readings under a new batch id.
    again = batch(1, 3, batch_id=2)
    resend = asyncio.create_task(r.post_batch(again))
    await asyncio.sleep(0.05)
    r.writer.gate.set()
    status, answer, _ = await resend
    assert status == 200
    assert ack_of(answer) == expected_ack(again)
    assert r.source.stats.joined == 1
    assert r.writer.calls == 1  # joined the pending write: written once
    assert seqs_written(r.writer) == [1, 2, 3]
    assert r.source.pending_batches == 0
    assert r.source.stats.write_timeouts == 1


@with_rig(max_pending=2, write_timeout=5)
async def test_waiting_batches_are_bounded(r: Rig) -> None:
    r.writer.gate.clear()
    first = [asyncio.create_task(r.post_batch(batch(s, 1, batch_id=s))) for s in (1, 2)]
    while r.source.pending_batches < 2:
        await asyncio.sleep(0.01)
    status, answer, headers = await r.post_batch(batch(3, 1, batch_id=3))
    assert status == 503
    assert json.loads(answer)["reason"] == "busy"
    assert int(headers["Retry-After"]) >= 1
    r.writer.gate.set()
    assert [s for s, _, _ in await asyncio.gather(*first)] == [200, 200]
    assert (await r.post_batch(batch(3, 1, batch_id=3)))[0] == 200
    assert seqs_written(r.writer) == [1, 2, 3]
    assert r.source.stats.busy == 1


# -- tokens ------------------------------------------------------------------------
def bearer(token: str) -> dict[str, dict[str, str]]:
    return {"headers": {"Authorization": f"Bearer {token}"}}


@with_rig(token="shared-secret")
async def test_a_shared_token_is_required(r: Rig) -> None:
    status, answer, headers = await r.post_batch(batch())
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(answer)["reason"] == "unauthorized"
    assert (await r.post_batch(batch(), **bearer("wrong")))[0] == 401
    assert (await r.post_batch(batch(), headers={"Authorization": "Basic c2hhcmVk"}))[0] == 401
    assert (await r.post_batch(batch(), **bearer("shared-secret")))[0] == 200
    assert r.source.refused == {"unauthorized": 3}
    assert r.writer.calls == 1


@with_rig(tokens={"gw-1": "one", "gw-2": "two"})
async def test_per_gateway_tokens_admit_only_their_gateway(r: Rig) -> None:
    assert (await r.post_batch(batch(gateway="gw-1"), **bearer("one")))[0] == 200
    assert (await r.post_batch(batch(gateway="gw-1"), **bearer("two")))[0] == 401
    status, answer, _ = await r.post_batch(batch(gateway="gw-3"), **bearer("one"))
    assert (status, json.loads(answer)["reason"]) == (403, "forbidden")


@with_rig(token="shared", tokens={"gw-1": "own"})
async def test_a_gateway_with_its_own_token_cannot_use_the_shared_one(r: Rig) -> None:
    assert (await r.post_batch(batch(gateway="gw-1"), **bearer("shared")))[0] == 401
    assert (await r.post_batch(batch(gateway="gw-1"), **bearer("own")))[0] == 200
    assert (await r.post_batch(batch(gateway="gw-2"), **bearer("shared")))[0] == 200


# -- health, prefix, shutdown -------------------------------------------------------------
@with_rig()
async def test_health_shows_the_counters(r: Rig) -> None:
    await r.post_batch(batch(1, 4))
    await r.post("gw-1", b"{nope")
    async with r.session.get(r.url("/v1/health")) as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["status"] == "ok"
    assert doc["batches"] == 1
    assert doc["readings"] == 4
    assert doc["requests"] == 2
    assert doc["refused"] == {"bad_json": 1}
    assert doc["refused_batches"] == 1
    assert doc["pending_batches"] == 0
    assert doc["pipeline"]["writes"] == 1
    assert doc["pipeline"]["readings"] == 4


@with_rig(path_prefix="/cityedge")
async def test_the_api_can_live_under_a_prefix(r: Rig) -> None:
    assert r.source.url.endswith("/cityedge")
    assert (await r.post_batch(batch()))[0] == 200
    bare = f"http://127.0.0.1:{r.source.port}/v1/gateways/gw-1/batches"
    async with r.session.post(bare, data=encode_batch(batch())) as resp:
        assert resp.status == 404


def test_close_answers_the_requests_in_progress_then_stops_listening() -> None:
    async def main() -> None:
        async with rig(write_timeout=5) as r:
            r.writer.gate.clear()
            b = batch(1, 2)
            answer = asyncio.create_task(r.post_batch(b))
            while r.source.pending_batches == 0:
                await asyncio.sleep(0.01)
            closing = asyncio.create_task(r.source.close())
            await asyncio.sleep(0.1)
            assert not closing.done()  # waits for the request's write
            r.writer.gate.set()
            status, body, _ = await answer
            assert (status, ack_of(body)) == (200, expected_ack(b))
            await closing
            with pytest.raises(aiohttp.ClientConnectionError):
                await r.post_batch(batch(3, 1))

    run(main())


# -- config ------------------------------------------------------------------------
def test_config_from_yaml() -> None:
    doc = yamlconfig.parse(
        "port: 8443\npath_prefix: /cityedge\ntokens:\n  gw-1: abc\n  gw-2: def\n"
        "write_timeout: 3\n", "collector.yaml")
    config = yamlconfig.bind(HttpSourceConfig, doc.data, doc)
    assert config.port == 8443
    assert config.tokens == {"gw-1": "abc", "gw-2": "def"}
    assert config.write_timeout == 3.0
    assert config.max_body_bytes == 4 * 1024 * 1024
    assert config.token is None


@pytest.mark.parametrize(("text", "message"), [
    ("path_prefix: cityedge\n", "collector.yaml:1: path_prefix: expected '' or '/name'"),
    ("path_prefix: /cityedge/\n", "collector.yaml:1: path_prefix: expected '' or '/name'"),
    ("port: 70000\n", "collector.yaml:1: port: expected <= 65535"),
    ("max_body_bytes: 10\n", "collector.yaml:1: max_body_bytes: expected >= 1024"),
    ("tokens: [a]\n", "collector.yaml:1: tokens: expected a mapping of a string"),
    ("tokn: x\n", "collector.yaml:1: tokn: unknown key 'tokn'"),
])
def test_config_errors_name_the_key(text: str, message: str) -> None:
    doc = yamlconfig.parse(text, "collector.yaml")
    with pytest.raises(yamlconfig.ConfigError) as info:
        yamlconfig.bind(HttpSourceConfig, doc.data, doc)
    assert str(info.value).startswith(message), str(info.value)
