"""The collector with a registry, as real processes: who may send, and where they stand.

The first test runs on the suite's plain broker, where any client may publish
as any gateway: what it pins is the collector's own check, which holds even
when the broker's files are stale (revoked but not yet reloaded). The second
runs the whole path on a secure broker: TLS, the generated password and ACL
files, the agent logging in with its registry secret.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cityedge.uplink import Topics
from collector.registry import model
from edge_agent.decoding import load_profiles
from simulators.device import SimulatedDevice
from simulators.secure import SecureSetup
from simulators.services import InfluxDB, Mosquitto
from tests.conftest import _need
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.unit.test_ingest import payload

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOW = "2024-05-01T09:00:00Z"


def publish(port: int, topic: str, body: bytes) -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{os.getpid()}-{topic}",
                    protocol=MQTTProtocolVersion.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(topic, body, qos=1).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def health(influxdb: InfluxDB, db: str) -> dict[str, object]:
    got = rows(influxdb, db, "SELECT * FROM cityedge_collector ORDER BY time DESC LIMIT 1")
    return got[0] if got else {}


def test_unknown_and_revoked_gateways_are_refused_and_the_registry_sets_the_site(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str
) -> None:
    reg, _ = model.add_gateway(model.Registry(), "gw-known", district="강남구",
                               site="역삼역 2번 출구", kind="bus_stop", now=NOW)
    reg, _ = model.add_gateway(reg, "gw-revoked", district="강남구", site="s", kind="bus_stop",
                               now=NOW)
    registry = tmp_path / "registry.yaml"
    model.save(registry, model.revoke(reg, "gw-revoked", now=NOW))
    prefix = f"test/{unique_name}"
    cfg = write_yaml(tmp_path / "collector.yaml", {
        "registry": "registry.yaml",  # relative to the config's folder
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": f"c-{unique_name}",
                 "topic_prefix": prefix},
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": unique_name},
        "batching": {"linger": 0.02},
        "health_interval": 1,
    })
    collector = Proc(["collector.cli", "run", "--config", str(cfg)],
                     tmp_path / "collector.log").start()
    topics = Topics(prefix)
    try:
        wait_for(lambda: "collector running" in collector.output(), 20, "the collector")
        publish(mosquitto.port, topics.up("gw-unknown"), payload(gateway="gw-unknown"))
        publish(mosquitto.port, topics.up("gw-revoked"), payload(gateway="gw-revoked"))
        # The payload says 마포구 / 망원동 정류장: the registry overrides it.
        publish(mosquitto.port, topics.up("gw-known"), payload(gateway="gw-known"))

        def known_rows() -> list[dict[str, object]]:
            return rows(influxdb, unique_name,
                        "SELECT * FROM particulate WHERE gateway='gw-known'")

        wait_for(lambda: len(known_rows()) == 2, 20, "gw-known's readings")
        for r in known_rows():
            assert (r["district"], r["site"], r["site_kind"]) == (
                "강남구", "역삼역 2번 출구", "bus_stop")
        wait_for(lambda: health(influxdb, unique_name).get("site_overrides") == 1, 20,
                 "the health point to count the override")
        h = health(influxdb, unique_name)
        assert h["refused_unknown_gateway"] == 1
        assert h["refused_revoked_gateway"] == 1
        assert h["registry_gateways"] == 1
        assert not rows(influxdb, unique_name,
                        "SELECT * FROM particulate WHERE gateway='gw-unknown' OR"
                        " gateway='gw-revoked'")

        # A gateway added by the operator while the collector runs is taken within
        # about a second (the file's mtime), without a restart or a signal.
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-m", "collector.cli", "gateways", "--registry",
                        str(registry), "add", "gw-late", "--district", "서초구", "--site",
                        "양재역", "--kind", "dust_zone"], check=True, env=env, cwd=ROOT,
                       capture_output=True, timeout=60)
        wait_for(lambda: health(influxdb, unique_name).get("registry_gateways") == 2, 20,
                 "the collector to reload the registry")
        publish(mosquitto.port, topics.up("gw-late"), payload(gateway="gw-late"))
        wait_for(lambda: bool(rows(influxdb, unique_name, "SELECT * FROM particulate WHERE"
                                   " gateway='gw-late' AND district='서초구'")), 20,
                 "gw-late's readings")
    finally:
        rc = collector.stop()
    assert rc == 0, collector.output()[-3000:]
    assert "unknown_gateway" in collector.output()


@pytest.fixture
def secure_setup(tmp_path: Path) -> Iterator[tuple[SecureSetup, Mosquitto]]:
    _need("mosquitto", "mosquitto")
    _need("openssl", "openssl")
    setup = SecureSetup.create(tmp_path / "secure")
    (tmp_path / "mosquitto").mkdir()
    broker = Mosquitto(tmp_path / "mosquitto", security=setup.security()).start()
    try:
        yield setup, broker
    finally:
        broker.stop()


def test_the_whole_path_on_a_secure_broker(
    tmp_path: Path, secure_setup: tuple[SecureSetup, Mosquitto], influxdb: InfluxDB,
    unique_name: str
) -> None:
    """PMS5003 simulator -> agent (its registry secret, TLS) -> Mosquitto (TLS, generated
    password and ACL files) -> collector (registry, TLS) -> InfluxDB, exactly once."""
    setup, broker = secure_setup
    secret = setup.add_gateway("gw-tls", district="강남구", site="역삼역 2번 출구",
                               kind="bus_stop")
    setup.apply(broker)
    profile = load_profiles(ROOT / "firmware_profiles")["pms5003"]
    device = SimulatedDevice(profile, link=tmp_path / "dev" / "pm-1", interval=0.02, seed=3)
    ca = str(setup.ca_file)
    collector_cfg = write_yaml(tmp_path / "collector.yaml", {
        "registry": str(setup.registry_path),
        "mqtt": {"host": "127.0.0.1", "port": broker.collector_port,
                 "client_id": f"c-{unique_name}", "username": "collector-1",
                 "password": setup.collector_secret, "tls": {"ca_file": ca}},
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": unique_name},
        "batching": {"linger": 0.02},
    })
    agent_cfg = write_yaml(tmp_path / "agent.yaml", {
        # The gateway's own idea of its site differs: the registry's wins.
        "gateway": {"id": "gw-tls", "secret": secret,
                    "site": {"district": "마포구", "site": "망원동", "kind": "dust_zone"}},
        "sensors": [{"id": "pm-1", "port": device.path, "profile": "pms5003"}],
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "commit_window": 0.2},
        "uplink": {"mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"ca_file": ca}},
                   "batch_size": 7, "ack_timeout": 5},
        "health_interval": 3600,
    })
    collector = Proc(["collector.cli", "run", "--config", str(collector_cfg)],
                     tmp_path / "collector.log").start()
    agent = Proc(["edge_agent.cli", "run", "--config", str(agent_cfg)],
                 tmp_path / "agent.log").start()
    try:
        count = 30
        wait_for(lambda: "opened" in agent.output(), 15, "the agent to open the port")
        device.start(count=count)
        device.wait(30)

        def landed() -> list[dict[str, object]]:
            return rows(influxdb, unique_name,
                        "SELECT * FROM particulate WHERE gateway='gw-tls'")

        wait_for(lambda: len(landed()) >= count, 30, f"{count} readings in InfluxDB")
        points = landed()
        assert len(points) == count
        assert len({p["seq"] for p in points}) == count
        assert {(p["district"], p["site"], p["site_kind"]) for p in points} == {
            ("강남구", "역삼역 2번 출구", "bus_stop")}
    finally:
        device.close()
        agent_rc = agent.stop()
        collector_rc = collector.stop()
    assert agent_rc == 0, agent.output()[-3000:]
    assert collector_rc == 0, collector.output()[-3000:]
