"""A dust episode through the real alert path: engine, notifiers, Mosquitto, a webhook, InfluxDB.

Three hours of 5-minute PM10 readings in 강남구 (event time, fed as fast as
the collector would after its writes) raise the shipped PM10 advisory. The
check is what people and the data team would see: a signed webhook POST on a
real local aiohttp server, the display message on the 강남구 bus terminal's
downlink topic on a real Mosquitto, sealed with the terminal's key (and
nothing for the 서초구 one) with the terminal's ack counted, the gateway's
last will turning into an offline alert, and every alert event in
InfluxDB's ``alerts`` measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cityedge.mqtt import MqttClient, MqttOptions
from cityedge.uplink.downlink import encode_ack
from cityedge.uplink.seal import StaticKeyRing
from collector.alerts.config import parse_alerts
from collector.alerts.runner import AlertRunner
from collector.config import MqttSourceConfig
from collector.lineprotocol import Point
from collector.notifiers.mqtt_downlink import DownlinkNotifier
from collector.writers.influxdb_v1.writer import InfluxV1Config, InfluxV1Writer
from edge_agent.displays import DisplayBoard
from simulators.services import InfluxDB, Mosquitto
from tests.helpers import rows
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
S, M, H = 10**9, 60 * 10**9, 3600 * 10**9
SECRET = "episode-secret"
KEYRING = StaticKeyRing.from_secrets({"gw-bus-1": "bus-1 password", "gw-bus-2": "bus-2 password"})


class Terminals:
    """Two bus information terminals' display boards (the agent's): show what comes down, ack it.

    A real agent process answering displays is tests/integration/test_displays.py.
    """

    def __init__(self, mosquitto: Mosquitto, prefix: str) -> None:
        self.prefix = prefix
        self.shown: list[tuple[str, str, str]] = []  # (gateway, action, text)
        # Each terminal has its gateway secret: it shows only what the collector sealed.
        self.boards = {gw: DisplayBoard(gw, has_display=True, key=KEYRING.key_for(gw))
                       for gw in ("gw-bus-1", "gw-bus-2")}
        self.client = MqttClient(MqttOptions(
            "127.0.0.1", mosquitto.port, f"terminals-{prefix.replace('/', '-')}",
            clean_start=True, subscriptions=[(f"{prefix}/gw-bus-1/down", 1),
                                             (f"{prefix}/gw-bus-2/down", 1)]))

    async def run(self) -> None:
        while True:
            message = await self.client.get()
            gateway = message.topic.split("/")[-2]
            changed, ack = self.boards[gateway].receive(message.payload, time.time_ns())
            if changed:
                doc = json.loads(message.payload)
                self.shown.append((gateway, doc["action"], doc["text"]))
            self.client.publish(f"{self.prefix}/{gateway}/down_ack", encode_ack(ack), qos=1)


SITES = {  # gateway -> (district, site kind, measurement, sensors)
    "gw-dust-1": ("강남구", "dust_zone", "particulate", ("pm-a", "pm-b")),
    "gw-bus-1": ("강남구", "bus_stop", "bus_terminal", ("bit",)),
    "gw-bus-2": ("서초구", "bus_stop", "bus_terminal", ("bit",)),
}


async def until(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Episode:
    """The collector's side of the episode: write each batch to InfluxDB, then feed the runner."""

    def __init__(self, tmp: Path, mosquitto: Mosquitto, influxdb: InfluxDB, name: str) -> None:
        self.tmp, self.mosquitto, self.influxdb, self.name = tmp, mosquitto, influxdb, name
        self.prefix = f"test/{name}"
        self.receiver = WebhookReceiver(SECRET)
        self.writer = InfluxV1Writer(InfluxV1Config(url=influxdb.url, database=name))
        # Event time runs from four hours ago; the runner's clock is the feed's clock.
        self.start = (time.time_ns() // H - 4) * H
        self.now = self.start
        self.seq = 0

    async def open(self) -> AlertRunner:
        url = await self.receiver.start()
        self.terminals = Terminals(self.mosquitto, self.prefix)
        self.terminals.client.start()
        await self.terminals.client.wait_connected(10)
        await asyncio.sleep(0.3)  # let the broker take the subscriptions
        self.terminal_task = asyncio.create_task(self.terminals.run())
        await self.writer.start()
        loaded = parse_alerts(f"""
rules: [{ROOT}/configs/rules/dust.yaml, {ROOT}/configs/rules/fleet.yaml]
state_dir: {self.tmp}/alerts
notifiers:
  - {{type: webhook, url: "{url}", secret: {SECRET}, rules: [pm10_*, gateway_offline]}}
  - {{type: mqtt_downlink, host: 127.0.0.1, port: {self.mosquitto.port}, client_id: dl-{self.name},
      ack_timeout: 10, rules: [pm10_advisory, pm10_warning]}}
  - {{type: log}}
""", self.tmp)
        mqtt = MqttSourceConfig(host="127.0.0.1", port=self.mosquitto.port,
                                client_id=f"c-{self.name}", topic_prefix=self.prefix)
        self.runner = AlertRunner(loaded, write_points=self.writer.write, mqtt=mqtt,
                                  clock=lambda: self.now, keyring=KEYRING)
        await self.runner.start()
        return self.runner

    async def close(self) -> None:
        await self.runner.close()
        self.terminal_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.terminal_task
        await self.terminals.client.close()
        await self.writer.close()
        await self.receiver.close()

    async def collect(self, gateways: tuple[str, ...], pm10: float) -> None:
        batch = []
        for gw in gateways:
            district, kind, measurement, sensors = SITES[gw]
            tags = {"district": district, "site": f"{district} {gw}", "site_kind": kind,
                    "gateway": gw, "model": "pms5003"}
            fields: dict[str, Any] = ({"pm10_ugm3": pm10, "pm2_5_ugm3": 20} if kind == "dust_zone"
                                      else {"display_on": True, "enclosure_temp_c": 21.5})
            for sensor in sensors:
                self.seq += 1
                batch.append(Point(measurement, {**tags, "sensor": sensor},
                                   {**fields, "seq": self.seq, "epoch": "00e1"}, self.now))
        await self.writer.write(batch)  # the collector writes first...
        self.runner.feed(batch, self.now)  # ...then hands the accepted points to the runner

    async def last_will(self) -> None:
        """The dust gateway's power fails: Mosquitto publishes its offline status."""
        status = MqttClient(MqttOptions("127.0.0.1", self.mosquitto.port, f"gw-{self.name}",
                                        clean_start=True))
        status.start()
        await status.wait_connected(10)
        topic = f"{self.prefix}/gw-dust-1/status"
        offline = json.dumps({"gateway": "gw-dust-1", "state": "offline"}).encode()
        status.publish(topic, offline, retain=True)
        engine = self.runner.engine
        await until(lambda: engine.members[engine.index["gateway_offline"]],
                    "the status message at the runner")
        status.publish(topic, b"", retain=True)  # clear the retained message again
        await status.close()


def test_dust_episode_reaches_webhook_terminals_and_influxdb(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str) -> None:
    ep = Episode(tmp_path, mosquitto, influxdb, unique_name)
    asyncio.run(asyncio.wait_for(run_episode(ep), 60))
    check_influxdb(ep)


async def run_episode(ep: Episode) -> None:
    runner = await ep.open()
    receiver, shown = ep.receiver, ep.terminals.shown
    downlink = next(d.notifier for d in runner.deliveries
                    if isinstance(d.notifier, DownlinkNotifier))
    try:
        for i in range(int(3.5 * 12) + 1):  # 08:00 .. 11:30 of event time, every 5 min
            ep.now = ep.start + i * 5 * M
            await ep.collect(("gw-dust-1", "gw-bus-1", "gw-bus-2"), 100 if i < 12 else 220)
        # The hourly mean reached 150 at 09:20 ((5 x 220 + 7 x 100) / 12 = 150) and
        # held until 11:20: the advisory is issued.
        await until(lambda: any(e["rule"] == "pm10_advisory" and e["state"] == "firing"
                                for e in receiver.events), "the advisory on the webhook")
        await until(lambda: ("gw-bus-1", "show", "강남구 미세먼지 주의보 - 외출을 자제하세요")
                    in shown, "the display on the 강남구 terminal")
        await until(lambda: downlink.stats()["acked"] == 1, "the terminal's ack")

        await ep.last_will()
        ep.now += 2 * M
        runner.tick(ep.now)
        await until(lambda: any(e["rule"] == "gateway_offline" for e in receiver.events),
                    "the offline alert on the webhook")

        for _ in range(12):  # clean air from 11:35: the advisory is lifted below 100
            ep.now += 5 * M
            await ep.collect(("gw-dust-1",), 30)
        await until(lambda: any(e["rule"] == "pm10_advisory" and e["state"] == "resolved"
                                for e in receiver.events), "the lifted advisory")
        await until(lambda: any(s[1] == "clear" for s in shown), "the display cleared")
        await until(lambda: downlink.stats()["acked"] == 2, "the terminal's second ack")
    finally:
        await ep.close()
    advisory = [e for e in receiver.events if e["rule"] == "pm10_advisory"]
    assert [e["state"] for e in advisory] == ["firing", "resolved"]
    assert advisory[0]["scope"] == {"district": "강남구"}
    assert advisory[0]["time_ns"] == ep.start + (12 + 4) * 5 * M + 2 * H  # 09:20 + 2 h
    assert receiver.bad_signatures == 0
    assert {gw for gw, _, _ in shown} == {"gw-bus-1"}  # not 서초구's terminal
    assert [a for _, a, _ in shown] == ["show", "clear"]


def check_influxdb(ep: Episode) -> None:
    got = rows(ep.influxdb, ep.name,
               "SELECT * FROM alerts WHERE rule='pm10_advisory' ORDER BY time")
    assert [(r["state"], r["district"], r["severity"]) for r in got] == [
        ("pending", "강남구", "advisory"), ("firing", "강남구", "advisory"),
        ("resolved", "강남구", "advisory")]
    assert len({r["alert_id"] for r in got}) == 1
    assert got[1]["value"] == 220.0
    assert got[1]["time"] == ep.start + (12 + 4) * 5 * M + 2 * H
    offline = rows(ep.influxdb, ep.name, "SELECT * FROM alerts WHERE rule='gateway_offline'")
    assert [(r["state"], r["gateway"]) for r in offline] == [("firing", "gw-dust-1")]
    readings = rows(ep.influxdb, ep.name, "SELECT count(pm10_ugm3) FROM particulate")
    assert readings[0]["count"] == 2 * 43 + 2 * 12
