"""The uplink's promise, one suite for both transports (MQTT and HTTP).

Gateway side: a real Outbox (SQLite) drained through the transport under test
by ``Gateway``, the agent's uplink half in miniature: send unacked rows in
batches, at most ``max_in_flight`` at once, resend after ``ack_timeout``, and
delete exactly what an ack names. Collector side: the real source for the
transport, a WritePipeline and the InfluxDB 1.x writer, in this process, in
front of a real InfluxDB (and the suite's secure Mosquitto for MQTT). Both run
as deployed: TLS, the gateway's registry secret as its login or token, the
collector admitting by the registry and sealing acks. The checks are the
delivery promise: every reading in InfluxDB exactly once, the outbox empty,
and nothing deleted that InfluxDB does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cityedge.uplink import Batch, Reading, SeqRanges, encode_batch
from collector.admission import Admission
from collector.delivery import WritePipeline
from collector.sources.http import HttpSource, HttpSourceConfig
from collector.sources.mqtt import MqttSource
from collector.writers.influxdb_v1 import InfluxV1Config, InfluxV1Writer
from edge_agent.config import MqttConfig
from edge_agent.outbox import Outbox
from edge_agent.transports import MqttTransport, Transport
from edge_agent.transports.http import HttpTransport, HttpUplinkConfig
from simulators.services import InfluxDB, free_port, influx_query
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000
BOOT = "b00t"
KINDS = ["mqtt", "http"]


# -- the gateway's side ---------------------------------------------------------------
def fill(outbox: Outbox, n: int, sensor: str = "pm-1", t0: int = T0) -> None:
    """n readings, one a millisecond from t0, durable (synced) like the agent's commit window."""
    start = outbox.last_seq
    outbox.append([
        Reading(sensor, "particulate",
                {"pm2_5_ugm3": (start + i) % 500, "pm10_ugm3": float(start + i) / 4},
                t0 + (start + i) * 1_000_000, BOOT, start + i)
        for i in range(1, n + 1)
    ])
    outbox.sync()


class Gateway:
    """Outbox rows -> batches -> transport; acks -> delete. Runs until cancelled."""

    def __init__(self, gateway: str, outbox: Outbox, transport: Transport, *,
                 batch_size: int = 50, max_in_flight: int = 4, ack_timeout: float = 2.0,
                 payload_gateway: str | None = None) -> None:
        self.gateway, self.outbox, self.transport = gateway, outbox, transport
        self.batch_size, self.max_in_flight, self.ack_timeout = (
            batch_size, max_in_flight, ack_timeout)
        self.payload_gateway = payload_gateway or gateway
        self.flying: dict[int, tuple[SeqRanges, float]] = {}
        self.batch_id = 0
        self.sent = 0
        self.acks = 0
        self.deleted = 0

    def _batch(self) -> Batch | None:
        flying = {s for seqs, _ in self.flying.values() for s in seqs}
        limit = self.batch_size * (self.max_in_flight + 1)
        fresh = [r for r in self.outbox.fetch_after(0, self.outbox.durable_seq, limit)
                 if r.seq not in flying][: self.batch_size]
        if not fresh:
            return None
        self.batch_id += 1
        return Batch(gateway=self.payload_gateway, epoch=self.outbox.epoch,
                     batch_id=self.batch_id, sent_ns=time.time_ns(), clock_synced=True,
                     boot=BOOT, mono_ns=time.monotonic_ns(),
                     site={"district": "강남구", "site": "역삼동", "kind": "dust_zone"},
                     sensors={"pm-1": {"model": "pms5003"}}, readings=tuple(fresh))

    async def _send_loop(self) -> None:
        while True:
            now = time.monotonic()
            for bid in [b for b, (_, deadline) in self.flying.items() if deadline <= now]:
                del self.flying[bid]  # unacked in time: its rows are sent again
            batch = None
            if self.transport.ready() and len(self.flying) < self.max_in_flight:
                batch = self._batch()
            if batch is None:
                await asyncio.sleep(0.02)
                continue
            self.transport.send(encode_batch(batch))  # False: resent after the timeout
            self.sent += 1
            self.flying[batch.batch_id] = (batch.all_seqs(), now + self.ack_timeout)

    async def _ack_loop(self) -> None:
        while True:
            ack = await self.transport.next_ack()
            assert (ack.gateway, ack.epoch) == (self.payload_gateway, self.outbox.epoch)
            self.acks += 1
            self.flying.pop(ack.batch_id, None)
            self.deleted += self.outbox.delete(ack.seqs)

    async def run(self) -> None:
        await asyncio.gather(self._send_loop(), self._ack_loop())

    def waiting(self) -> int:
        return self.outbox.depth().readings


# -- the collector's side -------------------------------------------------------------
@dataclass
class Site:
    """Where a test runs: the uplink kind and the services it needs."""

    kind: str
    name: str
    secure: SecureFleet
    http_port: int

    def register(self, gateway: str) -> None:  # before a collector reads the registry
        if gateway not in self.secure.secrets:
            self.secure.add_gateway(gateway, district="강남구", site="역삼동", kind="dust_zone")

    def transport(self, gateway: str, max_in_flight: int = 4) -> Transport:
        s, secret, key = self.secure, self.secure.secret(gateway), self.secure.key(gateway)
        if self.kind == "mqtt":
            return MqttTransport(MqttConfig(port=s.broker.port, topic_prefix=s.prefix,
                                            username=gateway, password=secret,
                                            tls=s.tls_config()),
                                 gateway, max_in_flight=max_in_flight, key=key)
        return HttpTransport(HttpUplinkConfig(url=f"https://127.0.0.1:{self.http_port}",
                                              timeout=3.0, token=secret, tls=s.tls_config()),
                             gateway, max_in_flight=max_in_flight, key=key)


class Collector:
    """Source + WritePipeline + InfluxV1Writer in this process; ``crash()`` drops it mid-work."""

    def __init__(self, site: Site, influx_url: str, database: str) -> None:
        self.site = site
        self.writer = InfluxV1Writer(InfluxV1Config(url=influx_url, database=database,
                                                    timeout=2.0))
        self.pipeline = WritePipeline(self.writer, max_points=5000, linger=0.01)
        self.tasks: list[asyncio.Task[None]] = []
        self.source: MqttSource | HttpSource | None = None
        self.admission: Admission = site.secure.admission()  # also the keyring

    async def start(self) -> Collector:
        await self.writer.start()
        self.tasks.append(asyncio.create_task(self.pipeline.run()))
        secure, admission = self.site.secure, self.admission
        if self.site.kind == "mqtt":
            mqtt = MqttSource(secure.source_config(f"c-{self.site.name}"), self.pipeline,
                              admission=admission, keyring=admission)
            await mqtt.start()
            self.tasks.append(asyncio.create_task(mqtt.run()))
            self.source = mqtt
        else:
            http = HttpSource(HttpSourceConfig(port=self.site.http_port, write_timeout=1.0,
                                               retry_after=1, tls=secure.server_tls()),
                              self.pipeline, admission=admission, keyring=admission)
            await http.start()
            self.source = http
        return self

    async def crash(self) -> None:
        """Gone at once: writes in progress are abandoned, nothing pending is acked."""
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.source is not None:
            await self.source.close()
        await self.writer.close()

    async def stop(self) -> None:
        """Graceful: the HTTP source answers what it holds, the pipeline finishes."""
        if isinstance(self.source, HttpSource):
            await self.source.close()
        await self.pipeline.close()
        await asyncio.wait_for(asyncio.gather(*self.tasks[:1]), 10)
        await self.crash()


@pytest.fixture(params=KINDS)
def site(request: pytest.FixtureRequest, unique_name: str, secure: SecureFleet) -> Site:
    return Site(request.param, unique_name, secure, free_port())


def run(coro: Coroutine[Any, Any, None], timeout: float = 90) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def landed(influx_url: str, db: str, gateway: str) -> list[dict[str, Any]]:
    """Every particulate point of one gateway, as InfluxDB holds it."""
    q = f"SELECT seq, epoch, pm2_5_ugm3 FROM particulate WHERE gateway='{gateway}'"
    result = await asyncio.to_thread(influx_query, influx_url, q, db)
    out: list[dict[str, Any]] = []
    for res in result.get("results", []):
        assert "error" not in res, res
        for series in res.get("series", []):
            out += [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    return out


def assert_exactly_once(points: list[dict[str, Any]], epoch: str, n: int) -> None:
    seqs = sorted(p["seq"] for p in points)
    assert seqs == list(range(1, n + 1)), (
        f"{len(points)} points for {n} readings; missing "
        f"{sorted(set(range(1, n + 1)) - set(seqs))[:10]}, extra {len(seqs) - len(set(seqs))}")
    assert {p["epoch"] for p in points} == {epoch}


async def drive(gateway: Gateway, until_done: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the gateway while ``until_done`` does the test's part; surface a gateway crash."""
    task = asyncio.create_task(gateway.run())
    try:
        body = asyncio.create_task(until_done())
        done, _ = await asyncio.wait({task, body}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            body.cancel()
            task.result()
        await body
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@dataclass
class Rig:
    outbox: Outbox
    gateway: Gateway
    collector: Collector  # a test may replace it (a restart after a crash)


@contextlib.asynccontextmanager
async def rig(site: Site, influx_url: str, tmp_path: Path, gw: str, n: int,
              **gateway_options: Any) -> AsyncIterator[Rig]:
    """An outbox holding n readings, a collector on ``influx_url``, and the gateway between;
    closed in that order's reverse when the test is done with them."""
    site.register(gw)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    fill(outbox, n)
    collector = await Collector(site, influx_url, site.name).start()
    transport = site.transport(gw)
    await transport.start()
    r = Rig(outbox, Gateway(gw, outbox, transport, **gateway_options), collector)
    try:
        yield r
    finally:
        await transport.close()
        await r.collector.stop()
        outbox.close()


# -- the suite -----------------------------------------------------------------------------
def test_every_reading_lands_once_and_the_outbox_empties(
    site: Site, influxdb: InfluxDB, tmp_path: Path
) -> None:
    n, gw = 1200, f"gw-{site.kind}-all"

    async def main() -> None:
        async with rig(site, influxdb.url, tmp_path, gw, n) as r:
            await drive(r.gateway, lambda: until(lambda: r.gateway.waiting() == 0, 60,
                                                 "the outbox to drain"))
            assert r.gateway.deleted == n
        assert_exactly_once(await landed(influxdb.url, site.name, gw), r.outbox.epoch, n)

    run(main())


def test_a_collector_crash_midway_loses_nothing_and_duplicates_nothing(
    site: Site, influxdb: InfluxDB, tmp_path: Path
) -> None:
    n, gw = 3000, f"gw-{site.kind}-crash"

    async def main() -> None:
        async with rig(site, influxdb.url, tmp_path, gw, n, batch_size=40) as r:
            async def body() -> None:
                await until(lambda: r.gateway.deleted >= n // 4, 30, "a quarter acked")
                await r.collector.crash()
                crashed_at = r.gateway.deleted
                assert crashed_at < n, "drained before the crash: make n larger"
                await asyncio.sleep(1.5)  # the gateway keeps trying meanwhile
                # Whatever was deleted is in InfluxDB (acked only after the write).
                got = {p["seq"] for p in await landed(influxdb.url, site.name, gw)}
                deleted = set(range(1, n + 1)) - {x.seq for x in r.outbox.fetch_after(0, n, n)}
                assert deleted <= got, f"deleted but not in InfluxDB: {sorted(deleted - got)[:10]}"
                r.collector = await Collector(site, influxdb.url, site.name).start()
                await until(lambda: r.gateway.waiting() == 0, 60, "the outbox to drain")

            await drive(r.gateway, body)
            assert r.gateway.deleted == n
        assert_exactly_once(await landed(influxdb.url, site.name, gw), r.outbox.epoch, n)

    run(main())


def test_influxdb_unreachable_nothing_is_acked_nothing_deleted_then_all_lands_once(
    site: Site, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """InfluxDB down: batches are received and retried, never acked; the gateway keeps
    everything. When a database answers on that address, everything lands exactly once."""
    n, gw = 400, f"gw-{site.kind}-down"
    influx_dir = tmp_path / "influxdb"
    influx_dir.mkdir()
    later = InfluxDB(influx_dir, port=free_port())  # not started yet: the address refuses

    async def main() -> None:
        async with rig(site, later.url, tmp_path, gw, n, ack_timeout=1.0) as r:
            async def body() -> None:
                await until(lambda: r.collector.pipeline.stats.write_retries >= 2, 20,
                            "the collector to retry its write")
                await asyncio.sleep(3.0)  # past several ack timeouts: resends, still no ack
                assert r.gateway.sent > 1
                assert r.gateway.acks == 0
                assert r.gateway.deleted == 0
                assert r.gateway.waiting() == n
                await asyncio.to_thread(later.start)
                await asyncio.to_thread(later.query, f'CREATE DATABASE "{site.name}"', None,
                                        post=True)
                await until(lambda: r.gateway.waiting() == 0, 60, "the outbox to drain")

            await drive(r.gateway, body)
        assert_exactly_once(await landed(later.url, site.name, gw), r.outbox.epoch, n)

    try:
        run(main())
    finally:
        later.stop()


def test_a_refused_batch_is_never_acked_and_stays_in_the_outbox(
    site: Site, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """A payload naming another gateway than its topic/path is refused as a whole."""
    n, gw = 30, f"gw-{site.kind}-liar"

    async def main() -> None:
        async with rig(site, influxdb.url, tmp_path, gw, n, ack_timeout=0.5,
                       payload_gateway="gw-other") as r:
            source = r.collector.source
            assert source is not None
            await drive(r.gateway, lambda: until(
                lambda: source.refused["gateway_mismatch"] >= 2, 20,
                "the collector to refuse the batch and its resend"))
            assert r.gateway.acks == 0
            assert r.gateway.waiting() == n
        for g in (gw, "gw-other"):
            assert await landed(influxdb.url, site.name, g) == []

    run(main())


def test_a_new_epoch_is_a_new_identity(site: Site, influxdb: InfluxDB, tmp_path: Path) -> None:
    """A replaced SD card (a new outbox) reuses seqs under a new epoch: both sets land,
    and each card's acks delete only its own readings."""
    n, gw = 100, f"gw-{site.kind}-card"

    async def main() -> None:
        site.register(gw)
        collector = await Collector(site, influxdb.url, site.name).start()
        epochs = []
        try:
            for hour, card in enumerate(("old", "new")):
                outbox = Outbox(tmp_path / f"{card}.sqlite")
                assert outbox.epoch not in epochs
                epochs.append(outbox.epoch)
                fill(outbox, n, t0=T0 + hour * 3600 * 10**9)
                transport = site.transport(gw)
                await transport.start()
                gateway = Gateway(gw, outbox, transport)

                async def body(g: Gateway = gateway) -> None:
                    await until(lambda: g.waiting() == 0, 30, "the outbox to drain")

                try:
                    await drive(gateway, body)
                finally:
                    await transport.close()
                outbox.close()
        finally:
            await collector.stop()
        points = await landed(influxdb.url, site.name, gw)
        assert len(points) == 2 * n
        for epoch in epochs:
            assert sorted(p["seq"] for p in points if p["epoch"] == epoch) == list(
                range(1, n + 1))

    run(main())

