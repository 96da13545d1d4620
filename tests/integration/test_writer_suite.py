"""One writer suite, run against both writers and a real server each.

- ``influxdb_v1``: InfluxV1Writer against Debian's InfluxDB 1.6 (the suite's ``influxdb``).
- ``influxdb_v2``: InfluxV2Writer (influxdb-client's async write API) against
  Debian's VictoriaMetrics, which implements InfluxDB 2.x's ``/api/v2/write``
  (simulators/victoria.py says what it does not share with InfluxDB 2.x).

Each case drives the collector's own WritePipeline, as the sources do: the
future a source waits on before it acks resolves only after the server took
the write; a database that is down is retried until it is back and nothing is
acked before; a resend overwrites instead of adding. The 2.x error answers
(400 partial write, 413, 429, 503) are contract-tested with recorded
responses in tests/unit/test_influx_v2_writer.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from collector.delivery import WritePipeline
from collector.ingest import Accepted, ingest
from collector.writers.base import Writer
from collector.writers.influxdb_v1 import InfluxV1Config, InfluxV1Writer
from collector.writers.influxdb_v2 import InfluxV2Config, InfluxV2Writer
from simulators.services import InfluxDB, ServiceError, find_binary
from simulators.victoria import VictoriaMetrics
from tests.helpers import rows

pytestmark = pytest.mark.integration

T0 = 1_760_000_000_000_000_000
_names = itertools.count()


@dataclass
class Backend:
    name: str
    server: InfluxDB | VictoriaMetrics
    db: str

    def writer(self) -> Writer:
        if isinstance(self.server, InfluxDB):
            return InfluxV1Writer(InfluxV1Config(url=self.server.url, database=self.db))
        return InfluxV2Writer(InfluxV2Config(url=self.server.url, org="cityedge",
                                             bucket=self.db, token="suite-token", gzip=True))

    def values(self, measurement: str, field: str, gateway: str) -> list[tuple[int, float]]:
        """(time in ms, value) of one field of one gateway, in time order."""
        if isinstance(self.server, InfluxDB):
            found = rows(self.server, self.db, f'SELECT "{field}" FROM "{measurement}" WHERE'
                         f" gateway = '{gateway}'")
            return [(int(r["time"]) // 10**6, float(r[field])) for r in found]
        out: list[tuple[int, float]] = []
        for series in self.server.export(f'{{__name__="{measurement}_{field}",'
                                         f'gateway="{gateway}"}}'):
            out += zip(series["timestamps"], series["values"], strict=True)
        return sorted(out)


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    if find_binary("victoria-metrics") is None:
        pytest.fail("victoria-metrics not found; install Debian's victoria-metrics package"
                    " (./run installs it)", pytrace=False)
    server = VictoriaMetrics(tmp_path_factory.mktemp("victoria"))
    try:
        server.start()
    except ServiceError as exc:
        pytest.fail(f"victoria-metrics did not start: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=["influxdb_v1", "influxdb_v2"])
def backend(request: pytest.FixtureRequest) -> Backend:
    db = f"suite_{next(_names)}"
    if request.param == "influxdb_v1":
        return Backend("influxdb_v1", request.getfixturevalue("influxdb"), db)
    return Backend("influxdb_v2", request.getfixturevalue("victoria"), db)


def accepted(gateway: str, values: list[float], first_seq: int = 1) -> Accepted:
    doc = {"v": 1, "gateway": gateway, "epoch": "0123456789abcdef", "batch": first_seq,
           "sent_ns": 1, "clock": {"synced": True, "boot": "b", "mono_ns": 1},
           "site": {"district": "d", "site": "s", "kind": "bus_stop"},
           "sensors": {"pm-1": {"model": "pms5003"}},
           "readings": [{"seq": first_seq + i, "sensor": "pm-1", "m": "particulate",
                         "t": T0 + (first_seq + i) * 10**9, "boot": "b", "mono": 1, "s": True,
                         "f": {"pm10_ugm3": v}} for i, v in enumerate(values)]}
    out = ingest(json.dumps(doc).encode(), gateway)
    assert isinstance(out, Accepted), out
    return out


async def _pipeline(backend: Backend) -> tuple[Writer, WritePipeline, asyncio.Task[None]]:
    writer = backend.writer()
    await writer.start()
    pipeline = WritePipeline(writer, linger=0, retry=(0.05, 0.2))
    return writer, pipeline, asyncio.create_task(pipeline.run())


async def _stop(writer: Writer, pipeline: WritePipeline, task: asyncio.Task[None]) -> None:
    await pipeline.close()
    await task
    await writer.close()


def test_written_when_the_future_resolves_and_a_resend_overwrites(backend: Backend) -> None:
    async def main() -> None:
        writer, pipeline, task = await _pipeline(backend)
        try:
            await asyncio.wait_for(pipeline.submit(accepted("gw-a", [12.5, 13.0, 14.25])), 10)
            # What a source acks now is in the database now.
            assert backend.values("particulate", "pm10_ugm3", "gw-a") == [
                ((T0 + s * 10**9) // 10**6, v) for s, v in ((1, 12.5), (2, 13.0), (3, 14.25))]
            # The gateway resends (its ack was lost): the same points, not new ones.
            await asyncio.wait_for(pipeline.submit(accepted("gw-a", [12.5, 13.0, 14.25])), 10)
            assert len(backend.values("particulate", "pm10_ugm3", "gw-a")) == 3
        finally:
            await _stop(writer, pipeline, task)

    asyncio.run(main())


def test_a_large_group_and_dead_letters_land(backend: Backend) -> None:
    async def main() -> None:
        writer, pipeline, task = await _pipeline(backend)
        try:
            futures = [pipeline.submit(accepted("gw-b", [float(i)] * 500, 1 + 500 * i))
                       for i in range(6)]
            await asyncio.wait_for(asyncio.gather(*futures), 30)
            assert len(backend.values("particulate", "pm10_ugm3", "gw-b")) == 3000
            bad = json.dumps({"v": 1, "gateway": "gw-b", "epoch": "0123456789abcdef",
                              "batch": 9, "sent_ns": 1,
                              "clock": {"synced": True, "boot": "b", "mono_ns": 1},
                              "sensors": {"pm-1": {}}, "readings": [
                                  {"seq": 9001, "sensor": "nope", "m": "particulate",
                                   "t": T0, "boot": "b", "mono": 1, "f": {"x": 1}}]})
            dead = ingest(bad.encode(), "gw-b")
            assert isinstance(dead, Accepted) and len(dead.dead_letters) == 1
            await asyncio.wait_for(pipeline.submit(dead), 10)
            assert [v for _, v in backend.values("cityedge_deadletter", "seq", "gw-b")] == [9001]
        finally:
            await _stop(writer, pipeline, task)

    asyncio.run(main())


def test_v2_down_database_is_retried_and_nothing_resolves_before(
        victoria: VictoriaMetrics) -> None:
    """The 1.x writer's outages are tests/integration/test_outage.py's (its own influxd)."""
    backend = Backend("influxdb_v2", victoria, f"suite_{next(_names)}")

    async def main() -> None:
        writer, pipeline, task = await _pipeline(backend)
        try:
            victoria.stop()
            fut = pipeline.submit(accepted("gw-c", [1.0, 2.0]))
            await asyncio.sleep(1.0)
            assert not fut.done() and pipeline.stats.write_retries >= 1
            await asyncio.to_thread(victoria.start)
            await asyncio.wait_for(fut, 20)
            assert [v for _, v in backend.values("particulate", "pm10_ugm3", "gw-c")] == [1.0,
                                                                                        2.0]
        finally:
            if not victoria.alive():
                victoria.start()
            await asyncio.wait_for(_stop(writer, pipeline, task), 20)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_problem_says_whether_the_database_answers(backend: Backend) -> None:
    """What the collector logs at start-up: nothing when the database answers, a reason
    when nothing listens at the configured address."""
    async def main() -> None:
        writer = backend.writer()
        await writer.start()
        try:
            assert await writer.problem() is None
            assert writer.target.startswith("InfluxDB")
            assert writer.config.url in writer.target  # type: ignore[attr-defined]
        finally:
            await writer.close()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again: nothing listens there
        dead = dataclasses.replace(writer.config, url=f"http://127.0.0.1:{port}")  # type: ignore[attr-defined]
        down = type(writer)(dead)  # type: ignore[call-arg]
        await down.start()
        try:
            why = await down.problem()
            assert why is not None and why.strip()
        finally:
            await down.close()

    asyncio.run(main())
