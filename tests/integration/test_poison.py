"""No input stops ingest: poison batches against a real collector process.

Real Mosquitto, real InfluxDB, the collector as its own process; the test plays
a gateway with a paho client, publishing batches as JSON it builds itself (so it
can send what no honest gateway would: a name ending in a backslash, a lone
surrogate, 10,000 fields, a 4 MB string, the collector's own measurements).
Before the fix, the first of these made the collector's write raise and the
process exit; the broker handed the unacked message to the restarted collector,
which exited again.

The checks: the collector stays up; every good reading lands exactly once; each
bad reading is in cityedge_deadletter with its reason, each bad batch refused
with its reason and counted on the health point; and nothing comes back: a
collector restarted afterwards receives no redelivery.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cityedge.mqtt import MqttClient, MqttOptions
from cityedge.uplink import Topics, decode_ack
from simulators.services import InfluxDB, Mosquitto
from tests.helpers import Proc, rows, wait_for, write_yaml

pytestmark = pytest.mark.integration

GW = "gw-poison"
EPOCH = "5e5e5e5e5e5e5e5e"
T0 = 1_700_000_000_000_000_000
SURROGATE = "SURROGATE_MARK"  # written into the JSON as the escape \udc80


def reading(seq: int, **over: Any) -> dict[str, Any]:
    r = {"seq": seq, "sensor": "pm-1", "m": "particulate", "t": T0 + seq * 10**9, "boot": "b",
         "mono": seq, "s": True, "f": {"pm2_5_ugm3": seq % 500, "pm10_ugm3": float(seq)}}
    return {**r, **over}


def batch(batch_id: int, readings: list[dict[str, Any]], **over: Any) -> bytes:
    doc = {"v": 1, "gateway": GW, "epoch": EPOCH, "batch": batch_id, "sent_ns": T0,
           "clock": {"synced": True, "boot": "b", "mono_ns": 1},
           "site": {"district": "마포구", "site": "망원동 1번 정류장", "kind": "bus_stop"},
           "sensors": {"pm-1": {"model": "pms5003"}}, "readings": readings, **over}
    return json.dumps(doc).replace(SURROGATE, "\\udc80").encode()


# (name, payload, refusal reason or None, {seq: dead-letter reason}, good seqs inside it)
POISON: list[tuple[str, bytes, str | None, dict[int, str], list[int]]] = [
    ("backslash names", batch(101, [reading(101, sensor="s" * 63 + "\\"),
                                    reading(102, m="m" * 63 + "\\"), reading(103)]),
     None, {101: "unknown_sensor", 102: "bad_measurement"}, [103]),
    ("surrogates in a reading", batch(102, [reading(111, f={"note": f"x{SURROGATE}"}),
                                            reading(112, f={SURROGATE: 1}),
                                            reading(113, m=f"m{SURROGATE}"), reading(114)]),
     None, {111: "bad_value", 112: "bad_field_name", 113: "bad_measurement"}, [114]),
    ("surrogate in a tag", batch(103, [reading(121)], site={"district": f"마포{SURROGATE}"}),
     "bad_field", {}, []),
    ("10,000 fields", batch(104, [reading(131, f={f"f{i}": i for i in range(10_000)}),
                                  reading(132)]),
     None, {131: "too_many_fields"}, [132]),
    ("4 MB string", batch(105, [reading(141, f={"note": "y" * 4_000_000}), reading(142)]),
     None, {141: "string_too_long"}, [142]),
    ("reserved measurements", batch(106, [reading(151, m="alerts"),
                                          reading(152, m="cityedge_collector"),
                                          reading(153, m="cityedge_deadletter"),
                                          reading(154)]),
     None, {151: "reserved_measurement", 152: "reserved_measurement",
            153: "reserved_measurement"}, [154]),
    ("not JSON", b"\xff\xfe garbage", "bad_json", {}, []),
    ("over 4 MiB", b" " * (4 * 1024 * 1024 + 1), "too_large", {}, []),
]
GOOD_BATCHES = 10  # of 10 readings each, seqs 1..100, sent between the poison


class Gateway:
    """Publishes batches QoS 1 and collects the collector's acks by batch id."""

    def __init__(self, mosquitto: Mosquitto, prefix: str) -> None:
        self.topics = Topics(prefix)
        self.client = MqttClient(MqttOptions("127.0.0.1", mosquitto.port, f"{prefix}-gw",
                                             clean_start=True,
                                             subscriptions=[(self.topics.ack(GW), 1)]))
        self.acks: dict[int, list[list[int]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Gateway:
        self.client.start()
        await self.client.wait_connected(10)
        self._task = asyncio.create_task(self._collect())
        await asyncio.sleep(0.3)  # the subscription is in place before anything is sent
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await self.client.close()

    async def _collect(self) -> None:
        while True:
            ack = decode_ack((await self.client.get()).payload)
            assert (ack.gateway, ack.epoch) == (GW, EPOCH)
            self.acks[ack.batch_id] = ack.seqs.as_pairs()

    def send(self, payload: bytes) -> None:
        assert self.client.publish(self.topics.up(GW), payload, qos=1)

    async def until_acked(self, sent: dict[int, bytes], collector: Proc, timeout: float,
                          resend_every: float = 3.0) -> None:
        """Resend what is not acked, as a gateway does, until every batch is acked."""
        deadline = time.monotonic() + timeout
        while missing := [b for b in sent if b not in self.acks]:
            assert collector.alive(), f"the collector exited:\n{collector.output()[-2000:]}"
            assert time.monotonic() < deadline, f"batches never acked: {missing[:10]}"
            await asyncio.sleep(resend_every)
            for b in missing:
                if b not in self.acks:
                    self.send(sent[b])


def collector_config(tmp: Path, name: str, mosquitto: Mosquitto, influxdb: InfluxDB,
                     **extra: Any) -> Path:
    return write_yaml(tmp / "collector.yaml", {
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": f"c-{name}",
                 "topic_prefix": f"test/{name}"},
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": name},
        "insecure": True,  # the plain broker; the secure setup's own tests cover the registry
        "batching": {"linger": 0.02},
        "health_interval": 1,
        **extra,
    })


def start_collector(config: Path, log: Path) -> Proc:
    proc = Proc(["collector.cli", "run", "--config", str(config)], log).start()
    wait_for(lambda: "collector running" in proc.output(), 20, "the collector to start")
    return proc


def health_since(influxdb: InfluxDB, db: str, since_ns: int) -> dict[str, Any]:
    """The collector's latest health point written after ``since_ns``."""
    got = rows(influxdb, db, f"SELECT * FROM cityedge_collector WHERE time > {since_ns} "
                             "ORDER BY time DESC LIMIT 1")
    return got[0] if got else {}


def check_what_landed(influxdb: InfluxDB, db: str, good: list[int]) -> None:
    # Every good reading once, nothing else in its measurement.
    expected = good + [s for p in POISON for s in p[4]]
    points = rows(influxdb, db, f"SELECT seq, pm2_5_ugm3 FROM particulate WHERE gateway='{GW}'")
    assert sorted(p["seq"] for p in points) == sorted(expected)
    # Every bad reading dead-lettered, once, with its reason.
    dead = rows(influxdb, db, f"SELECT seq, reason FROM cityedge_deadletter WHERE gateway='{GW}'")
    assert sorted((d["seq"], d["reason"]) for d in dead) == sorted(
        (s, r) for p in POISON for s, r in p[3].items())
    assert not rows(influxdb, db, "SELECT * FROM alerts")
    # Refusals counted by reason on the health point.
    wanted = {f"refused_{p[2]}": 1 for p in POISON if p[2] is not None}
    wait_for(lambda: all(health_since(influxdb, db, 0).get(k, 0) >= n
                         for k, n in wanted.items()), 15, f"health to show {wanted}")
    health = health_since(influxdb, db, 0)
    assert health["dead_letters_reserved_measurement"] == 3
    assert health["unencodable_points"] == 0
    assert health["failed_writes"] == 0


def test_poison_batches_neither_stop_the_collector_nor_come_back(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str
) -> None:
    config = collector_config(tmp_path, unique_name, mosquitto, influxdb)
    log = tmp_path / "collector.log"
    collector = start_collector(config, log)
    accepted = {b: payload for b, (_, payload, refused, _, _) in
                zip(range(101, 101 + len(POISON)), POISON, strict=True) if refused is None}
    good = list(range(1, GOOD_BATCHES * 10 + 1))
    try:
        async def publish() -> None:
            async with Gateway(mosquitto, f"test/{unique_name}") as gateway:
                sent: dict[int, bytes] = {}
                for i in range(GOOD_BATCHES):  # a good batch, a poison one, a good one...
                    sent[i + 1] = batch(i + 1, [reading(s) for s in good[i * 10:i * 10 + 10]])
                    gateway.send(sent[i + 1])
                    if i < len(POISON):
                        gateway.send(POISON[i][1])
                sent.update(accepted)
                await gateway.until_acked(sent, collector, timeout=60)
                await asyncio.sleep(1.0)  # time for a wrong ack to arrive
                refused_ids = {101 + i for i, p in enumerate(POISON) if p[2] is not None}
                assert not refused_ids & gateway.acks.keys(), "a refused batch was acked"
                # The acks name every seq of an accepted batch, dead-lettered ones too.
                for b, (_, _, _, dead, ok) in zip(range(101, 101 + len(POISON)), POISON,
                                                  strict=True):
                    if b in accepted:
                        acked = {s for lo, hi in gateway.acks[b] for s in range(lo, hi + 1)}
                        assert acked == set(dead) | set(ok), (b, acked)

        asyncio.run(asyncio.wait_for(publish(), 120))
        assert collector.alive(), collector.output()[-3000:]
        check_what_landed(influxdb, unique_name, good)
    finally:
        rc = collector.stop()
    assert rc == 0, collector.output()[-3000:]
    assert "Traceback" not in collector.output()
    refusal_lines = [line for line in collector.output().splitlines() if "refused batch" in line]
    assert len(refusal_lines) <= len(POISON), refusal_lines

    # A restarted collector gets nothing back: every message was answered to the broker.
    restarted_ns = time.time_ns()
    collector = start_collector(config, tmp_path / "collector-2.log")
    try:
        wait_for(lambda: bool(health_since(influxdb, unique_name, restarted_ns + 2 * 10**9)),
                 15, "a health point from the restarted collector")
        again = health_since(influxdb, unique_name, restarted_ns)
        assert again["batches"] == 0, again
        assert again["refused_batches"] == 0, again
        assert collector.alive()
    finally:
        assert collector.stop() == 0, collector.output()[-3000:]


def test_a_gateway_over_its_rate_is_refused_and_its_resends_land_every_reading_once(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str
) -> None:
    config = collector_config(tmp_path, unique_name, mosquitto, influxdb,
                              limits={"batches_per_s": 4, "burst": 5})
    collector = start_collector(config, tmp_path / "collector.log")
    n_batches, size = 30, 5
    try:
        async def publish() -> None:
            async with Gateway(mosquitto, f"test/{unique_name}") as gateway:
                sent = {b: batch(b, [reading((b - 1) * size + i) for i in range(1, size + 1)])
                        for b in range(1, n_batches + 1)}
                for payload in sent.values():
                    gateway.send(payload)
                await gateway.until_acked(sent, collector, timeout=60, resend_every=1.0)

        asyncio.run(asyncio.wait_for(publish(), 90))
        assert collector.alive(), collector.output()[-3000:]
        points = rows(influxdb, unique_name,
                      f"SELECT seq FROM particulate WHERE gateway='{GW}'")
        assert sorted(p["seq"] for p in points) == list(range(1, n_batches * size + 1))
        wait_for(lambda: health_since(influxdb, unique_name, 0).get("refused_rate_limited", 0)
                 > 0, 15, "rate-limited batches counted on the health point")
    finally:
        assert collector.stop() == 0, collector.output()[-3000:]
