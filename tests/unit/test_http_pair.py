"""HttpTransport against the real HttpSource: both halves of the HTTP uplink, piped together.

What the gateway's side sees is what the collector's side said: acks for
written batches, the collector's refusal reasons, and its Retry-After. The
pipeline's writer is the gated in-memory one from test_http_source.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from cityedge.uplink import SeqRanges, encode_batch
from collector.delivery import WritePipeline
from collector.sources.http import HttpSource, HttpSourceConfig
from edge_agent.transports.http import HttpTransport, HttpUplinkConfig
from tests.unit.test_http_source import GatedWriter, batch

TIMEOUT = 10.0


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, TIMEOUT))


@asynccontextmanager
async def pair(*, token: str | None = None, max_in_flight: int = 4, gateway: str = "gw-1",
               **source: Any) -> AsyncIterator[tuple[HttpTransport, HttpSource, GatedWriter]]:
    writer = GatedWriter()
    pipeline = WritePipeline(writer, max_points=1000, linger=0)
    task = asyncio.create_task(pipeline.run())
    collector = HttpSource(HttpSourceConfig(port=0, **source), pipeline)
    await collector.start()
    transport = HttpTransport(HttpUplinkConfig(url=collector.url, token=token, timeout=5),
                              gateway, max_in_flight=max_in_flight)
    await transport.start()
    try:
        yield transport, collector, writer
    finally:
        writer.gate.set()
        await transport.close()
        await collector.close()
        await pipeline.close()
        await task


async def settle(transport: HttpTransport) -> None:
    while transport.in_flight:
        await asyncio.sleep(0.01)


def test_batches_are_acked_after_they_are_written() -> None:
    async def main() -> None:
        async with pair() as (transport, collector, writer):
            for i in range(4):
                assert transport.send(encode_batch(batch(i * 10 + 1, 10, batch_id=i + 1)))
            acks = [await transport.next_ack() for _ in range(4)]
            assert sorted(a.batch_id for a in acks) == [1, 2, 3, 4]
            assert sorted(s for a in acks for s in a.seqs) == sorted(
                s for i in range(4) for s in range(i * 10 + 1, i * 10 + 11))
            assert len(writer.written) == 40
            assert collector.stats.batches == 4
            assert transport.refused == {}

    run(main())


def test_the_collectors_reason_reaches_the_gateway() -> None:
    async def main() -> None:
        async with pair() as (transport, collector, writer):
            transport.send(encode_batch(batch(gateway="gw-2")))  # says gw-2, posted as gw-1
            await settle(transport)
            assert transport.refused == {"gateway_mismatch": 1}
            assert collector.refused == {"gateway_mismatch": 1}
            assert transport.ready()
            assert writer.calls == 0

    run(main())


def test_a_wrong_token_is_refused_not_retried_hot() -> None:
    async def main() -> None:
        async with pair(token="wrong", tokens={"gw-1": "right"}) as (transport, collector, _w):
            transport.send(encode_batch(batch()))
            await settle(transport)
            assert transport.refused == {"unauthorized": 1}
            assert collector.refused == {"unauthorized": 1}
            assert transport.ready()
            assert collector.stats.requests == 1

    run(main())


def test_a_slow_database_pauses_the_gateway_for_retry_after() -> None:
    async def main() -> None:
        async with pair(write_timeout=0.2, retry_after=1, max_pending=1) as (
            transport, collector, writer
        ):
            writer.gate.clear()
            b = batch(1, 5, batch_id=1)
            started = time.monotonic()
            transport.send(encode_batch(b))
            await settle(transport)
            assert not transport.ready()
            assert transport.stats.last_error.startswith("HTTP 503")
            while not transport.ready():
                await asyncio.sleep(0.01)
            assert time.monotonic() - started >= 1.0
            # The window resends under a new batch id; it joins the write still pending
            # (max_pending=1 would answer "busy" otherwise).
            transport.send(encode_batch(replace(b, batch_id=2)))
            while collector.stats.joined == 0:
                await asyncio.sleep(0.01)
            writer.gate.set()
            ack = await transport.next_ack()
            assert ack.batch_id == 2
            assert ack.seqs == SeqRanges(((1, 5),))
            assert sorted(p.identity.seq for p in writer.written if p.identity) == [1, 2, 3, 4, 5]

    run(main())


def test_a_stopped_collector_takes_the_link_down() -> None:
    async def main() -> None:
        async with pair() as (transport, collector, _writer):
            await collector.close()
            transport.send(encode_batch(batch()))
            await settle(transport)
            assert not transport.ready()
            assert transport.stats.failures == 1

    run(main())


def test_any_valid_gateway_id_travels_in_the_path() -> None:
    async def main() -> None:
        gw = "site.7:gw_01-a"  # every character ID_RE allows besides letters and digits
        async with pair(gateway=gw, tokens={gw: "t"}, token="t") as (transport, collector, _w):
            transport.send(encode_batch(batch(gateway=gw)))
            ack = await transport.next_ack()
            assert ack.gateway == gw
            assert collector.stats.batches == 1

    run(main())
