"""The collector's start-up tells the truth in one line each: a taken HTTP port is one
error and exit 1 (no traceback, no unclosed session); an unreachable InfluxDB is a
warning, not a plain "collector running", and its return is logged."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from simulators.services import InfluxDB, Mosquitto, free_port
from tests.helpers import ROOT, Proc, wait_for, write_yaml

pytestmark = pytest.mark.integration


def _config(tmp: Path, name: str, mosquitto: Mosquitto, influx_url: str,
            http_port: int | None = None) -> Path:
    doc = {
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": f"c-{name}",
                 "topic_prefix": f"test/{name}"},
        "writer": {"type": "influxdb_v1", "url": influx_url, "database": name},
        "insecure": True,
        "health_interval": 1,
    }
    if http_port is not None:
        doc["http"] = {"host": "127.0.0.1", "port": http_port, "token": "t0ken"}
    return write_yaml(tmp / "collector.yaml", doc)


def test_a_taken_http_port_is_one_line_and_exit_1(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _config(tmp_path, unique_name, mosquitto, influxdb.url, http_port=port)
        done = subprocess.run([sys.executable, "-m", "collector.cli", "run", "--config",
                               str(config)], capture_output=True, text=True, cwd=ROOT,
                              timeout=60, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    errors = [line for line in out.splitlines() if " ERROR " in line]
    assert len(errors) == 1, out
    assert errors[0].endswith(f"collector cannot start: cannot listen on 127.0.0.1:{port}"
                              " (http.port in the config): Address already in use"), out
    assert "Traceback" not in out and "Unclosed" not in out and "collector running" not in out


def test_an_unreachable_influxdb_is_a_warning_at_start_and_its_return_is_logged(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str) -> None:
    port = free_port()
    config = _config(tmp_path, unique_name, mosquitto, f"http://127.0.0.1:{port}")
    collector = Proc(["collector.cli", "run", "--config", str(config)],
                     tmp_path / "collector.log").start()
    try:
        wait_for(lambda: "collector running" in collector.output(), 20, "the collector")
        out = collector.output()
        assert (f"WARNING collector.service: InfluxDB http://127.0.0.1:{port} unreachable at"
                " start-up (ClientConnectorError") in out, out
        assert f"collector running (InfluxDB http://127.0.0.1:{port} unreachable)" in out, out
        # InfluxDB comes up on that port: the collector says so within a few seconds.
        (tmp_path / "influx").mkdir()
        late = InfluxDB(tmp_path / "influx", port=port)
        late.start()
        try:
            wait_for(lambda: "reachable again" in collector.output(), 30, "InfluxDB's return")
            assert collector.alive()
        finally:
            late.stop()
    finally:
        collector.stop()
    assert "Traceback" not in collector.output()
