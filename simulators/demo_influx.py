"""The demo's count of what landed when its target speaks only InfluxDB 2.x's write API.

A v2 server (InfluxDB 2.x, 3.x, Cloud, or VictoriaMetrics in the tests) need
not answer InfluxQL, so the live view counts from the collector's own
Prometheus metrics instead: the readings its writer had accepted, per gateway
and measurement (a resent reading counts again there, so the count can run
ahead of what is stored; the tests compare with the server itself).
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# What the demo's devices produce (firmware_profiles/*.yaml measurements).
READING_MEASUREMENTS = ("particulate", "noise", "bus_terminal", "climate")
# The collector's count of readings written per gateway and measurement (collector/metrics.py).
WRITTEN_METRIC = "cityedge_collector_gateway_readings_written"


def landed_by_metrics(port: int) -> dict[str, tuple[int, float | None]]:
    """Per gateway: the readings the collector's writer had accepted (its metrics), and no
    PM2.5 (a v2 target is not queried)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    total: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name != WRITTEN_METRIC:
            continue
        for sample in family.samples:
            if (sample.name.endswith("_total")
                    and sample.labels.get("measurement") in READING_MEASUREMENTS):
                gw = sample.labels["gateway"]
                total[gw] = total.get(gw, 0) + int(sample.value)
    return {gw: (n, None) for gw, n in total.items()}
