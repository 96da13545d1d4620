"""The agent's metrics, scraped by a real Prometheus (Debian's package): a running agent with a
simulated PMS5003 on a pty (some frames corrupted) and a real broker but no collector, so
its outbox fills. Its outbox depth, uplink state, the sensor's frames and decode errors and
its version arrive under ``cityedge_agent_*`` names; the textfile for node-exporter holds
the same exposition."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityedge import shipped
from cityedge.version import package_version
from edge_agent.decoding import load_profiles
from simulators.device import Faults, SimulatedDevice
from simulators.services import Mosquitto, free_port
from tests.conftest import _need
from tests.helpers import Proc, wait_for, write_yaml
from tests.prometheus import Prometheus

pytestmark = pytest.mark.integration


@pytest.fixture
def device(tmp_path: Path) -> Iterator[SimulatedDevice]:
    profile = load_profiles(shipped.profiles_dir())["pms5003"]
    dev = SimulatedDevice(profile, link=tmp_path / "dev" / "pm-1", interval=0.1, seed=5,
                          faults=Faults(bad_checksum=0.3))
    try:
        yield dev
    finally:
        dev.close()


def test_prometheus_scrapes_the_agents_metrics(tmp_path: Path, mosquitto: Mosquitto,
                                               device: SimulatedDevice) -> None:
    _need("prometheus", "prometheus")
    port = free_port()
    textfile = tmp_path / "textfile" / "cityedge_agent.prom"
    config = write_yaml(tmp_path / "agent.yaml", {
        "gateway": {"id": "gw-metrics", "site": {"district": "d", "site": "s",
                                                 "kind": "dust_zone"}},
        "sensors": [{"id": "pm-1", "port": str(device.path), "profile": "pms5003"}],
        "outbox": {"path": str(tmp_path / "state" / "outbox.sqlite"), "commit_window": 0.2},
        "uplink": {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "reconnect_max": 1,
                            "topic_prefix": f"test/agentmetrics{os.getpid()}"}},
        "clock_synced": True,
        "health_interval": 1,
        "metrics": {"port": port, "textfile": str(textfile)},
    })
    agent = Proc(["edge_agent.cli", "run", "--config", str(config)],
                 tmp_path / "agent.log").start()
    (tmp_path / "prometheus").mkdir()
    prometheus = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{port}", job="cityedge_agent")
    try:
        wait_for(lambda: "opened" in agent.output(), 20, "the agent to open its port")
        device.start()
        prometheus.start()

        def value(query: str) -> float:
            got = prometheus.query(query)
            return float(got[0]["value"][1]) if got else -1.0

        # No collector acks: the outbox only grows. Decode errors come with the bad frames.
        wait_for(lambda: value("cityedge_agent_outbox_readings") >= 10, 40,
                 "Prometheus to see 10 readings in the agent's outbox", step=0.5)
        wait_for(lambda: value('cityedge_agent_sensor_frames_rejected_total{sensor="pm-1"}')
                 > 0, 30, "a decode error counted for pm-1", step=0.5)
        assert value('cityedge_agent_sensor_frames_ok_total{sensor="pm-1"}') >= 10
        assert value("cityedge_agent_uplink_up") == 1
        assert value("cityedge_agent_outbox_oldest_age_seconds") >= 0
        assert 0 <= value("cityedge_agent_outbox_full_ratio") < 1
        info = prometheus.query("cityedge_agent_info")
        assert info[0]["metric"]["gateway"] == "gw-metrics"
        assert info[0]["metric"]["agent_version"] == package_version()
        assert value('up{job="cityedge_agent"}') == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        for line in ("# TYPE cityedge_agent_outbox_readings gauge",
                     "# TYPE cityedge_agent_sensor_frames_ok_total counter",
                     "# TYPE cityedge_agent_dropped_readings_total counter"):
            assert line in text, line
        # The textfile: the same families, readable by node-exporter's user.
        kept = textfile.read_text()
        assert "cityedge_agent_outbox_readings " in kept
        assert 'cityedge_agent_sensor_frames_ok_total{sensor="pm-1"}' in kept
        assert textfile.stat().st_mode & 0o777 == 0o644
    finally:
        prometheus.stop()
        rc = agent.stop()
    assert rc == 0, agent.output()[-3000:]
