"""SIGHUP reloads a running agent's config while readings flow, and every reading lands in
InfluxDB exactly once: a sensor added, one moved to another port and model, one retagged,
one removed, the uplink reconnected; a broken config and a restart-only change refused
with a precise line and counted, the old config running on. The agent is a real process
under a real NOTIFY_SOCKET (a datagram socket the test binds, as systemd does), so the
test also reads what it tells systemd: READY=1, WATCHDOG=1, RELOADING=1 then READY=1
around each reload, STOPPING=1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cityedge import shipped
from edge_agent.decoding import load_profiles
from simulators.device import SimulatedDevice
from simulators.services import InfluxDB
from tests.helpers import ROOT, Proc, rows, wait_for, write_yaml
from tests.notify_socket import NotifySocket
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration

GW = "gw-reload"
SITE = {"district": "마포구", "site": "합정역 정류장", "kind": "bus_stop"}


def landed(influx: InfluxDB, db: str) -> list[dict[str, Any]]:
    try:
        return rows(influx, db, f"SELECT * FROM particulate WHERE gateway='{GW}'")
    except AssertionError as exc:  # the collector creates the database on its first write
        if "database not found" in str(exc):
            return []
        raise


def test_reloads_under_load_lose_nothing_and_duplicate_nothing(  # noqa: PLR0915  one story
    tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    profiles = load_profiles(shipped.profiles_dir())
    d1 = SimulatedDevice(profiles["pms5003"], link=tmp_path / "dev" / "pm-1", interval=0.04,
                         seed=21)
    d2 = SimulatedDevice(profiles["pms5003"], link=tmp_path / "dev" / "pm-2", interval=0.02,
                         seed=22)
    d3 = SimulatedDevice(profiles["sds011"], link=tmp_path / "dev" / "pm-2b", interval=0.02,
                         seed=23)
    secret = secure.add_gateway(GW, **SITE)
    collector_cfg = write_yaml(tmp_path / "collector.yaml", {
        "registry": str(secure.registry_path),
        "mqtt": secure.collector_mqtt(f"c-{unique_name}"),
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": unique_name},
        "batching": {"linger": 0.02},
    })
    base: dict[str, Any] = {
        "gateway": {"id": GW, "secret": secret, "site": SITE},
        "sensors": [{"id": "pm-1", "port": d1.path, "profile": "pms5003",
                     "tags": {"pole": "A-1"}}],
        "outbox": {"path": str(tmp_path / "state" / "outbox.sqlite"), "commit_window": 0.2},
        "uplink": {"mqtt": secure.agent_mqtt(GW), "batch_size": 9, "ack_timeout": 4},
        "health_interval": 1,
    }
    agent_cfg = write_yaml(tmp_path / "agent.yaml", base)
    notify = NotifySocket(tmp_path / "notify")
    collector = Proc(["collector.cli", "run", "--config", str(collector_cfg)],
                     tmp_path / "collector.log").start()
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    agent = Proc(["edge_agent.cli", "run", "--config", str(agent_cfg)],
                 tmp_path / "agent.log").start()
    monkeypatch.delenv("NOTIFY_SOCKET")

    def reload(doc: dict[str, Any], outcome: str, n: int) -> None:
        write_yaml(agent_cfg, doc)
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: agent.output().count(outcome) >= n, 20, f"{outcome} #{n}")
        assert agent.alive()

    n1, n2, n3 = 500, 80, 60
    try:
        wait_for(lambda: "READY" in notify.sequence(), 20, "READY=1")
        wait_for(lambda: "pm-1: opened" in agent.output(), 15, "pm-1 opened")
        d1.start(count=n1)  # flows through every reload below (20 s)

        # 1. A sensor added: its port opens, pm-1's stays open.
        added = {**base, "sensors": [*base["sensors"],
                                     {"id": "pm-2", "port": d2.path, "profile": "pms5003"}]}
        reload(added, "SIGHUP: config reloaded", 1)
        assert "added pm-2; uplink kept" in agent.output()
        wait_for(lambda: "pm-2: opened" in agent.output(), 10, "pm-2 opened")
        d2.start(count=n2)
        d2.wait(20)
        # Its readings delivered before it changes model (they travel with the model the
        # sensor has when they are sent; the agent warns about exactly that).
        wait_for(lambda: sum(p["sensor"] == "pm-2" for p in landed(influxdb, unique_name))
                 >= n2, 20, "pm-2's pms5003 readings in InfluxDB")

        # 2. pm-2 moved to another port and model; pm-1 retagged (its port stays open).
        moved = {**base, "sensors": [{**base["sensors"][0], "tags": {"pole": "B-7"}},
                                     {"id": "pm-2", "port": d3.path, "profile": "sds011"}]}
        reload(moved, "SIGHUP: config reloaded", 2)
        assert "reopened pm-2; retagged pm-1; uplink kept" in agent.output()
        assert "sensor pm-2 is now a sds011 (was pms5003)" in agent.output()
        wait_for(lambda: f"pm-2: opened {d3.path} (sds011)" in agent.output(), 10,
                 "pm-2 reopened on its new port")
        d3.start(count=n3)

        # 3. A broken file: refused with every error at its line; the old config runs on.
        broken = {**moved, "sensors": [*moved["sensors"],
                                       {"id": "pm-3", "port": d2.path, "profile": "pms9999"}],
                  "health_interval": 0}
        reload(broken, "reload refused (invalid)", 1)
        log = agent.output()
        assert f"{agent_cfg}:" in log and "sensors[2].profile: unknown profile 'pms9999'" in log
        assert "health_interval: expected" in log or "health_interval:" in log

        # 4. A setting only a restart applies: refused, said so.
        elsewhere = {**moved, "outbox": {**moved["outbox"], "path": str(tmp_path / "x.sqlite")}}
        reload(elsewhere, "reload refused (needs_restart)", 1)
        assert "outbox changed: applied only at a restart" in agent.output()
        d3.wait(20)

        # 5. pm-2 removed, and the uplink changed: a new connection, the outbox kept.
        mqtt = {**base["uplink"]["mqtt"], "keepalive": 20}
        last = {**moved, "sensors": moved["sensors"][:1],
                "uplink": {**base["uplink"], "mqtt": mqtt, "batch_size": 13}}
        reload(last, "SIGHUP: config reloaded", 3)
        assert "removed pm-2; uplink reconnected to MQTT broker" in agent.output()
        d1.wait(40)
        assert (d1.stats.frames, d2.stats.frames, d3.stats.frames) == (n1, n2, n3)

        total = n1 + n2 + n3
        wait_for(lambda: len(landed(influxdb, unique_name)) >= total, 40,
                 f"{total} readings in InfluxDB")
        time.sleep(1.0)  # anything duplicated would show up by now
        points = landed(influxdb, unique_name)
        by_sensor = {s: [p for p in points if p["sensor"] == s] for s in ("pm-1", "pm-2")}
        assert (len(by_sensor["pm-1"]), len(by_sensor["pm-2"])) == (n1, n2 + n3)
        assert len({(p["epoch"], p["seq"]) for p in points}) == total, "a reading twice"
        assert {p["model"] for p in by_sensor["pm-2"]} == {"pms5003", "sds011"}
        assert by_sensor["pm-1"][-1]["pole"] == "B-7"

        # The counters reach gateway_health, and status says the same.
        def health() -> dict[str, Any]:
            got = rows(influxdb, unique_name, "SELECT last(config_reloads) AS ok,"
                       " last(config_reloads_refused_invalid) AS invalid,"
                       " last(config_reloads_refused_needs_restart) AS restart"
                       " FROM gateway_health")
            return got[0] if got else {}

        wait_for(lambda: health().get("ok") == 3, 15, "config_reloads = 3 in gateway_health")
        assert (health()["invalid"], health()["restart"]) == (1, 1)
        done = subprocess.run([sys.executable, "-m", "edge_agent.cli", "status", "--config",
                               str(agent_cfg), "--json"], capture_output=True, text=True,
                              cwd=ROOT, timeout=60, check=False)
        config = json.loads(done.stdout)["config"]
        assert (config["reloads"], config["refused"], config["last_error"]) == (
            3, {"invalid": 1, "needs_restart": 1}, "")
    finally:
        for d in (d1, d2, d3):
            d.close()
        agent_rc = agent.stop()
        collector_rc = collector.stop()
        time.sleep(0.5)  # the reader's last datagrams
        notify.close()
    assert agent_rc == 0, agent.output()[-3000:]
    assert collector_rc == 0, collector.output()[-3000:]
    # What systemd heard: ready, each reload bracketed (the refused ones too), stopping;
    # and the watchdog fed all along from the event loop.
    keys = notify.sequence()
    assert keys == ["READY", *["RELOADING", "READY"] * 5, "STOPPING"], keys
    pings = sum(m == {"WATCHDOG": "1"} for m in notify.messages)
    assert pings >= 20, pings
    refused = [m["STATUS"] for m in notify.messages if "READY" in m and "refused" in m["STATUS"]]
    assert len(refused) == 2
