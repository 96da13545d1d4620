"""``edge-agent status`` asks the running agent and tells the truth: per sensor its port,
profile, last reading and counters; the outbox; the uplink; the clock. Exit 0 healthy,
1 degraded (with the problem in words), 2 not running or no outbox."""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cityedge import shipped
from edge_agent.decoding import load_profiles
from edge_agent.status import socket_path
from simulators.device import SimulatedDevice
from simulators.services import Mosquitto
from tests.helpers import ROOT, Proc, wait_for, write_yaml

pytestmark = pytest.mark.integration


def status(config: Path, *extra: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "edge_agent.cli", "status", "--config",
                           str(config), *extra], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)
    assert done.stderr == "", done.stderr
    return done.returncode, done.stdout


def answer(config: Path) -> tuple[int, dict[str, Any]]:
    code, out = status(config, "--json")
    return code, json.loads(out)


def agent_yaml(tmp: Path, port: Path | str, mqtt_port: int) -> Path:
    return write_yaml(tmp / "agent.yaml", {
        "gateway": {"id": "gw-status", "site": {"district": "d", "site": "s",
                                                "kind": "dust_zone"}},
        "sensors": [{"id": "pm-1", "port": str(port), "profile": "pms5003"}],
        "outbox": {"path": str(tmp / "state" / "outbox.sqlite"), "commit_window": 0.2},
        "uplink": {"mqtt": {"host": "127.0.0.1", "port": mqtt_port, "reconnect_max": 1,
                            "topic_prefix": f"test/status{os.getpid()}"}},
        # The test machine's clock need not be NTP-synchronised; the config says it is.
        "clock_synced": True,
        "health_interval": 1,
    })


@pytest.fixture
def device(tmp_path: Path) -> Iterator[SimulatedDevice]:
    profile = load_profiles(shipped.profiles_dir())["pms5003"]
    dev = SimulatedDevice(profile, link=tmp_path / "dev" / "pm-1", interval=0.2, seed=3)
    try:
        yield dev
    finally:
        dev.close()


def test_no_agent_and_no_outbox_is_exit_2_with_both_reasons(tmp_path: Path) -> None:
    config = agent_yaml(tmp_path, tmp_path / "ttyUSB0", 9)
    code, info = answer(config)
    assert code == 2 and info["running"] is False and info["exit"] == 2
    sock, outbox = tmp_path / "state" / "agent.sock", tmp_path / "state" / "outbox.sqlite"
    assert info["problems"] == [
        f"agent not running: no answer on {sock} (No such file or directory)",
        f"outbox: no outbox at {outbox} (the agent has never run with this config, or"
        " outbox.path points elsewhere)"]
    code, text = status(config)
    assert code == 2 and "gw-status: not running" in text


def test_a_healthy_agent_then_a_stopped_one(tmp_path: Path, mosquitto: Mosquitto,
                                            device: SimulatedDevice) -> None:
    config = agent_yaml(tmp_path, device.path, mosquitto.port)
    agent = Proc(["edge_agent.cli", "run", "--config", str(config)],
                 tmp_path / "agent.log").start()
    try:
        wait_for(lambda: "opened" in agent.output(), 15, "the agent to open the port")
        device.start()
        wait_for(lambda: answer(config)[1].get("sensors", [{}])[0].get("last_reading"), 20,
                 "a reading")
        code, info = answer(config)
        assert (code, info["problems"]) == (0, []), info
        (pm,) = info["sensors"]
        assert (pm["id"], pm["port"], pm["profile"], pm["open"]) == (
            "pm-1", str(device.path), "pms5003", True)
        assert 0 <= pm["last_reading_age_s"] < 5 and "pm2_5_ugm3" in pm["last_reading"]
        assert pm["counters"]["frames_ok"] >= 1
        assert info["uplink"]["connected"] is True
        assert info["uplink"]["target"] == f"MQTT broker 127.0.0.1:{mosquitto.port}"
        assert info["clock"]["synced"] is True
        assert info["outbox"]["max_bytes"] == 256 * 1024 * 1024
        assert info["waiting"] == info["outbox"]["readings"] > 0  # no collector: no acks
        sock = socket_path(tmp_path / "state" / "outbox.sqlite")
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        code, text = status(config)
        assert code == 0 and "gw-status: healthy" in text and "pm-1" in text
    finally:
        assert agent.stop() == 0
    code, info = answer(config)
    assert code == 2 and info["running"] is False and info["waiting"] > 0
    assert not socket_path(tmp_path / "state" / "outbox.sqlite").exists()


def test_an_unreachable_broker_and_an_unplugged_sensor_are_degraded(
        tmp_path: Path, device: SimulatedDevice) -> None:
    config = agent_yaml(tmp_path, device.path, 9)  # nothing listens on port 9
    agent = Proc(["edge_agent.cli", "run", "--config", str(config)],
                 tmp_path / "agent.log").start()
    try:
        wait_for(lambda: "opened" in agent.output(), 15, "the agent to open the port")
        device.start()
        wait_for(lambda: "uplink down" in agent.output(), 20, "the uplink-down line")
        device.unplug()
        wait_for(lambda: answer(config)[1]["sensors"][0]["counters"].get("port_errors"), 15,
                 "the unplug to be counted")
        code, info = answer(config)
        assert code == 1, info
        assert info["uplink"]["connected"] is False and info["uplink"]["outages"] == 1
        down, *others = info["problems"]
        assert down.startswith("uplink down for ") and "Connection refused" in down
        assert down.endswith("(MQTT broker 127.0.0.1:9; edge-agent doctor)")
        # The link may be back already (the agent reopens it), silent: not open, or not yet.
        assert others in ([], [f"sensor pm-1: port {device.path} not open (unplugged?)"])
        code, text = status(config)
        assert code == 1 and "degraded" in text and "DOWN" in text
    finally:
        assert agent.stop() == 0


def test_tail_streams_the_readings_the_agent_stores(tmp_path: Path, mosquitto: Mosquitto,
                                                    device: SimulatedDevice) -> None:
    config = agent_yaml(tmp_path, device.path, mosquitto.port)
    agent = Proc(["edge_agent.cli", "run", "--config", str(config)],
                 tmp_path / "agent.log").start()
    try:
        wait_for(lambda: "opened" in agent.output(), 15, "the agent to open the port")
        wait_for(lambda: socket_path(tmp_path / "state" / "outbox.sqlite").exists(), 15,
                 "the status socket")
        tail = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "tail", "--config",
                                 str(config), "--sensor", "pm-1", "--json"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            device.start()
            assert tail.stdout is not None
            lines = [json.loads(tail.stdout.readline()) for _ in range(3)]
        finally:
            tail.terminate()
            tail.wait(10)
        assert [(r["sensor"], r["measurement"]) for r in lines] == [("pm-1", "particulate")] * 3
        assert all("pm2_5_ugm3" in r["fields"] for r in lines)
        assert lines[0]["time_ns"] < lines[1]["time_ns"] < lines[2]["time_ns"]
    finally:
        assert agent.stop() == 0
    done = subprocess.run([sys.executable, "-m", "edge_agent.cli", "tail", "--config",
                           str(config)], capture_output=True, text=True, cwd=ROOT, timeout=30,
                          check=False)
    assert done.returncode == 2 and "tail: agent not running: no answer on" in done.stderr


def _other_group() -> grp.struct_group:
    """A group that is not this process's own: the technicians' group of the test."""
    groups = [g for g in grp.getgrall() if g.gr_gid != os.getgid()]
    return next((g for g in groups if g.gr_name == "dialout"), groups[0])


def test_the_socket_goes_where_the_config_says_with_its_group_and_mode(
        tmp_path: Path, device: SimulatedDevice) -> None:
    """status.socket, status.group and status.mode: a technicians' group may ask, others may
    not; an unknown group is one error line and the socket stays the agent's own."""
    if os.geteuid() != 0 and _other_group().gr_gid not in os.getgroups():
        pytest.fail("run as root or as a member of a second group to give the socket to it")
    group = _other_group()
    doc = yaml.safe_load(agent_yaml(tmp_path, device.path, 9).read_text())
    sock = tmp_path / "run" / "agent.sock"
    config = write_yaml(tmp_path / "agent.yaml", {
        **doc, "status": {"socket": str(sock), "group": group.gr_name, "mode": 0o640}})
    agent = Proc(["edge_agent.cli", "run", "--config", str(config)],
                 tmp_path / "agent.log").start()
    try:
        wait_for(sock.exists, 15, "the status socket")
        st = sock.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, group.gr_gid)
        _, info = answer(config)  # status finds it from the same config
        assert info["running"] is True and info["gateway"] == "gw-status", info
        assert not socket_path(tmp_path / "state" / "outbox.sqlite").exists()
    finally:
        assert agent.stop() == 0
    assert not sock.exists()

    write_yaml(config, {**doc, "status": {"socket": str(sock), "group": "no-such-group-ce",
                                          "mode": "0600"}})
    agent = Proc(["edge_agent.cli", "run", "--config", str(config)],
                 tmp_path / "agent2.log").start()
    try:
        wait_for(sock.exists, 15, "the status socket")
        wait_for(lambda: "status.group" in agent.output(), 10, "the group error")
        errors = [line for line in agent.output().splitlines() if "status.group" in line]
        assert len(errors) == 1 and " ERROR " in errors[0], errors
        assert "no group 'no-such-group-ce' on this machine" in errors[0]
        st = sock.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o600, os.getegid())
        assert answer(config)[1]["running"] is True
    finally:
        assert agent.stop() == 0
