"""The collector's /metrics, scraped by a real Prometheus (Debian's package) started here on
a free port with its own temp folder: the readings that landed, the write latency histogram
and the gateway's last landing time arrive in Prometheus under their conventional names."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from paho.mqtt import publish

from cityedge.uplink import Batch, Reading, encode_batch
from cityedge.uplink.topics import Topics
from simulators.services import InfluxDB, Mosquitto, free_port
from tests.conftest import _need
from tests.helpers import Proc, wait_for, write_yaml
from tests.prometheus import Prometheus

pytestmark = pytest.mark.integration

@pytest.fixture
def prometheus_dir(tmp_path: Path) -> Iterator[Path]:
    _need("prometheus", "prometheus")
    d = tmp_path / "prometheus"
    d.mkdir()
    yield d


def test_prometheus_scrapes_the_collectors_metrics(
        tmp_path: Path, prometheus_dir: Path, mosquitto: Mosquitto, influxdb: InfluxDB,
        unique_name: str) -> None:
    port = free_port()
    prefix = f"test/{unique_name}"
    config = write_yaml(tmp_path / "collector.yaml", {
        "insecure": True,
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": f"c-{unique_name}",
                 "topic_prefix": prefix},
        "writer": {"type": "influxdb_v1", "url": influxdb.url, "database": unique_name},
        "metrics": {"port": port},
        "health_interval": 1,
    })
    collector = Proc(["collector.cli", "run", "--config", str(config)],
                     tmp_path / "collector.log").start()
    prometheus = Prometheus(prometheus_dir, f"127.0.0.1:{port}")
    try:
        wait_for(lambda: "collector running" in collector.output(), 20, "the collector")
        prometheus.start()
        now = time.time_ns()
        site = {"district": "강남구", "site": "역삼", "kind": "dust_zone"}
        readings = tuple(Reading("pm-1", "particulate", {"pm2_5_ugm3": 10.0 + i}, now + i,
                                 "b0", now + i, seq=i + 1) for i in range(5))
        batch = Batch("gw-metrics", "00e100e1", 1, now, True, "b0", now, site,
                      {"pm-1": {"model": "pms5003"}}, readings)
        publish.single(Topics(prefix).up("gw-metrics"), encode_batch(batch), qos=1,
                       hostname="127.0.0.1", port=mosquitto.port)

        def landed() -> float:
            got = prometheus.query("cityedge_collector_readings_landed_total")
            return float(got[0]["value"][1]) if got else 0.0

        wait_for(lambda: landed() >= 5, 30, "Prometheus to see 5 readings landed", step=0.5)
        writes = prometheus.query("cityedge_collector_influxdb_write_duration_seconds_count")
        assert writes and float(writes[0]["value"][1]) >= 1
        assert prometheus.query("cityedge_collector_influxdb_write_duration_seconds_bucket"
                                '{le="+Inf"}')
        seen = prometheus.query("cityedge_collector_gateway_last_seen_timestamp_seconds")
        assert [s["metric"]["gateway"] for s in seen] == ["gw-metrics"]
        assert abs(float(seen[0]["value"][1]) - time.time()) < 60
        up = prometheus.query('up{job="cityedge_collector"}')
        assert float(up[0]["value"][1]) == 1
        # The exposition itself: conventional names and types.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
            assert r.headers["Content-Type"].startswith("text/plain")
        assert "# TYPE cityedge_collector_readings_landed_total counter" in text
        assert "# TYPE cityedge_collector_pending_points gauge" in text
        assert "# TYPE cityedge_collector_influxdb_write_duration_seconds histogram" in text
    finally:
        prometheus.stop()
        rc = collector.stop()
    assert rc == 0, collector.output()[-3000:]
