"""HttpSource against slow, idle and greedy clients, on a real loopback socket.

Slow clients (headers a byte at a time, a body that never ends) are cut off
after their timeout while a good client's batch is still written and acked;
connections past the cap get a 503 at once; a gateway over its rate limit gets
429 with Retry-After; and a flood of refusals makes a few log lines, not one
per refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from cityedge.uplink import encode_batch
from collector.delivery import WritePipeline
from collector.ratelimit import RateLimiter
from collector.sources.http import HttpSource, HttpSourceConfig
from tests.unit.test_http_source import GatedWriter, batch, run

PATH = "/v1/gateways/gw-1/batches"


@contextlib.asynccontextmanager
async def serving(limiter: RateLimiter | None = None, **config: Any) -> AsyncIterator[HttpSource]:
    writer = GatedWriter()
    pipeline = WritePipeline(writer, max_points=1000, linger=0)
    task = asyncio.create_task(pipeline.run())
    source = HttpSource(HttpSourceConfig(port=0, **config), pipeline, limiter=limiter)
    await source.start()
    try:
        yield source
    finally:
        await source.close()
        await pipeline.close()
        await task


async def post_good(source: HttpSource, gateway: str = "gw-1") -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.post(
        f"{source.url}/v1/gateways/{gateway}/batches",
        data=encode_batch(batch(gateway=gateway))) as r:
        await r.read()
        return r.status, dict(r.headers)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """What the server sent before it closed the connection (b"" if nothing)."""
    got = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(4096):
            got += chunk
    return got


async def slow_headers(source: HttpSource, stop: asyncio.Event) -> float:
    """Send a request's headers one byte every 50 ms; the seconds until the server hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
    started = time.monotonic()
    head = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "X-Padding: " + "a" * 5000).encode()
    try:
        for byte in head:
            if stop.is_set() or reader.at_eof():
                break
            writer.write(bytes([byte]))
            try:
                await writer.drain()
                async with asyncio.timeout(0.05):
                    if await reader.read(1) == b"":
                        break
            except TimeoutError:
                continue
            except ConnectionError:
                break
        return time.monotonic() - started
    finally:
        writer.close()


def test_slow_headers_are_cut_off_while_a_good_batch_is_acked() -> None:
    async def main() -> None:
        async with serving(header_timeout=0.6) as source:
            stop = asyncio.Event()
            slow = [asyncio.create_task(slow_headers(source, stop)) for _ in range(20)]
            await asyncio.sleep(0.2)
            status, _ = await post_good(source)  # while twenty clients dawdle
            assert status == 200
            held = await asyncio.wait_for(asyncio.gather(*slow), 5)
            stop.set()
            assert all(0.5 < t < 2.5 for t in held), held
            assert source.guard.counts["header_timeout"] == 20

    run(main())


def test_a_connection_that_never_sends_anything_is_closed() -> None:
    async def main() -> None:
        async with serving(header_timeout=0.3) as source:
            reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
            assert await closed_by_server(reader, 2.0) == b""
            writer.close()
            assert source.guard.counts["header_timeout"] == 1

    run(main())


def test_a_body_that_never_ends_gets_408_and_the_connection_is_closed() -> None:
    async def main() -> None:
        async with serving(body_timeout=0.4) as source:
            reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
            writer.write((f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                          '{"v": 1, ').encode())
            await writer.drain()
            started = time.monotonic()
            answer = await closed_by_server(reader, 5.0)  # the linger ends it, at the latest
            writer.close()
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert b"body_timeout" in answer
            assert time.monotonic() - started < 4.0
            assert source.refused["body_timeout"] == 1
            status, _ = await post_good(source)
            assert status == 200

    run(main())


def test_connections_past_the_cap_get_503_at_once_until_slots_free() -> None:
    async def main() -> None:
        async with serving(max_connections=3, header_timeout=0.5) as source:
            idle = [await asyncio.open_connection("127.0.0.1", source.port) for _ in range(3)]
            await asyncio.sleep(0.05)
            reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
            answer = await closed_by_server(reader, 1.0)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert b"Retry-After: 5" in answer
            assert source.guard.counts["too_many_connections"] == 1
            for r, _ in idle:  # the header timeout frees them
                await closed_by_server(r, 2.0)
            for _, w in idle:
                w.close()
            await asyncio.sleep(0.05)
            assert (await post_good(source))[0] == 200

    run(main())


def test_a_gateway_over_its_rate_limit_gets_429_with_retry_after() -> None:
    async def main() -> None:
        limiter = RateLimiter(rate=0.5, burst=2, max_keys=10)
        async with serving(limiter=limiter) as source:
            assert [(await post_good(source))[0] for _ in range(2)] == [200, 200]
            status, headers = await post_good(source)
            assert status == 429
            assert headers["Retry-After"] == "2"  # a token every 2 s
            assert (await post_good(source, "gw-2"))[0] == 200  # others are not held up
            assert source.refused["rate_limited"] == 1
            assert source.stats.rate_limited == 1

    run(main())


def test_a_flood_of_refusals_logs_a_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with serving() as source, aiohttp.ClientSession() as session:
            for i in range(300):
                async with session.post(f"{source.url}/v1/gateways/gw-{i % 5}/batches",
                                        data=b"garbage") as r:
                    assert r.status == 400
            assert source.refused["bad_json"] == 300

    with caplog.at_level(logging.WARNING, "collector.sources.http"):
        run(main())
    lines = [r for r in caplog.records if r.name == "collector.sources.http"]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]
