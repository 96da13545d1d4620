"""The storage benches still run: smallest settings, as the docs tell people to run them.

docs/outbox.md records what these benches measured; a bench that no longer
starts (an API moved under it) would leave that record unrepeatable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from simulators.services import find_binary

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str, tmp_path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args, "--dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def row(out: str, name: str) -> list[str]:
    """The cells of the first table row whose first cell starts with name."""
    for line in out.splitlines():
        if line.startswith(f"| {name}"):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"no table row {name!r} in:\n{out}")


def test_outbox_bench_quick(tmp_path: Path) -> None:
    out = run("outbox_bench.py", "--quick", "--sizes", "1000", "--kill-trials", "1",
              tmp_path=tmp_path)
    assert re.search(r"fsync on this disk: median [\d,]+ us", out)
    for name in ("raw fsync baseline", "append-only log + fsync", "SQLite WAL NORMAL (Outbox)",
                 "SQLite Outbox.sync()", "SQLite WAL FULL", "TinyDB JSONStorage",
                 "TinyDB CachingMiddleware"):
        cells = row(out, name)
        assert re.fullmatch(r"[\d,.]+", cells[2]), cells  # measured at 1k, not skipped
    kills = out[out.index("## kill -9 trials"):]
    for name in ("append-only log + fsync", "SQLite WAL NORMAL (Outbox)", "SQLite WAL FULL"):
        _, trials, _reported, lost, unopenable, reused, _ = row(kills, name)
        assert (trials, lost, unopenable, reused) == ("1", "0", "0", "0"), row(kills, name)
    row(kills, "TinyDB JSONStorage")
    row(kills, "TinyDB CachingMiddleware")
    assert not list(tmp_path.iterdir()), "the bench left files behind"


def test_edge_cost_bench_quick(tmp_path: Path) -> None:
    out = run("edge_cost_bench.py", "--quick", "--frames", "500", "--rss-readings", "2000",
              tmp_path=tmp_path)
    for name in ("decode (FrameDecoder)", "decode + Reading", "agent path",
                 "raw sqlite3: same rows, same transactions", "raw sqlite3: same rows, one"):
        cells = row(out, name)
        assert len(cells) == 5 and all(re.fullmatch(r"[\d.]+", c) for c in cells[1:]), cells
    assert "## RSS of a process holding an outbox with 2,000 readings" in out
    for cell in row(out, "after Outbox() open")[1:]:
        assert re.fullmatch(r"[\d.]+", cell), cell
    assert not list(tmp_path.iterdir()), "the bench left files behind"


@pytest.mark.integration
def test_alert_latency_bench_quick(tmp_path: Path) -> None:
    """The alert latency bench: its own Mosquitto, InfluxDB and collector, a few seconds."""
    for binary, package in (("mosquitto", "mosquitto"), ("influxd", "influxdb")):
        if find_binary(binary) is None:
            message = f"{binary} is not installed (apt-get install {package})"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"CI=true: {message}", pytrace=False)
            pytest.skip(message)
    out = run("alert_latency_bench.py", "--quick", "--duration", "2", "--warmup", "0.5",
              tmp_path=tmp_path)
    for name in ("publish -> ack", "publish -> webhook received", "webhook minus ack"):
        *_, p50, p99, top, low, count = row(out, name)
        assert all(re.fullmatch(r"-?[\d.]+", c) for c in (p50, p99, top, low)), row(out, name)
        assert int(count) >= 4, row(out, name)
    # Every probe acked and turned into exactly one webhook event, every reading acked.
    assert re.search(r"probes: \d+ measured, 0 without ack, 0 without webhook, 0 with the wrong"
                     r" state; 0 unexpected webhook events, 0 bad signatures", out), out
    assert re.search(r"of the whole run's [\d,]+, 0 not acked", out), out
    assert not list(tmp_path.iterdir()), "the bench left files behind"
