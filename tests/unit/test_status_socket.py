"""The agent's status socket holds few descriptors: a cap, a drain timeout, counted refusals.

A local client that opens connections and never speaks, or tails and never reads, once
held the agent's descriptors until its own open() failed with EMFILE.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from cityedge.uplink import Reading
from edge_agent import status
from edge_agent.config import StatusConfig
from edge_agent.status import MAX_CONNECTIONS, StatusServer, Tails


class Agent:  # what StatusServer and a tail read of the agent
    def __init__(self, tmp: Path) -> None:
        self.outbox_path = tmp / "outbox.sqlite"
        self.base_dir = tmp
        self.config = SimpleNamespace(status=StatusConfig(socket="agent.sock"))
        self.tails = Tails()


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_connections_over_the_cap_are_closed_at_once_and_counted(tmp_path: Path) -> None:
    async def main() -> None:
        agent = Agent(tmp_path)
        server = StatusServer(agent, None)  # type: ignore[arg-type]
        await server.start()
        held = [await asyncio.open_unix_connection(str(server.path))
                for _ in range(MAX_CONNECTIONS)]
        await asyncio.sleep(0.2)
        extra = [await asyncio.open_unix_connection(str(server.path)) for _ in range(20)]
        for reader, _ in extra:  # closed by the agent without waiting for a request
            assert await asyncio.wait_for(reader.read(), 1.0) == b""
        assert agent.tails.refused == {"too_many": 20}
        for _, writer in held + extra:
            writer.close()
        await server.close()
    run(main())


def test_a_tail_reader_that_stops_reading_is_hung_up_on(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "DRAIN_TIMEOUT_S", 0.3)

    async def main() -> None:
        agent = Agent(tmp_path)
        server = StatusServer(agent, None)  # type: ignore[arg-type]
        await server.start()
        _reader, writer = await asyncio.open_unix_connection(str(server.path), limit=1024)
        writer.write(b"tail\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        big = Reading("pm-1", "particulate", {"note": "x" * 1000}, 1, "b", 1)
        for _ in range(200):  # far more than the socket buffers hold; never read
            agent.tails.stored([big] * 50)
            await asyncio.sleep(0.01)
            if agent.tails.refused:
                break
        assert agent.tails.refused == {"stalled": 1}
        assert agent.tails.queues == set()  # its slot is free
        writer.close()
        await server.close()
    run(main())
