"""MqttSource under a flood of invented gateway ids and poison: every message answered,
every per-gateway structure at its cap, memory flat.

100,000 messages from 100,000 gateway ids once grew a collector from 48 to 336 MB
for good. The source is fed through ``handle`` as the receive loop does; its
broker client is a recorder put where ``start()`` would put the paho adapter
(the only seam between the source and the broker), and the pipeline writes to a
counting writer, so what is measured is the source, ingest and the pipeline.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from collections.abc import Sequence

from cityedge.mqtt import Message
from collector.config import MqttSourceConfig
from collector.delivery import WritePipeline
from collector.lineprotocol import Point, encode
from collector.ratelimit import RateLimiter
from collector.sources.mqtt import MqttSource

PREFIX = "flood/v1"
N = 100_000
CAP = 1000


class Recorder:
    """What the source asks of its broker client: PUBACKs and ack publishes, counted."""

    def __init__(self) -> None:
        self.acked = 0
        self.published = 0

    def ack(self, _message: Message) -> None:
        self.acked += 1

    def publish(self, _topic: str, _payload: bytes, qos: int = 1) -> bool:
        assert qos == 1
        self.published += 1
        return True


class CountingWriter:
    name = "count"

    def __init__(self) -> None:
        self.points = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def write(self, points: Sequence[Point]) -> None:
        encode(list(points))
        self.points += len(points)


def batch(gateway: str, i: int) -> bytes:
    m = "alerts" if i % 10 == 3 else "particulate"  # some readings forge a reserved name
    return json.dumps({
        "v": 1, "gateway": gateway, "epoch": "00112233aabbccdd", "batch": i, "sent_ns": 1,
        "clock": {"synced": True, "boot": "b", "mono_ns": 1},
        "sensors": {"pm-1": {"model": "pms5003"}},
        "readings": [{"seq": 1, "sensor": "pm-1", "m": m, "t": 1_000 + i, "boot": "b",
                      "mono": 1, "f": {"pm2_5_ugm3": i % 500}}],
    }).encode()


def message(i: int) -> Message:
    gateway = f"gw-{i}"
    payload = b"garbage" if i % 10 == 7 else batch(gateway, i)
    return Message(f"{PREFIX}/{gateway}/up", payload, 1, False, i % 65535 + 1, 1)


async def settle(pipeline: WritePipeline) -> None:
    while pipeline.pending_points:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.002)  # the acks' callbacks


def test_100k_invented_gateways_keep_every_structure_at_its_cap() -> None:
    async def main() -> None:
        writer = CountingWriter()
        pipeline = WritePipeline(writer, max_points=5000, linger=0)
        task = asyncio.create_task(pipeline.run())
        limiter = RateLimiter(rate=1.0, burst=1, max_keys=CAP)
        source = MqttSource(MqttSourceConfig(topic_prefix=PREFIX), pipeline, limiter=limiter)
        client = Recorder()
        source.client = client  # type: ignore[assignment]
        for i in range(N):
            source.handle(message(i))
            if i % 1000 == 999:
                await settle(pipeline)  # the pipeline writes and the acks go out
            if i == N // 2 - 1:  # past the warm-up: the caps are full, the caches sized
                gc.collect()
                baseline = sys.getallocatedblocks()
        gc.collect()
        grown = sys.getallocatedblocks() - baseline
        await pipeline.close()
        await task

        assert client.acked == N  # every message answered to the broker
        good = N - N // 10  # every tenth is not JSON
        assert client.published == good  # every good batch acked to its gateway
        assert source.refused == {"bad_json": N // 10}
        assert writer.points == good  # a point or a dead letter for each reading
        assert pipeline.stats.dead_letter_reasons == {"reserved_measurement": N // 10}
        assert len(limiter) == CAP
        assert limiter.forgotten == N - CAP
        assert source.log.tracked <= 2
        # Anything kept per gateway (an id string, a counter entry) would be 50,000+ blocks.
        assert grown < 2_000, f"{grown} more memory blocks after 50,000 more gateways"

    asyncio.run(asyncio.wait_for(main(), 120))


# -- each way a message ends: answered to the broker every time -----------------------------
class Feeding(Recorder):
    """A Recorder that also hands the source its messages, as the broker client does."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[Message] = asyncio.Queue()

    async def get(self) -> Message:
        return await self.queue.get()


class Failing(CountingWriter):
    async def write(self, points: Sequence[Point]) -> None:
        raise RuntimeError("a writer bug")


async def source_with(writer: CountingWriter, limiter: RateLimiter | None = None,
                      ) -> tuple[MqttSource, Feeding, WritePipeline, asyncio.Task[None]]:
    pipeline = WritePipeline(writer, linger=0)
    task = asyncio.create_task(pipeline.run())
    source = MqttSource(MqttSourceConfig(topic_prefix=PREFIX), pipeline, limiter=limiter)
    client = Feeding()
    source.client = client  # type: ignore[assignment]
    return source, client, pipeline, task


def test_over_the_rate_a_batch_is_refused_and_pubacked_not_acked() -> None:
    async def main() -> None:
        source, client, pipeline, task = await source_with(
            CountingWriter(), RateLimiter(rate=0.01, burst=2, max_keys=10))
        for i in range(3):
            source.handle(Message(f"{PREFIX}/gw-1/up", batch("gw-1", i), 1, False, i + 1, 1))
        await settle(pipeline)
        assert source.refused == {"rate_limited": 1}
        assert client.acked == 3
        assert client.published == 2  # the refused one is not acked: the gateway resends it
        await pipeline.close()
        await task

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_message_that_breaks_the_handler_is_answered_and_the_loop_goes_on() -> None:
    async def main() -> None:
        source, client, pipeline, task = await source_with(CountingWriter())
        loop = asyncio.create_task(source.run())
        client.queue.put_nowait(Message(f"{PREFIX}/gw-1/up", None, 1, False, 1, 1))  # type: ignore[arg-type]
        client.queue.put_nowait(Message(f"{PREFIX}/gw-1/up", batch("gw-1", 1), 1, False, 2, 1))
        while client.published < 1:
            await asyncio.sleep(0.01)
        assert source.refused == {"internal_error": 1}
        assert client.acked == 2
        assert not loop.done()
        loop.cancel()
        await pipeline.close()
        await task

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_batch_the_pipeline_could_not_write_is_pubacked_not_acked() -> None:
    async def main() -> None:
        source, client, pipeline, task = await source_with(Failing())
        source.handle(Message(f"{PREFIX}/gw-1/up", batch("gw-1", 1), 1, False, 1, 1))
        await settle(pipeline)
        assert source.refused == {"not_written": 1}
        assert client.acked == 1
        assert client.published == 0
        assert pipeline.stats.failed_writes == 1
        await pipeline.close()
        await task

    asyncio.run(asyncio.wait_for(main(), 10))
