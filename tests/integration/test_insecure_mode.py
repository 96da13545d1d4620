"""The insecure mode is an explicit opt-in, and says so when it starts (docs/identity.md).

A collector without a gateway registry refuses to start unless its config says
``insecure: true``; with it, the collector warns at start-up and reports
``insecure`` in its health point. An agent without ``gateway.secret`` warns
that it takes acks and displays unsealed. These run on the suite's plain,
anonymous broker: the one place the insecure mode still belongs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulators.services import InfluxDB, Mosquitto
from tests.helpers import ROOT, Proc, rows, wait_for, write_yaml

pytestmark = pytest.mark.integration


def collector_config(tmp: Path, name: str, mosquitto: Mosquitto, influxdb: InfluxDB,
                     **extra: Any) -> Path:
    return write_yaml(tmp / "collector.yaml", {
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": f"c-{name}",
                 "topic_prefix": f"test/{name}"},
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": name},
        "health_interval": 1,
        **extra,
    })


def test_a_collector_without_a_registry_or_insecure_refuses_to_start(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str) -> None:
    config = collector_config(tmp_path, unique_name, mosquitto, influxdb)
    for command in ("run", "check"):
        done = subprocess.run([sys.executable, "-m", "collector.cli", command, "--config",
                               str(config)], capture_output=True, text=True, cwd=ROOT,
                              timeout=60, check=False)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        # One line that names the key and both ways out of it.
        assert done.stderr.count("\n") == 1, done.stderr
        assert "config error:" in done.stderr and "collector.yaml:" in done.stderr
        assert "registry: required" in done.stderr
        assert "insecure: true" in done.stderr
        assert "Traceback" not in done.stderr


def test_insecure_true_warns_at_start_up_and_in_the_health_point(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, unique_name: str) -> None:
    config = collector_config(tmp_path, unique_name, mosquitto, influxdb, insecure=True)
    collector = Proc(["collector.cli", "run", "--config", str(config)],
                     tmp_path / "collector.log").start()
    try:
        wait_for(lambda: "collector running" in collector.output(), 20, "the collector")
        head = collector.output().split("collector running")[0]
        assert "WARNING" in head and "insecure: true: no gateway registry" in head, head

        def health() -> list[dict[str, Any]]:
            try:
                return rows(influxdb, unique_name, "SELECT * FROM cityedge_collector")
            except AssertionError as exc:  # the database comes with the first write
                if "database not found" in str(exc):
                    return []
                raise

        wait_for(lambda: bool(health()), 20, "a cityedge_collector health point")
        assert health()[-1]["insecure"] is True
    finally:
        rc = collector.stop()
    assert rc == 0, collector.output()[-3000:]


def test_an_agent_without_a_secret_warns_that_it_takes_acks_and_displays_unsealed(
        tmp_path: Path, mosquitto: Mosquitto, unique_name: str) -> None:
    config = write_yaml(tmp_path / "agent.yaml", {
        "gateway": {"id": "gw-no-secret", "site": {"district": "종로구", "site": "s",
                                                   "kind": "bus_stop"}},
        "sensors": [],
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "uplink": {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port,
                            "topic_prefix": f"test/{unique_name}"}},
    })
    agent = Proc(["edge_agent.cli", "run", "--config", str(config)],
                 tmp_path / "agent.log").start()
    warning = "gateway.secret is not set: acks and displays are taken unsealed"
    try:
        wait_for(lambda: warning in agent.output(), 20, "the agent's warning")
        line = next(x for x in agent.output().splitlines() if warning in x)
        assert "WARNING" in line, line
        # The warning comes before the signal handlers are in place: stop only once the
        # agent runs, or a SIGTERM in between ends it with -15 instead of a clean exit.
        wait_for(lambda: "readings waiting" in agent.output(), 20, "the agent to run")
    finally:
        rc = agent.stop()
    assert rc == 0, agent.output()[-3000:]
