"""A real bus-stop agent process answering alert displays on a real Mosquitto.

The test plays the collector's mqtt_downlink notifier, logged in with the
collector account on the secure broker: it publishes display messages, sealed
with the gateway's key as the notifier seals them, to the gateway's ``.../down``
topic and reads the acks on ``.../down_ack``. What the terminal is told to show
is the agent's display file, which ``edge-agent status`` prints for a technician.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cityedge.mqtt import MqttClient
from cityedge.uplink.downlink import Display, DisplayAck, decode_ack, encode_display
from cityedge.uplink.seal import seal
from tests.helpers import ROOT, Proc, write_yaml
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration

S = 10**9


def agent_yaml(tmp: Path, secure: SecureFleet, gateway: str, output: str) -> Path:
    site = {"district": "종로구", "site": "세종로 정류장 01-147", "kind": "bus_stop"}
    secret = secure.add_gateway(gateway, **site)
    return write_yaml(tmp / f"{gateway}.yaml", {
        "gateway": {"id": gateway, "secret": secret, "site": site},
        "sensors": [],
        "outbox": {"path": str(tmp / gateway / "outbox.sqlite")},
        "uplink": {"mqtt": secure.agent_mqtt(gateway)},
        "display": {"output": output, "path": str(tmp / gateway / "display.json")},
        "clock_synced": True,
    })


def display(seq: int, action: str, text: str = "종로구 미세먼지 주의보 - 외출을 자제하세요",
            ttl_s: int = 3600) -> Display:
    now = time.time_ns()
    return Display(f"a1:{seq}", "a1", action, "pm10_advisory", "advisory",  # type: ignore[arg-type]
                   text if action == "show" else "", now, now + ttl_s * S if action == "show"
                   else None, {"district": "종로구"})


class Collector:
    """The collector's side of the downlink: publish displays, collect acks."""

    def __init__(self, secure: SecureFleet, gateway: str) -> None:
        self.topics, self.gateway = secure.topics, gateway
        self.key = secure.key(gateway)  # what the notifier seals with, from the registry
        self.client = MqttClient(secure.collector_options(
            f"c-{gateway}", subscriptions=[(self.topics.down_ack(gateway), 1),
                                           (self.topics.status(gateway), 1)]))

    async def __aenter__(self) -> Collector:
        """Connected, and the agent online (its retained status says so)."""
        self.client.start()
        await self.client.wait_connected(10)
        async with asyncio.timeout(15):
            while True:
                message = await self.client.get()
                if json.loads(message.payload).get("state") == "online":
                    return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    def sealed(self, d: Display) -> bytes:
        return encode_display(d, self.key)

    async def show(self, payload: bytes, timeout: float = 10) -> tuple[DisplayAck, float]:
        sent = time.monotonic()
        assert self.client.publish(self.topics.down(self.gateway), payload, qos=1)
        async with asyncio.timeout(timeout):
            message = await self.client.get()
            while message.topic != self.topics.down_ack(self.gateway):
                message = await self.client.get()
        return decode_ack(message.payload), time.monotonic() - sent


def status(config: Path) -> dict[str, object]:
    """What ``edge-agent status`` says of the running agent (exit 0 healthy or 1 degraded:
    the test machine's clock may not be NTP-synchronised)."""
    out = subprocess.run([sys.executable, "-m", "edge_agent.cli", "status", "--config",
                          str(config), "--json"], capture_output=True, text=True, cwd=ROOT,
                         check=False)
    assert out.returncode in (0, 1), out.stdout + out.stderr
    answer: dict[str, object] = json.loads(out.stdout)
    assert answer["running"] is True
    return answer


def test_the_terminal_shows_clears_acks_and_keeps_its_board_across_a_restart(
        tmp_path: Path, secure: SecureFleet) -> None:
    gw = "gw-bus-jongno-0147"
    config = agent_yaml(tmp_path, secure, gw, "file")
    board = tmp_path / gw / "display.json"

    def start() -> Proc:
        return Proc(["edge_agent.cli", "run", "--config", str(config)],
                    tmp_path / "agent.log").start()

    agent = start()
    try:
        async def first_run() -> None:
            async with Collector(secure, gw) as collector:
                ack, took = await collector.show(collector.sealed(display(1, "show")))
                assert ack == DisplayAck("a1:1", gw, "shown"), ack
                assert took < 2.0, f"ack after {took:.2f} s"
                shown = json.loads(board.read_text())["showing"]
                assert [d["text"] for d in shown] == ["종로구 미세먼지 주의보 - 외출을 자제하세요"]
                again, _ = await collector.show(collector.sealed(display(1, "show")))
                assert again.result == "shown"  # a resend: acked again, acted on once
                # Sealed, in a version this gateway does not know: answered with why.
                v2 = json.loads(encode_display(display(2, "show")))
                v2["v"] = 2
                bad, _ = await collector.show(json.dumps(seal(v2, collector.key, "display"),
                                                         ensure_ascii=False).encode())
                assert (bad.id, bad.result) == ("a1:2", "rejected")
                assert bad.detail.startswith("unsupported_version")
                # Not sealed (garbage, or a stranger's message): not answered at all.
                for junk in (b"not json", b'{"v": 2, "type": "alert_display", "id": "z"}'):
                    with pytest.raises(TimeoutError):
                        await collector.show(junk, timeout=1.5)

        asyncio.run(first_run())
        shown = status(config)["displays"]
        assert isinstance(shown, list) and len(shown) == 1 and "종로구 미세먼지 주의보" in shown[0]
        assert agent.stop() == 0, agent.output()[-2000:]

        agent = start()  # the collector will not resend a show it has an ack for

        async def second_run() -> None:
            async with Collector(secure, gw) as collector:
                ack, _ = await collector.show(collector.sealed(display(2, "clear")))
                assert ack.result == "cleared"
                assert json.loads(board.read_text())["showing"] == []

        asyncio.run(second_run())
        assert status(config)["displays"] == []
        assert "restored 1 display(s)" in agent.output()
    finally:
        agent.stop()


def test_a_gateway_without_a_display_rejects_with_the_reason(
        tmp_path: Path, secure: SecureFleet) -> None:
    gw = "gw-dust-nodisplay"
    agent = Proc(["edge_agent.cli", "run", "--config",
                  str(agent_yaml(tmp_path, secure, gw, "none"))],
                 tmp_path / "agent.log").start()
    try:
        async def run() -> None:
            async with Collector(secure, gw) as collector:
                ack, _ = await collector.show(collector.sealed(display(1, "show")))
                assert ack.result == "rejected" and ack.detail.startswith("no_display"), ack

        asyncio.run(run())
    finally:
        assert agent.stop() == 0, agent.output()[-2000:]


def test_a_clear_that_could_not_be_written_is_written_as_soon_as_it_can(
        tmp_path: Path, secure: SecureFleet) -> None:
    """The board forgot the show when the clear came; the file must follow, or the
    terminal would show the warning for good."""
    gw = "gw-bus-clear-retry"
    config = agent_yaml(tmp_path, secure, gw, "file")
    doc = yaml.safe_load(config.read_text())
    write_yaml(config, {**doc, "health_interval": 1})
    board = tmp_path / gw / "display.json"
    agent = Proc(["edge_agent.cli", "run", "--config", str(config)],
                 tmp_path / "agent.log").start()
    try:
        async def run() -> None:
            async with Collector(secure, gw) as collector:
                assert (await collector.show(collector.sealed(display(1, "show"))))[0].result \
                    == "shown"
                board.unlink()
                board.mkdir()  # the display file cannot be replaced now
                ack, _ = await collector.show(collector.sealed(display(2, "clear")))
                assert (ack.result, ack.detail) == ("rejected", "display_output: write failed")
                board.rmdir()
                async with asyncio.timeout(10):  # the next health tick rewrites it
                    while not board.is_file():
                        await asyncio.sleep(0.1)
                assert json.loads(board.read_text())["showing"] == []
                again, _ = await collector.show(collector.sealed(display(2, "clear")))
                assert again.result == "cleared"

        asyncio.run(run())
    finally:
        assert agent.stop() == 0, agent.output()[-2000:]
    assert "cannot write the display file" in agent.output()
