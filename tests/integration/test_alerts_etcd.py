"""``lease: etcd`` on a real etcd with three collector processes: leaders killed and paused
at the worst moments, each transition notified once (by event id).

Three collectors with their own state folders (as on three hosts) share one
uplink subscription and take the alert lease from the suite's etcd. Every
transition is written ahead to etcd (the state and the transition pending
delivery) before the webhook sees it, so nothing here waits for a state to
reach etcd:

1. a fires; the moment its notification is received, a is killed (SIGKILL).
   Its successor restores the state (the alert open) and delivers what a
   left pending, then notifies the resolution.
2. The webhook endpoint is down (503, retry in 30 s); the successor fires,
   writes it ahead, fails to deliver, and is paused (SIGSTOP) in the middle,
   past its lease.
   The third collector takes over and delivers that firing (the same event
   id, never received before), then its resolution; the paused one, woken,
   sends nothing (its token is stale).
3. The third fires; the moment its notification is received it is paused;
   the woken second takes over again, delivers what was pending, resolves;
   the third, woken, sends nothing, and the second alone notifies the next
   firing.

The receiver sees each transition exactly once by event id, except for the
one window a write-ahead cannot close (docs/alerts.md, "Several
collectors"): a notification received just before its sender died and
before the sender marked it delivered in etcd comes again from the
successor, with the same event id, and only if the successor logged it as
pending from the last leader. The test asserts exactly that.

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
from collector.alerts import outbox
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
PENDING = re.compile(r"notifications pending delivery from the last leader: (.*)$", re.M)


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


def outbox_in_etcd(etcd: Etcd, name: str) -> list[tuple[str, str]]:
    """The outbox in etcd (read through etcd's gateway, as etcdctl get would): the (event id,
    state) of each entry pending (a notifier's, or the point's)."""
    key = base64.b64encode(f"cityedge-test/{name}/outbox".encode()).decode()
    request = urllib.request.Request(f"{etcd.url}/v3/kv/range",
                                     data=json.dumps({"key": key}).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as resp:
        kvs = json.loads(resp.read()).get("kvs") or []
    if not kvs:
        return []
    return [(e.event.event_id, e.event.state)
            for e in outbox.decode(base64.b64decode(kvs[0]["value"]))]


def leaders(procs: dict[str, Proc]) -> list[str]:
    """Who logged a takeover, in the order of their logs' counts."""
    return [w for w, p in procs.items() if p.proc is not None and TOOK_OVER.search(p.output())]


def takeovers(proc: Proc) -> int:
    return len(TOOK_OVER.findall(proc.output()))


def redelivered(proc: Proc) -> list[str]:
    """The event ids proc logged as pending delivery by a notifier from the last leader, over
    all its takeovers (an entry for a point is not a notification)."""
    return [item.split("@")[0] for line in PENDING.findall(proc.output())
            for item in line.split() if not item.endswith("@(points)")]


def event_ids(receiver: WebhookReceiver, who: str | None = None) -> list[str]:
    return [f"{b['alert_id']}:{b['seq']}" for w, b in receiver.posts if who in (None, w)]


def test_each_transition_is_notified_once_across_kills_and_pauses_of_the_leader(
        tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, etcd: Etcd,
        unique_name: str) -> None:
    asyncio.run(asyncio.wait_for(scenario(tmp_path, secure, influxdb, etcd, unique_name), 150))


class Run:
    def __init__(self, procs: dict[str, Proc], gateway: Gateway, receiver: WebhookReceiver,
                 etcd: Etcd, name: str) -> None:
        self.procs, self.gateway, self.receiver = procs, gateway, receiver
        self.etcd, self.name = etcd, name
        # (event id, who sent it first, who took over right after) for each notification
        # received just before its sender was killed or paused: the one window left.
        self.window: list[tuple[str, str, str]] = []

    async def new_event(self, who: str, state: str, seen: set[str] | None = None) -> str:
        """Wait for who's next notification with state, not in seen (default: any received
        so far); its event id."""
        seen = set(event_ids(self.receiver)) if seen is None else seen
        def fresh() -> list[str]:
            return [f"{b['alert_id']}:{b['seq']}" for w, b in self.receiver.posts
                    if w == who and b["state"] == state
                    and f"{b['alert_id']}:{b['seq']}" not in seen]
        await until(lambda: bool(fresh()), f"{who}'s {state} notification")
        [event_id] = fresh()
        return event_id

    async def took_over(self, who: str, times: int) -> None:
        await until(lambda: takeovers(self.procs[who]) == times, f"{who} to take over")


async def scenario(tmp: Path, secure: SecureFleet, influxdb: InfluxDB, etcd: Etcd,
                   name: str) -> None:
    receiver = WebhookReceiver()
    hook = await receiver.start()
    gateway = Gateway(secure)
    gateway.client.start()
    procs = {who: collector(tmp, who, secure=secure, influxdb=influxdb, etcd=etcd, name=name,
                            hook=hook) for who in ("a", "b", "c")}
    run = Run(procs, gateway, receiver, etcd, name)
    try:
        procs["a"].start()
        await until(lambda: leaders(procs) == ["a"], "a to lead")
        for who in ("b", "c"):
            procs[who].start()
        for who in ("b", "c"):
            await until(lambda w=who: "standing by" in procs[w].output(), f"{who} to stand by")
        await gateway.client.wait_connected(10)
        second, third, first = await killed_after_notification(run)
        middle = await paused_in_the_middle(run, second, third)
        last = await paused_after_notification(run, second, third)
        transitions = [first, middle, last]
        check_exactly_once(run, second, third, transitions)
        assert procs[second].stop() == 0
        assert procs[third].stop() == 0
        assert outbox_in_etcd(etcd, name) == []  # everything settled before the clean stop
    finally:
        for p in procs.values():
            if p.alive() and p.proc is not None:
                p.proc.send_signal(signal.SIGCONT)
                p.kill()
        await gateway.client.close()
        await receiver.close()
    check_points(influxdb, name, receiver, transitions)


def check_points(influxdb: InfluxDB, name: str, receiver: WebhookReceiver,
                 transitions: list[tuple[str, ...]]) -> None:
    """One `alerts` point per transition (a successor rewrites those it found pending, the
    same time and tags), with the token of the leader that made it: the first sender's,
    but for the middle firing, made by the paused one (its resolution's sender before it)."""
    order = [i for episode in transitions for i in episode]
    wait_for(lambda: len(rows(influxdb, name, "SELECT * FROM alerts")) >= len(order), 10,
             "alert points")
    got = rows(influxdb, name, "SELECT * FROM alerts ORDER BY time")
    assert [f"{r['alert_id']}:{r['seq']}" for r in got] == order
    made: dict[str, int] = {}
    for event_id, body in zip(event_ids(receiver), receiver.events, strict=True):
        made.setdefault(event_id, body["fencing_token"])
    made[transitions[1][0]] = made[transitions[0][1]]
    assert [r["fencing_token"] for r in got] == [made[i] for i in order]


async def killed_after_notification(run: Run) -> tuple[str, str, tuple[str, str]]:
    """Episode 1: a fires and is killed as its notification arrives; its successor resolves.
    Returns (successor, the other, (firing id, resolution id))."""
    procs = run.procs
    run.gateway.send(120)
    fired = await run.new_event("a", "firing")
    procs["a"].kill()
    killed = time.monotonic()
    await until(lambda: len(leaders(procs)) == 2, "a successor to take over")
    print(f"kill -9: a successor led {time.monotonic() - killed:.2f} s after the kill")
    [second] = [w for w in leaders(procs) if w != "a"]
    [third] = [w for w in ("b", "c") if w != second]
    found = TOOK_OVER.search(procs[second].output())
    assert found is not None and found.group(1).startswith(f"etcd (c-a-{run.name}'s save")
    run.window.append((fired, "a", second))
    run.gateway.send(130)  # still high: nothing new to say
    run.gateway.send(40)
    resolved = await run.new_event(second, "resolved")
    return second, third, (fired, resolved)


async def paused_in_the_middle(run: Run, second: str, third: str) -> tuple[str, str]:
    """Episode 2: the endpoint is down; second fires, writes it ahead, cannot deliver, and is
    paused past its lease; third delivers that firing and its resolution; second, woken,
    sends nothing. Returns (firing id, resolution id)."""
    procs, receiver = run.procs, run.receiver
    # Down, and asking to be retried in 30 s: the one attempt is answered before the pause,
    # so no request of the paused one is on the wire (that would be the window again).
    receiver.refuse, receiver.retry_after = 503, 30
    run.gateway.send(150)
    def written_ahead() -> set[str]:  # a firing in etcd never received
        return ({i for i, s in outbox_in_etcd(run.etcd, run.name) if s == "firing"}
                - set(event_ids(receiver)))
    await until(lambda: receiver.refused >= 1 and bool(written_ahead()),
                "the firing written ahead and refused by the endpoint")
    [fired] = written_ahead()
    paused = procs[second].proc
    assert paused is not None
    paused.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    before = set(event_ids(receiver))
    assert fired not in before
    receiver.refuse = None  # the endpoint is back
    await run.took_over(third, 1)
    print(f"SIGSTOP: the third led {time.monotonic() - stopped:.2f} s after the pause")
    assert fired in redelivered(procs[third])
    assert await run.new_event(third, "firing", before) == fired  # the same, from the third
    run.gateway.send(40)
    resolved = await run.new_event(third, "resolved")
    paused.send_signal(signal.SIGCONT)  # it wakes long past its lead window
    await until(lambda: "lost the lease" in procs[second].output(), "the woken one to stand by")
    return fired, resolved


async def paused_after_notification(run: Run, second: str, third: str) -> tuple[str, str, str]:
    """Episode 3: third fires and is paused as its notification arrives; second takes over
    again and resolves; third, woken, sends nothing; second alone notifies the next firing.
    Returns (firing id, resolution id, next firing id)."""
    procs = run.procs
    run.gateway.send(160)
    fired = await run.new_event(third, "firing")
    paused = procs[third].proc
    assert paused is not None
    paused.send_signal(signal.SIGSTOP)
    await run.took_over(second, 2)
    run.window.append((fired, third, second))
    run.gateway.send(40)
    resolved = await run.new_event(second, "resolved")
    paused.send_signal(signal.SIGCONT)
    await until(lambda: "lost the lease" in procs[third].output(), "the woken one to stand by")
    run.gateway.send(170)
    again = await run.new_event(second, "firing")
    await asyncio.sleep(2 * TTL)  # time for the woken one to send anything it still would
    return fired, resolved, again


def check_exactly_once(run: Run, second: str, third: str,
                       transitions: list[tuple[str, ...]]) -> None:
    """Each transition once by event id, but for a notification received just before its
    sender died: that one may come again, from the successor, with the same event id, and only
    if the successor logged it as pending (the sender had not yet marked it delivered)."""
    ids = event_ids(run.receiver)
    order = [i for episode in transitions for i in episode]
    assert list(dict.fromkeys(ids)) == order, run.receiver.posts
    states = [s for s, _, _ in run.receiver.states()]
    assert [states[ids.index(i)] for i in order] == ["firing", "resolved"] * 3 + ["firing"]
    in_window = {event_id for event_id, _, _ in run.window}
    for event_id in order:
        senders = [w for w, b in run.receiver.posts
                   if f"{b['alert_id']}:{b['seq']}" == event_id]
        if event_id not in in_window:
            assert len(senders) == 1, (event_id, senders)
            continue
        [(sender, successor)] = [(s, t) for i, s, t in run.window if i == event_id]
        pending = event_id in redelivered(run.procs[successor])
        assert senders == ([sender, successor] if pending else [sender]), (event_id, senders)
    middle = transitions[1][0]  # never received before its sender paused: once, by third
    assert [w for w, b in run.receiver.posts
            if f"{b['alert_id']}:{b['seq']}" == middle] == [third]
    tokens = [b["fencing_token"] for _, b in run.receiver.posts]
    assert tokens == sorted(tokens), tokens  # every later sender leads with a later token
