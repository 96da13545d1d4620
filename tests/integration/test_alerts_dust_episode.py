"""A dust episode through the real alert path: engine, notifiers, Mosquitto, a webhook, InfluxDB.

Three hours of 5-minute PM10 readings in 강남구 (event time, fed as fast as
the collector would after its writes) raise the shipped PM10 advisory. The
check is what people and the data team would see: a signed webhook POST on a
real local aiohttp server, the display message on the 강남구 bus terminal's
downlink topic on a real Mosquitto, sealed with the terminal's key (and
nothing for the 서초구 one) with the terminal's ack counted, the gateway's
last will turning into an offline alert, and every alert event in
InfluxDB's ``alerts`` measurement. The broker is the suite's secure one: the
alert runner and its notifier log in as the collector, the terminals and the
dust gateway as themselves, and the seal keys come from the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cityedge.mqtt import MqttClient
from cityedge.uplink.downlink import encode_ack
from cityedge.uplink.status import encode_status
from collector.alerts.runner import AlertRunner
from collector.lineprotocol import Identity, Point
from collector.notifiers.mqtt_downlink import DownlinkNotifier
from collector.writers.influxdb_v1.writer import InfluxV1Config, InfluxV1Writer
from edge_agent.displays import DisplayBoard
from simulators.services import InfluxDB
from tests.alerts_helpers import parse_alerts
from tests.helpers import rows
from tests.secure_fleet import SecureFleet
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
S, M, H = 10**9, 60 * 10**9, 3600 * 10**9
SECRET = "episode-secret"
TERMINALS = ("gw-bus-1", "gw-bus-2")


class Terminals:
    """Two bus information terminals' display boards (the agent's): show what comes down, ack it.

    A real agent process answering displays is tests/integration/test_displays.py.
    """

    def __init__(self, secure: SecureFleet) -> None:
        self.topics = secure.topics
        self.shown: list[tuple[str, str, str]] = []  # (gateway, action, text)
        # Each terminal has its gateway secret: it shows only what the collector sealed.
        self.boards = {gw: DisplayBoard(gw, has_display=True, key=secure.key(gw))
                       for gw in TERMINALS}
        # Each logs in as itself: the broker lets it read only its own downlink.
        self.clients = {gw: MqttClient(secure.gateway_options(
            gw, subscriptions=[(self.topics.down(gw), 1)])) for gw in TERMINALS}

    async def run(self, gateway: str) -> None:
        client = self.clients[gateway]
        while True:
            message = await client.get()
            changed, ack = self.boards[gateway].receive(message.payload, time.time_ns())
            if changed:
                doc = json.loads(message.payload)
                self.shown.append((gateway, doc["action"], doc["text"]))
            client.publish(self.topics.down_ack(gateway), encode_ack(ack), qos=1)


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

    def __init__(self, tmp: Path, secure: SecureFleet, influxdb: InfluxDB, name: str) -> None:
        self.tmp, self.secure, self.influxdb, self.name = tmp, secure, influxdb, name
        for gw, (district, kind, _, _) in SITES.items():
            secure.add_gateway(gw, district=district, site=f"{district} {gw}", kind=kind)
        self.receiver = WebhookReceiver(SECRET)
        self.writer = InfluxV1Writer(InfluxV1Config(url=influxdb.url, database=name))
        # Event time runs from four hours ago; the runner's clock is the feed's clock.
        self.start = (time.time_ns() // H - 4) * H
        self.now = self.start
        self.seq = 0

    async def open(self) -> AlertRunner:
        url = await self.receiver.start()
        self.terminals = Terminals(self.secure)
        for client in self.terminals.clients.values():
            client.start()
        for client in self.terminals.clients.values():
            await client.wait_connected(10)
        await asyncio.sleep(0.3)  # let the broker take the subscriptions
        self.terminal_tasks = [asyncio.create_task(self.terminals.run(gw)) for gw in TERMINALS]
        await self.writer.start()
        loaded = parse_alerts(yaml.safe_dump({
            "rules": [f"{ROOT}/configs/rules/dust.yaml", f"{ROOT}/configs/rules/fleet.yaml"],
            "state_dir": f"{self.tmp}/alerts",
            "notifiers": [
                {"type": "webhook", "url": url, "secret": SECRET,
                 "rules": ["pm10_*", "gateway_offline"]},
                {"type": "mqtt_downlink", **self.secure.collector_login(f"dl-{self.name}"),
                 "ack_timeout": 10, "rules": ["pm10_advisory", "pm10_warning"]},
                {"type": "log"},
            ],
        }), self.tmp)
        mqtt = self.secure.source_config(f"c-{self.name}")
        # The registry is the keyring, as in a collector that runs with one.
        self.runner = AlertRunner(loaded, write_points=self.writer.write, mqtt=mqtt,
                                  clock=lambda: self.now, keyring=self.secure.admission())
        await self.runner.start()
        return self.runner

    async def close(self) -> None:
        await self.runner.close()
        for task in self.terminal_tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in self.terminals.clients.values():
            await client.close()
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
                batch.append(Point(measurement, {**tags, "sensor": sensor}, fields, self.now,
                                   Identity(self.seq, "00e1")))
        await self.writer.write(batch)  # the collector writes first...
        self.runner.feed(batch, self.now)  # ...then hands the accepted points to the runner

    async def last_will(self) -> None:
        """The dust gateway's power fails: Mosquitto publishes its offline status."""
        status = MqttClient(self.secure.gateway_options("gw-dust-1"))
        status.start()
        await status.wait_connected(10)
        topic = self.secure.topics.status("gw-dust-1")
        offline = encode_status("gw-dust-1", "offline")
        status.publish(topic, offline, retain=True)
        engine = self.runner.engine
        await until(lambda: engine.members[engine.index["gateway_offline"]],
                    "the status message at the runner")
        status.publish(topic, b"", retain=True)  # clear the retained message again
        await status.close()


def test_dust_episode_reaches_webhook_terminals_and_influxdb(
        tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, unique_name: str) -> None:
    ep = Episode(tmp_path, secure, influxdb, unique_name)
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
        # Hourly means 220 for 09-10 and 10-11 (clock hours): the advisory is issued
        # when 10-11 completes, on the 11:00 reading.
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

        # Clean air from 11:37: 11-12 is still 141 ((7 x 220 + 5 x 30) / 12); 12-13 is
        # 30, below 100: the advisory is lifted when it completes, on the 13:02 reading.
        for _ in range(18):
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
    assert advisory[0]["time_ns"] == ep.start + 3 * H  # 11:00, the end of 10-11
    assert advisory[1]["time_ns"] == ep.start + 5 * H  # 13:00, the end of 12-13
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
    assert got[0]["time"] == ep.start + 2 * H  # 10:00: the first hour at 220
    assert got[1]["time"] == ep.start + 3 * H
    offline = rows(ep.influxdb, ep.name, "SELECT * FROM alerts WHERE rule='gateway_offline'")
    assert [(r["state"], r["gateway"]) for r in offline] == [("firing", "gw-dust-1")]
    readings = rows(ep.influxdb, ep.name, "SELECT count(pm10_ugm3) FROM particulate")
    assert readings[0]["count"] == 2 * 43 + 2 * 18
