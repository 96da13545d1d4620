"""``lease: etcd`` on a real etcd with three collector processes: the leader killed, then paused.

Three collectors with their own state folders (as on three hosts) share one
uplink subscription and take the alert lease from the suite's etcd. One
leads; an alert fires and is notified once. The leader is killed with
SIGKILL: its lease expires in etcd after the TTL, another collector creates
the leader key (a new fencing token), restores the open alert from the
state the old one handed over through etcd, and notifies only the
resolution. A second episode fires under the new leader, which is then
paused with SIGSTOP past its lease: the third collector takes over and
notifies that episode's end; the paused one, woken with SIGCONT, finds its
lead window long closed and notifies nothing again (fencing), while the
third one alone notifies the next episode. The webhook receiver counts
every delivery: each transition exactly once, every body with the token of
the leader that sent it, and the tokens grow from one leader to the next.

On the suite's secure broker: the collectors log in with the collector account
and admit the gateway by the registry; the gateway logs in as itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from cityedge.mqtt import MqttClient
from cityedge.uplink import Batch, Reading, encode_batch
from collector.alerts.handover import Header, decode_alerts, decode_header
from simulators.services import Etcd, InfluxDB
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.secure_fleet import SecureFleet
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

TTL = 2  # etcd's smallest with its default timing: a dead leader is replaced in 2-3 s
KEEPALIVE = 5
RULES = """rules:
  - name: pm10_high
    kind: threshold
    match: {measurement: particulate}
    group_by: district
    field: pm10_ugm3
    above: 100
    clear: 50
"""
SITE = {"district": "강남구", "site": "역삼초등학교", "kind": "dust_zone"}
TOOK_OVER = re.compile(r"took over the lease; restoring state from (.*)$", re.M)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def collector(tmp: Path, who: str, *, secure: SecureFleet, influxdb: InfluxDB, etcd: Etcd,
              name: str, hook: str) -> Proc:
    (tmp / "rules.yaml").write_text(RULES)
    path = write_yaml(tmp / f"collector-{who}.yaml", {
        "registry": str(secure.registry_path),
        "mqtt": secure.collector_mqtt(f"c-{who}-{name}", share_group=f"g-{name}",
                                      keepalive=KEEPALIVE),
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": name},
        "batching": {"linger": 0.02},
        "alerts": {"rules": ["rules.yaml"], "state_dir": f"state-{who}", "lease": "etcd",
                   "tick_interval": 0.1,
                   "etcd": {"endpoints": [etcd.url], "prefix": f"cityedge-test/{name}",
                            "ttl": TTL},
                   "observe_uplinks": True, "status": False,
                   "notifiers": [{"type": "webhook", "url": f"{hook}/{who}", "timeout": 5}]},
    })
    return Proc(["collector.cli", "run", "--config", str(path)], tmp / f"collector-{who}.log")


class Gateway:
    """Publishes uplink batches as a gateway would (the collectors ack; we do not wait)."""

    def __init__(self, secure: SecureFleet) -> None:
        self.topics, self.id = secure.topics, "gw-etcd-1"
        secure.add_gateway(self.id, **SITE)
        self.client = MqttClient(secure.gateway_options(self.id))
        self.seq = 0

    def send(self, pm10: float) -> None:
        self.seq += 1
        now = time.time_ns()
        batch = Batch(self.id, "00e100e1", self.seq, now, True, "b0", now, SITE,
                      {"pm-1": {"model": "pms5003"}},
                      (Reading("pm-1", "particulate", {"pm10_ugm3": pm10}, now, "b0", now,
                               seq=self.seq),))
        self.client.publish(self.topics.up(self.id), encode_batch(batch), qos=1)


def handed_over(etcd: Etcd, name: str) -> tuple[Header, list[tuple[str, int]]] | None:
    """The state in etcd (read through etcd's gateway, as etcdctl get would): its header and
    its open alerts' (alert id, last event number)."""
    key = base64.b64encode(f"cityedge-test/{name}/state".encode()).decode()
    request = urllib.request.Request(f"{etcd.url}/v3/kv/range",
                                     data=json.dumps({"key": key}).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as resp:
        kvs = json.loads(resp.read()).get("kvs") or []
    if not kvs:
        return None
    payload = base64.b64decode(kvs[0]["value"])
    groups = decode_alerts(payload)["groups"]
    return decode_header(payload), [(g["alert_id"], g["seq"]) for g in groups]


def leaders(procs: dict[str, Proc]) -> list[str]:
    """Who logged a takeover, in the order of their logs' counts."""
    return [w for w, p in procs.items() if p.proc is not None and TOOK_OVER.search(p.output())]


def test_each_transition_is_notified_once_across_a_kill_and_a_pause_of_the_leader(
        tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, etcd: Etcd,
        unique_name: str) -> None:
    asyncio.run(asyncio.wait_for(scenario(tmp_path, secure, influxdb, etcd, unique_name), 150))


async def state_in_etcd(etcd: Etcd, name: str, holder: str, notified: tuple[str, int]) -> None:
    """Wait until holder's state in etcd has the notified event as its one open alert: the
    handed-over state has caught up with what was notified (docs/alerts.md says why)."""
    def there() -> bool:
        found = handed_over(etcd, name)
        return (found is not None and found[0].version.holder == f"c-{holder}-{name}"
                and found[1] == [notified])
    await until(there, f"{holder}'s state in etcd")


async def scenario(tmp: Path, secure: SecureFleet, influxdb: InfluxDB, etcd: Etcd,
                   name: str) -> None:
    receiver = WebhookReceiver()
    hook = await receiver.start()
    gateway = Gateway(secure)
    gateway.client.start()
    procs = {who: collector(tmp, who, secure=secure, influxdb=influxdb, etcd=etcd, name=name,
                            hook=hook) for who in ("a", "b", "c")}
    try:
        procs["a"].start()
        await until(lambda: leaders(procs) == ["a"], "a to lead")
        for who in ("b", "c"):
            procs[who].start()
        for who in ("b", "c"):
            await until(lambda w=who: "standing by" in procs[w].output(), f"{who} to stand by")
        await gateway.client.wait_connected(10)
        second, third = await killed_leader(procs, gateway, receiver, etcd, name)
        await paused_leader(procs, second, third, gateway=gateway, receiver=receiver,
                            etcd=etcd, name=name)
        got = receiver.states()
        assert [s for s, _, _ in got] == ["firing", "resolved", "firing", "resolved", "firing"]
        assert len({(a, n) for _, a, n in got}) == 5, receiver.posts  # each transition once
        assert [w for w, _ in receiver.posts] == ["a", second, second, third, third]
        tokens = [body["fencing_token"] for _, body in receiver.posts]
        assert tokens[0] < tokens[1] == tokens[2] < tokens[3] == tokens[4], tokens
        assert procs[second].stop() == 0
        assert procs[third].stop() == 0
    finally:
        for p in procs.values():
            if p.alive() and p.proc is not None:
                p.proc.send_signal(signal.SIGCONT)
                p.kill()
        await gateway.client.close()
        await receiver.close()
    wait_for(lambda: len(rows(influxdb, name, "SELECT * FROM alerts")) >= 5, 10, "alert points")
    got_points = rows(influxdb, name, "SELECT * FROM alerts ORDER BY time")
    assert [r["state"] for r in got_points] == ["firing", "resolved", "firing", "resolved",
                                                "firing"]
    assert [r["fencing_token"] for r in got_points] == tokens


async def killed_leader(procs: dict[str, Proc], gateway: Gateway, receiver: WebhookReceiver,
                        etcd: Etcd, name: str) -> tuple[str, str]:
    """Episode 1: fired by a, a killed, resolved by its successor; returns (successor, other)."""
    gateway.send(120)
    await until(lambda: len(receiver.posts) == 1, "the firing notification")
    [(state, first_id, seq)] = receiver.states("a")
    assert state == "firing"
    await state_in_etcd(etcd, name, "a", (first_id, seq))
    killed = time.monotonic()
    procs["a"].kill()
    await until(lambda: len(leaders(procs)) == 2, "a successor to take over")
    print(f"kill -9: a successor led {time.monotonic() - killed:.2f} s after the kill")
    [second] = [w for w in leaders(procs) if w != "a"]
    [third] = [w for w in ("b", "c") if w != second]
    found = TOOK_OVER.search(procs[second].output())
    assert found is not None and found.group(1).startswith(f"etcd (c-a-{name}'s save")
    gateway.send(130)  # still high: nothing new to say
    gateway.send(40)
    await until(lambda: len(receiver.posts) == 2, "the resolution")
    assert receiver.states(second) == [("resolved", first_id, seq + 1)]
    return second, third


async def paused_leader(procs: dict[str, Proc], second: str, third: str, *, gateway: Gateway,
                        receiver: WebhookReceiver, etcd: Etcd, name: str) -> None:
    """Episode 2 fired by the successor, which is paused past its lease and resolved by the
    third; episode 3: the woken one stays quiet, the third alone notifies."""
    gateway.send(150)
    await until(lambda: len(receiver.posts) == 3, "the second firing")
    [(_, second_id, second_seq)] = receiver.states()[2:]
    await state_in_etcd(etcd, name, second, (second_id, second_seq))
    paused = procs[second].proc
    assert paused is not None
    paused.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    await until(lambda: third in leaders(procs), "the third collector to take over")
    print(f"SIGSTOP: the third led {time.monotonic() - stopped:.2f} s after the pause")
    gateway.send(40)
    await until(lambda: len(receiver.posts) == 4, "the second resolution")
    assert [s for s, _, _ in receiver.states(third)] == ["resolved"]
    paused.send_signal(signal.SIGCONT)  # it wakes long past its lead window
    await until(lambda: "lost the lease" in procs[second].output(), "the woken one to stand by")
    gateway.send(160)
    gateway.send(170)
    await until(lambda: len(receiver.posts) == 5, "the third firing")
    await asyncio.sleep(2 * TTL)
