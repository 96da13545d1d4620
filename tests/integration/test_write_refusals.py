"""What InfluxDB refuses costs one request per distinct refusal, and is never acked unstored.

Real influxd (Debian's 1.6), the collector's own pipeline and writer; requests are
counted at the writer. A registered gateway sending 5,000 readings whose field has
the wrong type used to cost three requests per reading (bisection down to single
points, then a dead letter each) and held every other gateway's batch behind it.
A reading refused because the database's series limit is reached used to be acked
(its dead letter, a new series too, was refused and the reading counted as dropped).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from collector.config import load_config
from collector.delivery import WriteFailed, WritePipeline
from collector.ingest import Accepted, ingest
from collector.service import CollectorService
from collector.writers.influxdb_v1 import InfluxV1Config, InfluxV1Writer
from simulators.services import InfluxDB
from tests.helpers import rows, write_yaml

pytestmark = pytest.mark.integration

T0 = 1_760_000_000_000_000_000
CONFLICTS = 5000
# The group that holds them: one write, one rewrite without them (plus their dead
# letters); a margin of two for answers that name one conflict at a time.
MAX_REQUESTS = 4


def accepted(gateway: str, readings: Sequence[tuple[int, str, Any]]) -> Accepted:
    """A batch of (seq, sensor, pm2_5_ugm3) readings, one second apart."""
    doc = {"v": 1, "gateway": gateway, "epoch": "0123456789abcdef", "batch": readings[0][0],
           "sent_ns": 1, "clock": {"synced": True, "boot": "b", "mono_ns": 1},
           "site": {"district": "d", "site": "s", "kind": "bus_stop"},
           "sensors": {sensor: {"model": "m"} for _, sensor, _ in readings},
           "readings": [{"seq": seq, "sensor": sensor, "m": "particulate",
                         "t": T0 + seq * 10**9, "boot": "b", "mono": seq, "s": True,
                         "f": {"pm2_5_ugm3": value}} for seq, sensor, value in readings]}
    out = ingest(json.dumps(doc).encode(), gateway)
    assert isinstance(out, Accepted), out
    return out


def count(influx: InfluxDB, db: str, q: str) -> int:
    found = rows(influx, db, q)
    return int(found[0]["count"]) if found else 0


async def started(url: str, db: str, **options: Any) -> tuple[InfluxV1Writer, WritePipeline,
                                                               asyncio.Task[None]]:
    writer = InfluxV1Writer(InfluxV1Config(url=url, database=db))
    await writer.start()
    pipeline = WritePipeline(writer, retry=(0.01, 0.05), **options)
    return writer, pipeline, asyncio.create_task(pipeline.run())


async def stopped(writer: InfluxV1Writer, pipeline: WritePipeline,
                  task: asyncio.Task[None]) -> None:
    await pipeline.close()
    await task
    await writer.close()


def test_5000_field_type_conflicts_cost_a_few_requests(influxdb: InfluxDB,
                                                        unique_name: str) -> None:
    db = unique_name

    async def main() -> None:
        # One group holds both batches, so the honest one lands in the same writes.
        writer, pipeline, task = await started(influxdb.url, db, max_points=2 * CONFLICTS)
        await pipeline.submit(accepted("gw-honest", [(1, "pm-1", 12.5)]))  # the field: float
        before, t0 = writer.requests, time.perf_counter()
        hostile = pipeline.submit(
            accepted("gw-evil", [(s, "pm-1", "x") for s in range(1, CONFLICTS + 1)]))
        honest = pipeline.submit(
            accepted("gw-honest", [(s, "pm-1", s + 0.5) for s in range(100, 110)]))
        await asyncio.gather(hostile, honest)  # both acked: every reading stored somewhere
        spent, took = writer.requests - before, time.perf_counter() - t0
        print(f"{CONFLICTS} conflicts: {spent} requests, {took:.2f} s")
        assert spent <= MAX_REQUESTS
        assert pipeline.stats.rejected_points == CONFLICTS
        assert pipeline.stats.not_written == {}
        await stopped(writer, pipeline, task)

    asyncio.run(asyncio.wait_for(main(), 60))
    assert count(influxdb, db, "SELECT count(pm2_5_ugm3) FROM particulate "
                               "WHERE gateway = 'gw-honest'") == 11
    assert count(influxdb, db, "SELECT count(pm2_5_ugm3) FROM particulate "
                               "WHERE gateway = 'gw-evil'") == 0
    dead = rows(influxdb, db, "SELECT seq, detail FROM cityedge_deadletter "
                              "WHERE gateway = 'gw-evil' AND reason = 'database_refused'")
    assert sorted(r["seq"] for r in dead) == list(range(1, CONFLICTS + 1))
    assert all("field type conflict" in r["detail"] for r in dead)


def test_a_new_series_past_the_limit_is_not_acked_and_lands_once_raised(
        tmp_path: Path) -> None:
    influx = InfluxDB(tmp_path / "influxdb", max_series_per_database=30)
    influx.workdir.mkdir()
    influx.start()
    db = "limited"

    config = write_yaml(tmp_path / "collector.yaml", {
        "writer": {"type": "influxdb_v1", "url": influx.url, "database": db},
        "mqtt": None, "http": {"port": 0, "token": "t"}, "insecure": True})

    async def main() -> None:
        # The service's own pipeline and writer, not started: its health point is read.
        service = CollectorService(load_config(config))
        writer, pipeline = service.writer, service.pipeline
        await writer.start()
        task = asyncio.create_task(pipeline.run())
        # A gateway invents sensor ids, each a new series, until the database's limit.
        for s in range(1, 61):
            try:
                await pipeline.submit(accepted("gw-evil", [(s, f"x{s}", 1.5)]))
            except WriteFailed as exc:
                assert "series_limit" in str(exc)
                break
        else:
            pytest.fail("the series limit was never reached")
        # An honest gateway's newly installed sensor: a new series, refused for now.
        new = accepted("gw-honest", [(77, "pm-new", 7.5)])
        with pytest.raises(WriteFailed, match="series_limit"):
            await pipeline.submit(new)  # not acked: the gateway keeps it and resends
        assert pipeline.stats.dropped_points == 0
        assert pipeline.stats.not_written["series_limit"] == 2
        assert pipeline.stats.rejected_points == 0  # not dead-lettered: not its fault
        health = service.health_point().fields
        assert health["not_written_series_limit"] == 2
        assert health["dropped_points"] == 0
        assert count(influx, db, "SELECT count(pm2_5_ugm3) FROM particulate "
                                 "WHERE gateway = 'gw-honest'") == 0
        # The operator raises the limit; the gateway's resend lands, once.
        influx.stop()
        influx.max_series_per_database = None
        influx.start()
        await pipeline.submit(new)
        await pipeline.submit(new)  # a second resend (its ack lost) overwrites itself
        await stopped(writer, pipeline, task)

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
        found = rows(influx, db, "SELECT pm2_5_ugm3 FROM particulate "
                                 "WHERE gateway = 'gw-honest' AND sensor = 'pm-new'")
        assert [r["pm2_5_ugm3"] for r in found] == [7.5]
        assert rows(influx, db, "SELECT * FROM cityedge_deadletter") == []
    finally:
        influx.stop()
