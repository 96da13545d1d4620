"""``edge-agent doctor`` on a healthy gateway and on each broken one: it says what is
wrong in plain words, with the fix, and exits 1 when something failed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cityedge import shipped
from edge_agent.decoding import load_profiles
from simulators.device import SimulatedDevice
from simulators.services import InfluxDB, free_port
from tests.helpers import ROOT, Proc, wait_for, write_yaml
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration

# One gateway per test (the session broker's registry keeps an id once added).
GATEWAYS = {"test_a_healthy_gateway_passes_with_the_agent_stopped_and_running": "gw-doctor-1",
            "test_each_broken_part_is_named_with_its_fix": "gw-doctor-2"}


def doctor(config: Path) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-m", "edge_agent.cli", "doctor", "--config",
                           str(config)], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          check=False)
    assert done.stderr == "", done.stderr
    return done.returncode, done.stdout.splitlines()


def config(tmp: Path, gateway: str, port: Path | str, mqtt: dict[str, Any],
           secret: str) -> Path:
    return write_yaml(tmp / "agent.yaml", {
        "gateway": {"id": gateway, "secret": secret,
                    "site": {"district": "강남구", "site": "역삼역", "kind": "dust_zone"}},
        "sensors": [{"id": "pm-1", "port": str(port), "profile": "pms5003"}],
        "outbox": {"path": str(tmp / "state" / "outbox.sqlite")},
        "uplink": {"mqtt": mqtt},
        "clock_synced": True,
    })


@pytest.fixture
def device(tmp_path: Path) -> Iterator[SimulatedDevice]:
    profile = load_profiles(shipped.profiles_dir())["pms5003"]
    dev = SimulatedDevice(profile, link=tmp_path / "dev" / "pm-1", interval=0.2, seed=5)
    dev.start()
    try:
        yield dev
    finally:
        dev.close()


@pytest.fixture
def gateway(request: pytest.FixtureRequest) -> str:
    return GATEWAYS[request.node.name]


@pytest.fixture
def secret(secure: SecureFleet, gateway: str) -> str:
    return secure.add_gateway(gateway)


def test_a_healthy_gateway_passes_with_the_agent_stopped_and_running(
        tmp_path: Path, secure: SecureFleet, gateway: str, secret: str,
        device: SimulatedDevice) -> None:
    cfg = config(tmp_path, gateway, device.path, secure.agent_mqtt(gateway), secret)
    code, lines = doctor(cfg)
    assert code == 0, "\n".join(lines)
    assert f"ok   sensor pm-1: {device.path}: answers as pms5003" in lines
    assert f"ok   uplink: MQTT login as {gateway} accepted" in lines
    assert any(line.startswith("ok   uplink: TLS TLSv1.") for line in lines), lines
    assert "ok   clock: synchronised (the config says so)" in lines
    assert lines[-1].startswith("0 failed, 2 warnings")  # agent not running; no outbox yet

    agent = Proc(["edge_agent.cli", "run", "--config", str(cfg)], tmp_path / "agent.log").start()
    try:
        wait_for(lambda: "uplink up" in agent.output(), 20, "the agent to connect")
        wait_for(lambda: any("last pms5003 reading" in line for line in doctor(cfg)[1]), 20,
                 "the agent's first reading")
        code, lines = doctor(cfg)
        assert code == 0, "\n".join(lines)
        assert "ok   uplink: the running agent is connected" in lines
        assert any(line.startswith("ok   outbox: ") and "intact" in line for line in lines)
        assert lines[-1].startswith("0 failed, 0 warnings")
    finally:
        assert agent.stop() == 0


def test_each_broken_part_is_named_with_its_fix(
        tmp_path: Path, secure: SecureFleet, gateway: str, secret: str,
        device: SimulatedDevice) -> None:
    missing = tmp_path / "ttyUSB7"
    code, lines = doctor(config(tmp_path, gateway, missing, secure.agent_mqtt(gateway), secret))
    assert code == 1
    i = lines.index(f"FAIL sensor pm-1: {missing} does not exist")
    assert lines[i + 1] == ("     fix: plug the sensor in; ls -l /dev/serial/by-id/ for its"
                            " stable path")

    wrong = config(tmp_path, gateway, device.path, secure.agent_mqtt(gateway),
                   "not-the-secret-" * 2)
    code, lines = doctor(wrong)
    assert code == 1
    (login,) = [line for line in lines if line.startswith("FAIL uplink: MQTT login")]
    assert login == f"FAIL uplink: MQTT login as {gateway}: connect refused: Not authorized"
    assert "gateway.secret must be the one" in lines[lines.index(login) + 1]

    stopped = config(tmp_path, gateway, device.path, {"host": "127.0.0.1", "port": 9}, secret)
    code, lines = doctor(stopped)
    assert code == 1
    assert "FAIL uplink: TCP 127.0.0.1:9: Connection refused" in lines

    (tmp_path / "agent.yaml").write_text("gateway: {id: x\n", encoding="utf-8")
    code, lines = doctor(tmp_path / "agent.yaml")
    assert code == 1
    assert lines[0].startswith(f"FAIL config: {tmp_path / 'agent.yaml'}:2: <top>: not valid"
                               " YAML: "), lines


def _http_collector(tmp: Path, name: str, secure: SecureFleet, influx_url: str,
                    port: int) -> Proc:
    server = secure.server_tls()
    cfg = write_yaml(tmp / f"{name}.yaml", {
        "registry": str(secure.registry_path), "mqtt": None,
        "writer": {"type": "influxdb_v1", "url": influx_url, "database": name},
        "http": {"host": "127.0.0.1", "port": port, "write_timeout": 2,
                 "tls": {"cert_file": server.cert_file, "key_file": server.key_file}},
    })
    collector = Proc(["collector.cli", "run", "--config", str(cfg)], tmp / f"{name}.log").start()
    wait_for(lambda: "collector running" in collector.output(), 20, f"collector {name}")
    return collector


def test_the_http_uplink_is_checked_to_the_collectors_ack(
        tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, unique_name: str,
        device: SimulatedDevice) -> None:
    """Over HTTP, doctor posts a probe batch as the gateway and wants the collector's sealed
    ack: healthy; a wrong secret (refused credentials); a token the collector takes but a
    secret that cannot verify its ack (no ack); nothing listening (unreachable). Each FAIL
    says what to do."""
    gw = "gw-doctor-http"
    secret = secure.add_gateway(gw)
    port = free_port()
    collector = _http_collector(tmp_path, unique_name, secure, influxdb.url, port)

    def http_config(url: str, **gateway: Any) -> Path:
        doc = yaml.safe_load(config(tmp_path, gw, device.path, {}, secret).read_text())
        doc["gateway"].update(gateway)
        doc["uplink"] = {"kind": "http", "http": {"url": url, "tls": secure.tls}}
        return write_yaml(tmp_path / "agent.yaml", doc)

    def uplink(lines: list[str]) -> list[str]:
        return [line for line in lines if "uplink:" in line or "fix:" in line]

    url = f"https://127.0.0.1:{port}"
    try:
        code, lines = doctor(http_config(url))
        assert code == 0, "\n".join(lines)
        acked = [line for line in lines if "acked a probe batch" in line]
        assert len(acked) == 1 and acked[0].startswith(f"ok   uplink: HTTP as {gw}: the"), lines
        assert acked[0].endswith("ms (sealed with this gateway's key)")

        code, lines = doctor(http_config(url, secret="not-the-registry-secret"))
        assert code == 1
        i = lines.index(f"FAIL uplink: HTTP as {gw}: credentials refused (401 unauthorized:"
                        " wrong token)")
        assert lines[i + 1].startswith("     fix: gateway.secret (or uplink.http.token) must"
                                       " be the one edge-collector gateways add printed")

        doc = yaml.safe_load(http_config(url, secret="not-the-registry-secret").read_text())
        doc["uplink"]["http"]["token"] = secret  # the collector takes it; the seal is wrong
        code, lines = doctor(write_yaml(tmp_path / "agent.yaml", doc))
        assert code == 1
        no_ack = [line for line in lines if "no ack this gateway can verify" in line]
        assert len(no_ack) == 1 and no_ack[0].startswith(
            f"FAIL uplink: HTTP as {gw}: the collector answered 200"), uplink(lines)
    finally:
        assert collector.stop() == 0

    code, lines = doctor(http_config(url))  # nobody listens there now
    assert code == 1
    assert f"FAIL uplink: TCP 127.0.0.1:{port}: Connection refused" in lines, uplink(lines)
