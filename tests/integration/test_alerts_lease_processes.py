"""``lease: mqtt`` across real collector processes: ``kill -9`` of the leader.

Two collectors with different state folders (as on two hosts) stand for the
lease; one leads, an alert fires and is notified once; the leader is killed
with SIGKILL (the kernel closes its socket, so Mosquitto publishes its will at
once), the other takes over within two seconds, restores the open alert from
the broker's retained state message, does not notify it again, and notifies
the resolution exactly once. test_alerts_lease.py has the in-process cases.

On the suite's secure broker: the collectors log in with the collector account
and admit the gateway by the registry; the gateway logs in as itself.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from cityedge.mqtt import MqttClient
from cityedge.uplink import Batch, Reading, encode_batch
from collector.alerts.handover import decode_header
from simulators.services import InfluxDB
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.integration.test_alerts_lease import KEEPALIVE, RULES, until
from tests.secure_fleet import SecureFleet
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration


def collector(tmp: Path, who: str, *, secure: SecureFleet, influxdb: InfluxDB, name: str,
              hook: str) -> Proc:
    (tmp / "rules.yaml").write_text(RULES)
    path = write_yaml(tmp / f"collector-{who}.yaml", {
        "registry": str(secure.registry_path),
        # One share group: the two collectors split the uplinks between them.
        "mqtt": secure.collector_mqtt(f"c-{who}-{name}", share_group=f"g-{name}",
                                      keepalive=KEEPALIVE),
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": name},
        "batching": {"linger": 0.02},
        "health_interval": 1,
        "alerts": {"rules": ["rules.yaml"], "state_dir": f"state-{who}", "lease": "mqtt",
                   "observe_uplinks": True, "status": False,
                   "notifiers": [{"type": "webhook", "url": f"{hook}/{who}", "timeout": 5}]},
    })
    return Proc(["collector.cli", "run", "--config", str(path)], tmp / f"collector-{who}.log")


LEASE_SITE = {"district": "강남구", "site": "역삼초등학교", "kind": "dust_zone"}


class Gateway:
    """Publishes uplink batches as a gateway would (the collectors ack; we do not wait);
    ``watch``, on the collector account, reads the collectors' state messages."""

    def __init__(self, secure: SecureFleet, name: str) -> None:
        self.topics, self.id = secure.topics, "gw-lease-1"
        secure.add_gateway(self.id, **LEASE_SITE)
        self.client = MqttClient(secure.gateway_options(self.id))
        self.watch = MqttClient(secure.collector_options(
            f"watch-{name}", subscriptions=[(self.topics.alert_state(), 1)]))
        self.seq = 0

    def start(self) -> None:
        self.client.start()
        self.watch.start()

    async def connected(self) -> None:
        await self.client.wait_connected(10)
        await self.watch.wait_connected(10)

    async def close(self) -> None:
        await self.client.close()
        await self.watch.close()

    def send(self, pm10: float) -> None:
        self.seq += 1
        now = time.time_ns()
        batch = Batch(self.id, "00e100e1", self.seq, now, True, "b0", now, LEASE_SITE,
                      {"pm-1": {"model": "pms5003"}},
                      (Reading("pm-1", "particulate", {"pm10_ugm3": pm10}, now, "b0", now,
                               seq=self.seq),))
        self.client.publish(self.topics.up(self.id), encode_batch(batch), qos=1)


TOOK_OVER = re.compile(r"^(\S+ \S+) WARNING .*took over the lease; restoring state from (.*)$",
                       re.M)


def test_kill_9_of_the_leader_hands_its_open_alert_to_the_other_collector(
        tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, unique_name: str) -> None:
    asyncio.run(asyncio.wait_for(killed_leader(tmp_path, secure, influxdb, unique_name), 90))


async def killed_leader(tmp: Path, secure: SecureFleet, influxdb: InfluxDB, name: str) -> None:
    receiver = WebhookReceiver()
    hook = await receiver.start()
    gateway = Gateway(secure, name)
    gateway.start()
    procs = {who: collector(tmp, who, secure=secure, influxdb=influxdb, name=name,
                            hook=hook) for who in ("a", "b")}
    try:
        procs["a"].start()
        await until(lambda: TOOK_OVER.search(procs["a"].output()) is not None, "a to lead")
        procs["b"].start()
        await until(lambda: "standing by" in procs["b"].output(), "b to stand by")
        await gateway.connected()

        gateway.send(120)
        await until(lambda: receiver.states() != [], "the firing notification")
        [(state, alert_id, seq)] = receiver.states("a")
        assert state == "firing"
        state_message: list[Any] = []

        async def watch() -> None:
            while True:
                m = await gateway.watch.get()
                state_message.append(decode_header(m.payload))

        watcher = asyncio.create_task(watch())
        await until(lambda: any(h.open_alerts == 1 for h in state_message), "a's handed-over state")
        watcher.cancel()

        killed = time.time()
        procs["a"].kill()
        await until(lambda: TOOK_OVER.search(procs["b"].output()) is not None, "b to take over")
        found = TOOK_OVER.search(procs["b"].output())
        assert found is not None
        logged = time.mktime(time.strptime(found.group(1)[:19], "%Y-%m-%d %H:%M:%S"))
        took = logged + int(found.group(1)[20:23]) / 1000 - killed
        print(f"kill -9: b took over {took:.3f} s after the kill; state from {found.group(2)}")
        assert took < 2.0
        assert found.group(2).startswith(f"the broker (c-a-{name}'s save")

        gateway.send(130)
        gateway.send(40)
        await until(lambda: len(receiver.states()) == 2, "the resolved notification")
        await asyncio.sleep(1.5)
        assert receiver.states() == [("firing", alert_id, seq), ("resolved", alert_id, seq + 1)]
        assert receiver.states("b") == [("resolved", alert_id, seq + 1)]
        assert procs["b"].stop() == 0
    finally:
        for p in procs.values():
            if p.alive():
                p.kill()
        await gateway.close()
        await receiver.close()
    wait_for(lambda: bool(rows(influxdb, name, "SELECT * FROM alerts")), 10, "alert points")
    got = rows(influxdb, name, "SELECT * FROM alerts ORDER BY time")
    assert [(r["state"], r["alert_id"]) for r in got] == [("firing", alert_id),
                                                          ("resolved", alert_id)]
