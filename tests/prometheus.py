"""A real Prometheus (Debian's package) for the metrics tests, started on a free port with its own
folder and one scrape target, scraping every second."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from simulators.services import Service, find_binary, free_port

SCRAPE_INTERVAL_S = 1


class Prometheus(Service):
    def __init__(self, workdir: Path, target: str, job: str = "cityedge_collector") -> None:
        super().__init__("prometheus", free_port(), workdir)
        self.target = target
        self.job = job

    def start(self) -> Prometheus:
        config = self.workdir / "prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: {SCRAPE_INTERVAL_S}s\n"
            f"scrape_configs:\n  - job_name: {self.job}\n"
            f"    static_configs:\n      - targets: ['{self.target}']\n")
        binary = find_binary("prometheus")
        assert binary is not None
        self._spawn([binary, f"--config.file={config}",
                     f"--storage.tsdb.path={self.workdir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{self.port}"])
        self._wait_ready(self._ready, 30)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                return int(r.status) == 200
        except OSError:
            return False

    def query(self, q: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        with urllib.request.urlopen(url, timeout=5) as r:
            answer = json.loads(r.read())
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result
