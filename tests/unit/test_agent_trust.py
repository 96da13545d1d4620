"""The agent's ack and time rules, driven through its transport seam (edge_agent/agent.py).

A real Agent with a real outbox (SQLite in a temporary folder) and a
transport that hands it acks as the real transports do once an ack passed
their seal check, so what is tested is what an ack may still do after that:
delete only the seqs of the batch it names, and anchor the clock only when
it answers a probe or batch in flight with a plausible time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from cityedge.uplink import Ack, Batch, Reading, SeqRanges, decode_batch, encode_batch
from cityedge.uplink.payload import MAX_PAYLOAD_BYTES
from edge_agent.agent import Agent
from edge_agent.config import (
    AGENT_SENSOR,
    AgentConfig,
    GatewayConfig,
    OutboxConfig,
    SiteConfig,
    UplinkConfig,
)
from edge_agent.outbox import Outbox
from edge_agent.timebase import MAX_TIME_STEP_NS, TIME_FLOOR_NS

GW = "gw-trust-1"
YEAR_2100_NS = 4_102_444_800 * 10**9
S = 10**9


class HandOver:
    """The transport seam: batches sent are kept, acks are handed in by the test."""

    def __init__(self) -> None:
        self.sent: list[Batch] = []
        self.acks: asyncio.Queue[Ack] = asyncio.Queue()
        self.downlink: Callable[[bytes], Awaitable[bytes]] | None = None
        self.bad_ack_reasons: Counter[str] = Counter()

    async def start(self) -> None:
        pass

    def ready(self) -> bool:
        return True

    def send(self, payload: bytes) -> bool:
        self.sent.append(decode_batch(payload))
        return True

    async def next_ack(self) -> Ack:
        return await self.acks.get()

    def health_fields(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        pass


def config(tmp: Path, synced: bool) -> AgentConfig:
    return AgentConfig(
        gateway=GatewayConfig(GW, SiteConfig("종로구", "세종로", "bus_stop")),
        sensors=[], outbox=OutboxConfig(path=str(tmp / "outbox.sqlite"), commit_window=0.05),
        uplink=UplinkConfig(batch_size=10, max_in_flight=2, ack_timeout=60),
        clock_synced=synced, clock_hold_max=3600, health_interval=3600, shutdown_timeout=0)


def prefill(tmp: Path, n: int) -> str:
    """n readings stored by an earlier run (another boot, synchronised); returns the epoch."""
    outbox = Outbox(tmp / "outbox.sqlite")
    outbox.append([Reading(AGENT_SENSOR, "gateway_health", {"uptime_s": i}, time.time_ns(),
                           "old", i) for i in range(n)])
    epoch = outbox.epoch
    outbox.close()
    return epoch


@asynccontextmanager
async def running(tmp: Path, *, synced: bool) -> AsyncIterator[tuple[Agent, HandOver]]:
    link = HandOver()
    agent = Agent(config(tmp, synced), tmp, transport=link)
    task = asyncio.create_task(agent.serve())
    try:
        yield agent, link
    finally:
        agent.should_exit.set()
        await asyncio.wait_for(task, 10)


async def until(predicate: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0.01)
    assert predicate(), what


async def waiting(agent: Agent) -> int:
    assert agent.outbox is not None
    return (await agent.io_call(agent.outbox.depth)).readings


def test_an_ack_for_2_62_seqs_deletes_only_the_batch_it_names(tmp_path: Path) -> None:
    epoch = prefill(tmp_path, 32)

    async def main() -> None:
        async with running(tmp_path, synced=True) as (agent, link):
            await until(lambda: len(link.sent) >= 2, "two batches in flight")
            first = link.sent[0]
            assert first.all_seqs() == SeqRanges(((1, 10),))
            # A previous run's (or a made-up) batch id: nothing.
            await link.acks.put(Ack(GW, epoch, first.batch_id + 1000, SeqRanges(((1, 2**62),))))
            await until(lambda: agent.window.acks_unknown_batch == 1, "the unknown batch")
            assert await waiting(agent) == 32
            await link.acks.put(Ack(GW, epoch, first.batch_id, SeqRanges(((1, 2**62),))))
            await until(lambda: agent.acked == 10, "the batch's seqs deleted")
            assert await waiting(agent) == 22  # the 22 never confirmed are still there
            fields = (await agent.health.gateway_reading()).fields
            assert fields["ack_seqs_ignored"] == 2**62 - 10
            assert fields["acks_unknown_batch"] == 1
            other = Ack(GW, "ffffffffffffffff", link.sent[1].batch_id, SeqRanges(((1, 50),)))
            await link.acks.put(other)  # another outbox's ack
            await until(lambda: agent.acks_other_outbox == 1, "the other outbox")
            assert (await agent.health.gateway_reading()).fields["bad_acks_other_outbox"] == 1
            assert await waiting(agent) == 22

    asyncio.run(main())


def test_a_time_answer_anchors_only_a_probe_in_flight_with_a_plausible_time(
        tmp_path: Path) -> None:
    epoch = prefill(tmp_path, 0)

    async def main() -> None:
        async with running(tmp_path, synced=False) as (agent, link):
            await until(lambda: any(not b.all_seqs() for b in link.sent), "a time probe")
            probe = next(b for b in link.sent if not b.all_seqs()).batch_id
            assert agent.anchoring.timebase is not None
            answers = [
                (probe, YEAR_2100_NS, "implausible"),  # the forged answer of the report
                (probe, TIME_FLOOR_NS - S, "implausible"),
                (probe, TIME_FLOOR_NS + MAX_TIME_STEP_NS + 1, "implausible"),
                (probe + 1000, time.time_ns(), "not_in_flight"),
            ]
            for n, (batch_id, time_ns, reason) in enumerate(answers, 1):
                await link.acks.put(Ack(GW, epoch, batch_id, SeqRanges(), time_ns))
                await until(lambda n=n: sum(agent.anchoring.answers_refused.values()) == n,
                            f"answer {n} refused")
                assert agent.anchoring.answers_refused[reason] >= 1
                assert agent.anchoring.timebase.current.anchor is None
            fields = (await agent.health.gateway_reading()).fields
            assert fields["time_answers_refused"] == 4
            assert fields["time_answers_refused_implausible"] == 3
            assert fields["clock_anchor"] == "none"
            # The collector's own answer to the same probe still counts.
            now = time.time_ns()
            await link.acks.put(Ack(GW, epoch, probe, SeqRanges(), now))
            await until(lambda: agent.anchoring.timebase is not None
                        and agent.anchoring.timebase.current.anchor is not None, "the anchor")
            anchor = agent.anchoring.timebase.current.anchor
            assert anchor is not None and anchor.source == "collector"
            assert abs(anchor.wall_ns - now) < 60 * S

    asyncio.run(main())


def test_a_batch_the_collector_would_refuse_as_too_large_is_sent_in_parts(
        tmp_path: Path) -> None:
    """batch_size readings may encode past MAX_PAYLOAD_BYTES (the collector refuses the
    whole batch, for good): the agent sends the first ones that fit and the rest next."""
    big = "x" * 1000
    outbox = Outbox(tmp_path / "outbox.sqlite")
    outbox.append([Reading(AGENT_SENSOR, "gateway_health", {"note": big, "i": i},
                           time.time_ns(), "old", i) for i in range(6000)])
    outbox.close()
    cfg = config(tmp_path, True)
    cfg = dataclasses.replace(cfg, uplink=dataclasses.replace(cfg.uplink, batch_size=5000))

    async def main() -> None:
        link = HandOver()
        agent = Agent(cfg, tmp_path, transport=link)
        task = asyncio.create_task(agent.serve())
        try:
            await until(lambda: sum(len(b.readings) for b in link.sent) >= 4000, "sent")
            sizes = [len(encode_batch(b)) for b in link.sent if b.readings]
            assert max(sizes) <= MAX_PAYLOAD_BYTES
            sent = [r.seq for b in link.sent for r in b.readings]
            assert sent == sorted(set(sent)) and sent[0] == 1  # in order, none twice
            assert agent.split_batches >= 1
            assert (await agent.health.gateway_reading()).fields["split_batches"] >= 1
        finally:
            agent.should_exit.set()
            await asyncio.wait_for(task, 10)

    asyncio.run(main())
