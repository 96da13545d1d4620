"""State files written whole, the lease released by a killed holder, and the MQTT feed's parsing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pytest

from cityedge.atomic import atomic_write
from cityedge.mqtt import Message
from cityedge.uplink import Batch, Reading, Topics, encode_batch
from cityedge.uplink.status import decode_status, encode_status
from cityedge.uplink.topics import DEFAULT_PREFIX
from collector.alerts import UsageError
from collector.alerts.lease import FileLease
from collector.alerts.mqtt_feed import MqttFeed
from collector.alerts.store import StateStore
from collector.config import MqttSourceConfig
from collector.lineprotocol import Point
from tests.alerts_helpers import load_state

ALERTS = {"version": 1, "now": 5, "groups": [{"rule": "r", "state": "firing"}], "members": [],
          "silences": [], "directory": {"gw-1": {"district": "강남구"}}}


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "d" / "f.json"
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["f.json"]


def test_state_round_trip_and_tinydb_view(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(ALERTS, '{"version":1}')
    alerts, stats = load_state(store)
    assert alerts == ALERTS and stats == {"version": 1}
    with store.db() as db:
        assert db.table("alerts").all() == [{"rule": "r", "state": "firing"}]
        assert db.table("directory").all() == [{"gateway": "gw-1",
                                                "tags": {"district": "강남구"}}]
    assert "강남구" in store.alerts_path.read_text(encoding="utf-8")  # readable, not \\u escapes


def test_torn_or_missing_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert load_state(store) == (None, None)
    store.alerts_path.write_text('{"alerts": {"1": ')
    with pytest.raises(UsageError, match="cannot read alert state"):
        load_state(store)


def test_command_spool_in_order(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.put_command({"cmd": "ack", "alert_id": "a"})
    store.put_command({"cmd": "unsilence", "id": "s"})
    (store.commands_dir / "zzz.json").write_text("{torn")
    got = [cmd for _, cmd in store.take_commands()]
    assert got == [{"cmd": "ack", "alert_id": "a"}, {"cmd": "unsilence", "id": "s"}, None]


HOLDER = """
import sys, time
from collector.alerts.lease import FileLease
lease = FileLease(sys.argv[1], "other")
assert lease.try_acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_the_lease_is_exclusive_and_freed_when_its_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "alerts.lease"
    root = Path(__file__).resolve().parents[3]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=root,
                              stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        mine = FileLease(path, "me")
        assert not mine.try_acquire()
        assert mine.holder_text().startswith("other pid ")
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 5
        while not mine.try_acquire():
            assert time.monotonic() < deadline, "the kernel did not release the lock"
            time.sleep(0.05)
        assert mine.held and mine.holder_text().startswith("me pid ")
        mine.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


class Sink:
    def __init__(self) -> None:
        self.points: list[Point] = []
        self.status: list[tuple[str, str, int]] = []

    def feed(self, points: Sequence[Point], now_ns: int) -> None:
        self.points.extend(points)

    def on_status(self, gateway: str, state: str, now_ns: int) -> None:
        self.status.append((gateway, state, now_ns))


T = Topics()


def message(topic: str, payload: bytes) -> Message:
    return Message(topic, payload, 1, False, 1, 1)


def test_status_and_observed_uplinks_reach_the_runner() -> None:
    config = MqttSourceConfig(topic_prefix=DEFAULT_PREFIX)
    sink = Sink()
    feed = MqttFeed(config, sink, status=True, observe_uplinks=True, clock=lambda: 42)
    assert feed.subscriptions == [(T.status_subscription(), 1), (T.up_subscription(None), 1)]
    feed.handle(message(T.status("gw-1"), b'{"gateway": "gw-1", "state": "offline"}'))
    feed.handle(message(T.status("gw-1"), b'{"gateway": "gw-2", "state": "offline"}'))
    feed.handle(message(T.status("gw-1"), b""))  # a retained will being cleared
    batch = Batch("gw-1", "00ab00ab", 1, 10, True, "b00", 5,
                  {"district": "강남구", "kind": "dust_zone"}, {"pm-1": {"model": "pms5003"}},
                  (Reading("pm-1", "particulate", {"pm10_ugm3": 30}, 10**18, "b00", 5, seq=7),))
    feed.handle(message(T.up("gw-1"), encode_batch(batch)))
    feed.handle(message(T.up("gw-1"), b"garbage"))
    feed.handle(message("elsewhere/gw-1/up", b"{}"))
    assert sink.status == [("gw-1", "offline", 42)]
    [point] = sink.points
    assert point.identity is not None
    assert (point.tags["district"], point.fields["pm10_ugm3"], point.identity.seq) == (
        "강남구", 30, 7)
    assert dict(feed.ignored) == {"bad_status": 2, "refused_batch": 1, "foreign_topic": 1}


@pytest.mark.parametrize(("payload", "state"), [
    (b'{"gateway": "g", "state": "online"}', "online"),
    (b'{"gateway": "g", "state": "asleep"}', None), (b"[]", None), (b"{", None)])
def test_parse_status(payload: bytes, state: str | None) -> None:
    assert decode_status(payload, "g") == state


@pytest.mark.parametrize("state", ["online", "offline"])
def test_a_gateways_status_message_reads_back(state: Literal["online", "offline"]) -> None:
    assert decode_status(encode_status("gw-1", state), "gw-1") == state
    assert decode_status(encode_status("gw-1", state), "gw-2") is None
