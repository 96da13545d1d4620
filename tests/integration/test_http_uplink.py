"""The HTTP uplink across process boundaries: a collector killed with SIGKILL mid-way,
and (once the agent and collector are wired for it) the whole path over HTTP.

The uplink semantics shared with MQTT are in test_uplinks.py; this file holds
what only a real process can show. Both run secure: https with the suite's
certificate, the gateway's registry secret as its bearer token, the collector
admitting by the registry and sealing its acks.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cityedge.tls import client_context
from edge_agent.config import HttpUplinkConfig
from edge_agent.decoding import load_profiles
from edge_agent.outbox import Outbox
from edge_agent.transports.http import HttpTransport
from simulators.device import SimulatedDevice
from simulators.services import InfluxDB, free_port, spawn
from tests.helpers import Proc, rows, wait_for, write_yaml
from tests.integration.test_uplinks import Gateway, assert_exactly_once, fill, landed, run
from tests.secure_fleet import SecureFleet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# The collector's HTTP half as its own process: HttpSource + WritePipeline + InfluxV1Writer,
# over https, admitting gateways by the registry (which also seals the acks).
COLLECTOR = """
import asyncio, sys
from pathlib import Path
from cityedge.tls import TlsConfig
from collector.admission import Admission
from collector.delivery import WritePipeline
from collector.registry.live import LiveRegistry
from collector.sources.http import HttpSource, HttpSourceConfig
from collector.writers.influxdb_v1 import InfluxV1Config, InfluxV1Writer

async def main(port, url, db, registry, cert_file, key_file):
    writer = InfluxV1Writer(InfluxV1Config(url=url, database=db))
    await writer.start()
    pipeline = WritePipeline(writer, linger=0.01)
    admission = Admission(LiveRegistry(Path(registry)))
    source = HttpSource(HttpSourceConfig(port=port, write_timeout=1.0, retry_after=1,
                                         tls=TlsConfig(cert_file=cert_file, key_file=key_file)),
                        pipeline, admission=admission, keyring=admission)
    await source.start()
    await pipeline.run()

asyncio.run(main(int(sys.argv[1]), *sys.argv[2:]))
"""


class CollectorProcess:
    def __init__(self, port: int, influx_url: str, db: str, log: Path,
                 secure: SecureFleet) -> None:
        server = secure.server_tls()
        assert server.cert_file is not None and server.key_file is not None
        self.port, self.log = port, log
        self.args = [str(port), influx_url, db, str(secure.registry_path), server.cert_file,
                     server.key_file]
        self.tls = client_context(secure.tls_config())
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CollectorProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = spawn([sys.executable, "-c", COLLECTOR, *self.args], self.log, cwd=ROOT,
                          env=env)
        wait_for(self.healthy, 15, "the collector process to listen")
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"collector exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/v1/health",
                                        timeout=0.5, context=self.tls) as resp:
                return bool(json.loads(resp.read())["status"] == "ok")
        except (OSError, urllib.error.URLError, ssl.SSLError):
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def test_a_collector_process_killed_midway_loses_nothing_and_duplicates_nothing(
    influxdb: InfluxDB, secure: SecureFleet, tmp_path: Path, unique_name: str
) -> None:
    n, gw, db, port = 4000, "gw-http-kill", unique_name, free_port()
    secret = secure.add_gateway(gw)
    log = tmp_path / "collector.log"
    collector = CollectorProcess(port, influxdb.url, db, log, secure).start()

    async def main() -> None:
        outbox = Outbox(tmp_path / "outbox.sqlite")
        fill(outbox, n)
        transport = HttpTransport(HttpUplinkConfig(url=f"https://127.0.0.1:{port}", timeout=3,
                                                   token=secret, tls=secure.tls_config()),
                                  gw, max_in_flight=4, key=secure.key(gw))
        await transport.start()
        gateway = Gateway(gw, outbox, transport, batch_size=40, ack_timeout=2.0)
        task = asyncio.create_task(gateway.run())
        try:
            for round_ in range(2):  # kill it twice, at a quarter and at a half
                target = n * (round_ + 1) // 4
                while gateway.deleted < target:
                    assert not task.done(), task
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(collector.kill)
                assert gateway.deleted < n, "drained before the kill: make n larger"
                await asyncio.sleep(1.0)
                assert not transport.ready() or transport.stats.failures > 0
                await asyncio.to_thread(collector.start)
            while gateway.waiting():
                assert not task.done(), task
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await transport.close()
        assert gateway.deleted == n
        assert transport.stats.failures > 0
        assert gateway.sent > n // 40  # some batches went twice
        assert_exactly_once(await landed(influxdb.url, db, gw), outbox.epoch, n)
        outbox.close()

    try:
        run(main(), timeout=120)
    finally:
        collector.kill()


# -- the real agent and collector processes over HTTP --------------------------------------
def test_agent_and_collector_processes_over_http(
    tmp_path: Path, influxdb: InfluxDB, secure: SecureFleet, unique_name: str
) -> None:
    profile = load_profiles(ROOT / "firmware_profiles")["pms5003"]
    device = SimulatedDevice(profile, link=tmp_path / "dev" / "pm-1", interval=0.02, seed=11)
    port, site = free_port(), {"district": "서초구", "site": "양재동", "kind": "dust_zone"}
    secret = secure.add_gateway("gw-http", **site)
    server = secure.server_tls()
    collector_cfg = write_yaml(tmp_path / "collector.yaml", {
        "registry": str(secure.registry_path),  # each gateway's secret is its token
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": unique_name},
        "mqtt": None,  # a site without a broker
        "http": {"host": "127.0.0.1", "port": port, "write_timeout": 2,
                 "tls": {"cert_file": server.cert_file, "key_file": server.key_file}},
        "batching": {"linger": 0.02},
    })
    agent_cfg = write_yaml(tmp_path / "agent.yaml", {
        "gateway": {"id": "gw-http", "secret": secret, "site": site},
        "sensors": [{"id": "pm-1", "port": device.path, "profile": "pms5003"}],
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "commit_window": 0.2},
        "uplink": {"kind": "http",
                   "http": {"url": f"https://127.0.0.1:{port}", "timeout": 5,
                            "tls": secure.tls},
                   "batch_size": 7, "ack_timeout": 6},
        "health_interval": 3600,
    })
    collector = Proc(["collector.cli", "run", "--config", str(collector_cfg)],
                     tmp_path / "collector.log").start()
    agent = Proc(["edge_agent.cli", "run", "--config", str(agent_cfg)],
                 tmp_path / "agent.log").start()
    try:
        count = 60
        wait_for(lambda: "opened" in agent.output(), 15, "the agent to open the port")
        device.start(count=count)
        device.wait(30)

        def landed_count() -> int:
            got = rows(influxdb, unique_name,
                       "SELECT count(pm2_5_ugm3) FROM particulate WHERE gateway='gw-http'")
            return int(got[0]["count"]) if got else 0

        wait_for(lambda: landed_count() >= count, 30, f"{count} readings in InfluxDB")
        points = rows(influxdb, unique_name, "SELECT * FROM particulate WHERE gateway='gw-http'")
        assert len(points) == count
        assert len({p["seq"] for p in points}) == count
        assert points[0]["district"] == "서초구"
    finally:
        device.close()
        agent_rc = agent.stop()
        collector_rc = collector.stop()
    assert agent_rc == 0, agent.output()[-3000:]
    assert collector_rc == 0, collector.output()[-3000:]
