"""VictoriaMetrics (Debian's victoria-metrics package) as a local server for tests.

It implements InfluxDB 2.x's write endpoint (``/api/v2/write``: org, bucket,
precision, line protocol, gzip), which is what the influxdb_v2 writer speaks;
no InfluxDB 2.x server is packaged for Debian. What it does not share with
InfluxDB: string fields are not stored (numbers and booleans are, as
``<measurement>_<field>``), timestamps are kept to the millisecond, and it never
answers a partial write (a line it cannot parse is logged and skipped, the
rest is answered 204). The InfluxDB 2.x error answers are contract-tested with
recorded responses instead (tests/unit/test_influx_v2_writer.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from simulators.services import Service, _require, free_port


class VictoriaMetrics(Service):
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__("victoria-metrics", port or free_port(), workdir)
        self.binary = _require("victoria-metrics", "victoria-metrics")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> VictoriaMetrics:
        self._spawn([self.binary, f"-storageDataPath={self.workdir / 'data'}",
                     f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=100y",
                     # Samples of one series at the same millisecond are one (a
                     # rewrite overwrites, as in InfluxDB).
                     "-dedup.minScrapeInterval=1ms", "-loggerLevel=ERROR"])
        self._wait_ready(self._healthy, timeout)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as resp:
                return int(resp.status) == 200
        except (OSError, urllib.error.URLError):
            return False

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every series matching ``match`` (a series selector), with all their samples,
        after a flush (what was written is searchable)."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5):
            pass
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=5) as resp:
            text = resp.read().decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]
