"""The collector under Type=notify: a real process with NOTIFY_SOCKET and WATCHDOG_USEC set
(a datagram socket the test binds, as systemd does) says READY=1 once it serves, feeds the
watchdog from its event loop, brackets a registry reload (SIGHUP) with RELOADING=1 and
READY=1, and says STOPPING=1 on SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from simulators.services import InfluxDB
from tests.helpers import Proc, wait_for, write_yaml
from tests.notify_socket import NotifySocket
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration


def test_the_collector_tells_systemd_ready_reloading_stopping_and_feeds_the_watchdog(
    tmp_path: Path, secure: SecureFleet, influxdb: InfluxDB, unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_yaml(tmp_path / "collector.yaml", {
        "registry": str(secure.registry_path),
        "mqtt": secure.collector_mqtt(f"c-{unique_name}"),
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": unique_name},
    })
    notify = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "600000")
    collector = Proc(["collector.cli", "run", "--config", str(config)],
                     tmp_path / "collector.log").start()
    try:
        wait_for(lambda: "READY" in notify.sequence(), 20, "READY=1")
        ready = next(m for m in notify.poll() if "READY" in m)
        assert ready["STATUS"].startswith(f"writing InfluxDB {influxdb.url}"), ready
        assert collector.proc is not None
        collector.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: notify.sequence() == ["READY", "RELOADING", "READY"], 10,
                 "RELOADING=1 then READY=1")
        time.sleep(1.5)
    finally:
        rc = collector.stop()
        time.sleep(0.3)
        notify.close()
    assert rc == 0, collector.output()[-2000:]
    assert notify.sequence() == ["READY", "RELOADING", "READY", "STOPPING"]
    assert sum(m == {"WATCHDOG": "1"} for m in notify.messages) >= 4
    assert "SIGHUP: reloading the registry" in collector.output()
