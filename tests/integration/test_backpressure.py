"""A slow collector bounds itself, and collectors sharing the load survive each other's death.

Real Mosquitto (Debian's 2.0.11, which ignores a subscriber's Receive Maximum once
messages queue), real InfluxDB of the test's own (it is paused with SIGSTOP), the
collectors as real processes. The test plays the gateways with one paho client:
every batch goes out at once (far past any collector's receive_maximum), and a
batch is resent only when its ack has not come within ``RESEND_S``, as a gateway's
timeout would.

The checks: every reading lands exactly once (resent points overwrite themselves,
so a count of a field over the readings is exact), no batch is ever "left unacked"
(the overflow that used to wait for the gateways' 15 s resend), and reading from the
broker paused while InfluxDB was stopped (the health point's mqtt_read_pauses).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cityedge.uplink import Topics
from simulators.services import InfluxDB, Mosquitto
from tests.helpers import Proc, rows, wait_for, write_yaml

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000
PER_BATCH = 50
RECEIVE_MAXIMUM = 20
RESEND_S = 20.0  # longer than any pause below: a resend means a batch was left behind


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxDB]:
    """An InfluxDB of this test's own: it is stopped and continued."""
    (tmp_path / "influx").mkdir()
    db = InfluxDB(tmp_path / "influx").start()
    try:
        yield db
    finally:
        db.stop()


def batch(gw: str, n: int) -> bytes:
    return json.dumps({
        "v": 1, "gateway": gw, "epoch": "0123456789abcdef", "batch": n, "sent_ns": T0,
        "clock": {"synced": True, "boot": "b", "mono_ns": 1},
        "site": {"district": "마포구", "site": f"site-{gw}", "kind": "bus_stop"},
        "sensors": {"pm-1": {"model": "pms5003"}},
        "readings": [{"seq": n * PER_BATCH + i + 1, "sensor": "pm-1", "m": "particulate",
                      "t": T0 + (n * PER_BATCH + i) * 10**6, "boot": "b", "mono": 1, "s": True,
                      "f": {"pm2_5_ugm3": i, "pm10_ugm3": float(n)}}
                     for i in range(PER_BATCH)],
    }).encode()


class Gateways:
    """Many gateways on one client: batches out, acks counted, resends after RESEND_S."""

    def __init__(self, port: int, topics: Topics, name: str) -> None:
        self.topics = topics
        self.acked: set[tuple[str, int]] = set()
        self.sent: dict[tuple[str, int], float] = {}
        self.resent = 0
        self.acks_at: list[float] = []
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_ack
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topics.ack("+"), 1)
        self.client.loop_start()

    def _on_ack(self, _c: object, _u: object, m: paho.MQTTMessage) -> None:
        doc = json.loads(m.payload)
        with self.lock:
            self.acked.add((doc["gateway"], doc["batch"]))
            self.acks_at.append(time.monotonic())

    def send(self, gw: str, n: int) -> None:
        self.sent[(gw, n)] = time.monotonic()
        self.client.publish(self.topics.up(gw), batch(gw, n), qos=1)

    def resend_late(self) -> None:
        now = time.monotonic()
        with self.lock:
            late = [k for k, t in self.sent.items() if k not in self.acked and now - t > RESEND_S]
        for gw, n in late:
            self.resent += 1
            self.send(gw, n)

    def all_acked(self) -> bool:
        self.resend_late()
        with self.lock:
            return self.acked >= self.sent.keys()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def collector(tmp: Path, name: str, mosquitto: Mosquitto, influx: InfluxDB, prefix: str,
              group: str) -> Proc:
    config = write_yaml(tmp / f"{name}.yaml", {
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": name,
                 "topic_prefix": prefix, "share_group": group,
                 "receive_maximum": RECEIVE_MAXIMUM},
        "writer": {"type": "influxdb_v1", "url": influx.url, "database": "bp"},
        "insecure": True,
        "health_interval": 1,
    })
    proc = Proc(["collector.cli", "run", "--config", str(config)], tmp / f"{name}.log").start()
    wait_for(lambda: "collector running" in proc.output(), 20, f"{name} to start")
    return proc


def landed(influx: InfluxDB) -> int:
    got = rows(influx, "bp", "SELECT count(pm2_5_ugm3) FROM particulate")
    return int(got[0]["count"]) if got else 0


def test_a_stalled_database_pauses_reading_and_leaves_nothing_unacked(
        tmp_path: Path, mosquitto: Mosquitto, influx: InfluxDB) -> None:
    topics = Topics("bp-stall")
    c = collector(tmp_path, "bp-stall-c", mosquitto, influx, topics.prefix, "bp-stall")
    gws = Gateways(mosquitto.port, topics, "bp-stall-gws")
    batches = [(f"gw-{g}", n) for n in range(10) for g in range(40)]  # 400 batches, 20,000
    try:
        wait_for(lambda: landed(influx) >= 0, 10, "the database")
        assert influx.proc is not None
        gws.send(*batches[0])
        wait_for(lambda: bool(gws.acked), 20, "the first ack")
        influx.proc.send_signal(signal.SIGSTOP)
        try:
            for gw, n in batches[1:]:  # all at once, 20 times receive_maximum
                gws.send(gw, n)
            time.sleep(6.0)
        finally:
            influx.proc.send_signal(signal.SIGCONT)
        wait_for(gws.all_acked, 90, "every batch acked")
        assert gws.resent == 0, "a batch waited for the gateway's resend"
        assert landed(influx) == len(batches) * PER_BATCH
        wait_for(lambda: bool(rows(influx, "bp", "SELECT last(mqtt_read_pauses) FROM"
                                   " cityedge_collector")), 10, "a health point")
        health = rows(influx, "bp", "SELECT last(mqtt_read_pauses) AS pauses,"
                      " last(mqtt_overflowed) AS overflowed, max(mqtt_unanswered_peak) AS peak"
                      " FROM cityedge_collector")[0]
        assert health["pauses"] >= 1, "reading never paused: no backpressure was needed?"
        assert health["overflowed"] == 0
        output = c.output()
        assert "left unacked" not in output and "incoming queue full" not in output
    finally:
        gws.close()
        c.stop()
