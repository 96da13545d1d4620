"""Attacks from another client on the broker against a real agent, collector, Mosquitto, InfluxDB.

The agent reads a simulated PMS5003, its clock unsynchronised (it asks the
collector for the time), and shows alert displays on a bus terminal. Before
the collector starts, an attacker on the same broker reads the epoch, batch
and probe ids off the open ``up`` topic and the genuine display off ``down``,
then publishes what the issue's report found working: an ack of
``[[1, 2**62]]`` for a batch in flight, a time answer in 2100 for the
agent's probe, an evacuation text, and a clear of the genuine display.

With the gateway's secret set (the collector holding its key), none of it
changes anything, and each refusal shows in ``gateway_health``. Without a
secret (insecure), an ack still deletes only the batch it names, the
2100 answer is still refused, and a flood of displays leaves a bounded board.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cityedge.mqtt import MqttClient, MqttOptions
from cityedge.uplink import Ack, Batch, SeqRanges, Topics, decode_batch, encode_ack
from cityedge.uplink.downlink import Display, decode_ack, decode_display, encode_display
from cityedge.uplink.seal import derive_key
from edge_agent.decoding import load_profiles
from edge_agent.displays import MAX_SHOWING
from simulators.device import SimulatedDevice
from simulators.services import InfluxDB, Mosquitto
from tests.helpers import ROOT, Proc, rows, wait_for, write_yaml

pytestmark = pytest.mark.integration

SECRET = "gw-bus-sealed mqtt password"
KEY = derive_key(SECRET)
WRONG = derive_key("a guessed password")
YEAR_2100_NS = 4_102_444_800 * 10**9
COUNT = 40
S = 10**9
GENUINE = "종로구 미세먼지 주의보 - 외출을 자제하세요"
EVACUATE = "지진 발생 - 즉시 대피하십시오"


def configs(tmp: Path, name: str, gw: str, *, mosquitto: Mosquitto, influxdb: InfluxDB,
            port: str, secret: str | None) -> tuple[Path, Path]:
    collector = write_yaml(tmp / "collector.yaml", {
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": f"c-{name}",
                 "topic_prefix": f"test/{name}"},
        # An open broker by design (the attacker reads the up topic), so no registry:
        # the keys come from seal_collector's --secrets, or there are none.
        "insecure": True,
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": name},
        "batching": {"linger": 0.02},
    })
    gateway: dict[str, Any] = {"id": gw, "site": {"district": "종로구", "site": "세종로 정류장",
                                                  "kind": "bus_stop"}}
    if secret is not None:
        gateway["secret"] = secret
    agent = write_yaml(tmp / "agent.yaml", {
        "gateway": gateway,
        "sensors": [{"id": "pm-1", "port": port, "profile": "pms5003"}],
        "outbox": {"path": str(tmp / "outbox.sqlite"), "commit_window": 0.2},
        "uplink": {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port,
                            "topic_prefix": f"test/{name}"},
                   "batch_size": 7, "ack_timeout": 5},
        "display": {"output": "file", "path": str(tmp / "display.json")},
        # No NTP: the agent probes for the collector's time, and sends what it read
        # within a second flagged unverified rather than hold it for an anchor.
        "clock_synced": False,
        "clock_hold_max": 1,
        "health_interval": 1,
    })
    return collector, agent


@dataclass
class Sniffed:
    batch: Batch  # a batch of readings in flight
    probe: Batch  # a time probe waiting for its answer


class Broker:
    """One client on the gateway's topics: what anyone on the broker can do."""

    def __init__(self, mosquitto: Mosquitto, prefix: str, gw: str, name: str,
                 listen: list[str]) -> None:
        self.topics, self.gw = Topics(prefix), gw
        self.client = MqttClient(MqttOptions("127.0.0.1", mosquitto.port, name, clean_start=True,
                                             subscriptions=[(t, 1) for t in listen]))

    async def __aenter__(self) -> Broker:
        self.client.start()
        await self.client.wait_connected(10)
        await asyncio.sleep(0.3)  # let the broker take the subscriptions
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def sniff(self) -> Sniffed:
        batch = probe = None
        async with asyncio.timeout(30):
            while batch is None or probe is None:
                message = await self.client.get()
                if message.topic != self.topics.up(self.gw):
                    continue
                seen = decode_batch(message.payload)
                if seen.all_seqs():
                    batch = batch or seen
                else:
                    probe = probe or seen
        return Sniffed(batch, probe)

    def ack(self, payload: bytes) -> None:
        assert self.client.publish(self.topics.ack(self.gw), payload, qos=1)

    def down(self, payload: bytes, qos: int = 1) -> None:
        assert self.client.publish(self.topics.down(self.gw), payload, qos=qos)

    async def display_acks(self, ids: set[str]) -> dict[str, str]:
        """Wait for the terminal's ack of each id: id -> "result: detail"."""
        got: dict[str, str] = {}
        async with asyncio.timeout(15):
            while not ids <= set(got):
                message = await self.client.get()
                if message.topic == self.topics.down_ack(self.gw):
                    ack = decode_ack(message.payload)
                    got[ack.id] = f"{ack.result}: {ack.detail}"
        return got


def show(alert: str, seq: int, text: str) -> Display:
    now = time.time_ns()
    return Display(f"{alert}:{seq}", alert, "show", "pm10_advisory", "advisory", text, now,
                   now + 3600 * S, {"district": "종로구"})


def forged_ack(batch: Batch, seqs: SeqRanges, time_ns: int | None = None,
               key: bytes | None = None) -> bytes:
    return encode_ack(Ack(batch.gateway, batch.epoch, batch.batch_id, seqs, time_ns), key)


EVERYTHING = SeqRanges(((1, 2**62),))


class Rig:
    def __init__(self, tmp: Path, name: str, mosquitto: Mosquitto, influxdb: InfluxDB,
                 secret: str | None) -> None:
        self.tmp, self.name, self.influxdb = tmp, name, influxdb
        self.prefix, self.gw = f"test/{name}", "gw-bus-sealed"
        profile = load_profiles(ROOT / "firmware_profiles")["pms5003"]
        self.device = SimulatedDevice(profile, link=tmp / "dev" / "pm-1", interval=0.05, seed=5)
        self.collector_cfg, agent_cfg = configs(tmp, name, self.gw, mosquitto=mosquitto,
                                                influxdb=influxdb, port=self.device.path,
                                                secret=secret)
        self.agent = Proc(["edge_agent.cli", "run", "--config", str(agent_cfg)],
                          tmp / "agent.log")
        self.collector: Proc | None = None

    def start_collector(self, args: list[str]) -> None:
        self.collector = Proc(args, self.tmp / "collector.log").start()

    def query(self, q: str) -> list[dict[str, Any]]:
        try:
            return rows(self.influxdb, self.name, q)
        except AssertionError as exc:
            if "database not found" in str(exc):  # the collector has not made it yet
                return []
            raise

    def landed(self) -> list[dict[str, Any]]:
        return self.query(f"SELECT seq, pm2_5_ugm3 FROM particulate WHERE gateway='{self.gw}'")

    def health(self) -> dict[str, Any]:
        got = self.query(f"SELECT * FROM gateway_health WHERE gateway='{self.gw}'"
                         " ORDER BY time DESC LIMIT 1")
        return got[0] if got else {}

    def board(self) -> list[dict[str, Any]]:
        showing = json.loads((self.tmp / "display.json").read_text())["showing"]
        assert isinstance(showing, list)
        return showing

    def stop(self) -> None:
        self.device.close()
        agent_rc = self.agent.stop()
        collector_rc = self.collector.stop() if self.collector else 0
        assert agent_rc == 0, self.agent.output()[-3000:]
        assert collector_rc == 0, self.collector.output()[-3000:] if self.collector else ""
        assert "Traceback" not in self.agent.output(), self.agent.output()[-3000:]


def test_with_the_secret_no_forged_ack_time_answer_or_display_changes_anything(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str) -> None:
    rig = Rig(tmp_path, unique_name, mosquitto, influxdb, SECRET)
    rig.agent.start()
    try:
        wait_for(lambda: "opened" in rig.agent.output(), 15, "the agent to open the port")
        rig.device.start(count=COUNT)

        async def attack() -> dict[str, str]:
            t = Topics(rig.prefix)
            async with Broker(mosquitto, rig.prefix, rig.gw, f"attacker-{unique_name}",
                              [t.up(rig.gw), t.down(rig.gw), t.down_ack(rig.gw)]) as attacker, \
                    Broker(mosquitto, rig.prefix, rig.gw, f"notifier-{unique_name}",
                           [t.down_ack(rig.gw)]) as notifier:
                seen = await attacker.sniff()
                # The report's attacks on the agent's acks and clock.
                attacker.ack(forged_ack(seen.batch, EVERYTHING))
                attacker.ack(forged_ack(seen.batch, EVERYTHING, key=WRONG))
                attacker.ack(forged_ack(seen.probe, SeqRanges(), YEAR_2100_NS))
                attacker.ack(forged_ack(seen.probe, SeqRanges(), YEAR_2100_NS, key=WRONG))
                # The collector's genuine display (sealed, as mqtt_downlink sends it)...
                notifier.down(encode_display(show("a1", 1, GENUINE), KEY))
                assert (await notifier.display_acks({"a1:1"}))["a1:1"].startswith("shown")
                # ...read off the down topic by the attacker, who clears it and shows its own.
                async with asyncio.timeout(10):
                    while (m := await attacker.client.get()).topic != t.down(rig.gw):
                        pass
                genuine = decode_display(m.payload)
                clear = Display(f"{genuine.alert_id}:2", genuine.alert_id, "clear",
                                genuine.rule, genuine.severity, "", time.time_ns(), None)
                attacker.down(encode_display(clear))
                attacker.down(encode_display(show("quake", 1, EVACUATE)))
                attacker.down(encode_display(show("quake", 2, EVACUATE), WRONG))
                await asyncio.sleep(0.5)
                # The collector refreshes its display: answered, and after the forgeries.
                notifier.down(encode_display(show("a1", 3, GENUINE), KEY))
                return await notifier.display_acks({"a1:3"})

        answers = asyncio.run(asyncio.wait_for(attack(), 60))
        # A message no collector sent is not answered (nor acted on), only counted.
        assert answers == {"a1:3": "shown: "}, answers
        assert [d["text"] for d in rig.board()] == [GENUINE]

        rig.device.wait(30)
        assert rig.device.stats.frames == COUNT
        rig.start_collector(["tests.seal_collector", "--config", str(rig.collector_cfg),
                             "--secrets", str(write_yaml(tmp_path / "secrets.yaml",
                                                         {rig.gw: SECRET}))])
        wait_for(lambda: len(rig.landed()) >= COUNT, 60, f"{COUNT} readings in InfluxDB")
        points = rig.landed()
        # Nothing was deleted unwritten, nothing written twice: each seq once.
        assert len(points) == COUNT and len({p["seq"] for p in points}) == COUNT
        now = time.time_ns()
        assert all(abs(p["time"] - now) < 600 * S for p in points), "a reading left its time"
        assert rows(influxdb, unique_name, "SELECT count(pm2_5_ugm3) FROM particulate"
                    " WHERE time > '2090-01-01T00:00:00Z'") == []

        def refusals_counted() -> bool:
            h = rig.health()
            return (h.get("bad_acks_unsealed", 0) >= 2 and h.get("bad_acks_bad_seal", 0) >= 2
                    and h.get("displays_rejected_unsealed", 0) >= 2
                    and h.get("displays_rejected_bad_seal", 0) >= 1
                    and h.get("clock_anchor") == "collector")

        wait_for(refusals_counted, 30, "the refusals in gateway_health")
        h = rig.health()
        assert h["bad_acks"] == h["bad_acks_unsealed"] + h["bad_acks_bad_seal"]
        assert h.get("time_answers_refused", 0) == 0  # refused before: unsealed
        assert h["displays_showing"] == 1
        assert [d["text"] for d in rig.board()] == [GENUINE]
    finally:
        rig.stop()


def test_without_a_secret_an_ack_deletes_only_its_batch_and_2100_is_refused(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str) -> None:
    rig = Rig(tmp_path, unique_name, mosquitto, influxdb, None)
    rig.agent.start()
    try:
        wait_for(lambda: "opened" in rig.agent.output(), 15, "the agent to open the port")
        rig.device.start(count=COUNT)

        async def attack() -> Sniffed:
            t = Topics(rig.prefix)
            async with Broker(mosquitto, rig.prefix, rig.gw, f"attacker-{unique_name}",
                              [t.up(rig.gw)]) as attacker:
                seen = await attacker.sniff()
                attacker.ack(forged_ack(seen.batch, EVERYTHING))
                attacker.ack(forged_ack(seen.probe, SeqRanges(), YEAR_2100_NS))
                for i in range(1000):
                    attacker.down(encode_display(show(f"fake{i}", 1, EVACUATE)), qos=0)
                return seen

        seen = asyncio.run(asyncio.wait_for(attack(), 60))
        lost = sum(1 for r in seen.batch.readings if r.measurement == "particulate")
        wait_for(lambda: (tmp_path / "display.json").exists()
                 and len(rig.board()) == MAX_SHOWING, 15, "a full board")

        rig.device.wait(30)
        rig.start_collector(["collector.cli", "run", "--config", str(rig.collector_cfg)])
        # Insecure: the ack named a batch in flight, so that batch's readings went, and
        # only those (the report's attack deleted 32 readings never sent).
        wait_for(lambda: len(rig.landed()) >= COUNT - lost, 60, "the readings in InfluxDB")

        def counted() -> bool:
            h = rig.health()
            return (h.get("time_answers_refused_implausible", 0) >= 1
                    and h.get("clock_anchor") == "collector"
                    and h.get("displays_rejected_board_full", 0) >= 1)

        wait_for(counted, 30, "the refusals in gateway_health")
        points = rig.landed()
        assert len(points) == COUNT - lost and len({p["seq"] for p in points}) == COUNT - lost
        gone = {r.seq for r in seen.batch.readings if r.measurement == "particulate"}
        assert not gone & {p["seq"] for p in points}
        h = rig.health()
        assert h["ack_seqs_ignored"] == 2**62 - len(seen.batch.all_seqs())
        assert rows(influxdb, unique_name, "SELECT count(pm2_5_ugm3) FROM particulate"
                    " WHERE time > '2090-01-01T00:00:00Z'") == []
        assert len(rig.board()) == MAX_SHOWING
        assert (tmp_path / "display.json").stat().st_size < 20_000
    finally:
        rig.stop()
