"""The agent's counters for Prometheus (prometheus-client): a loopback listener, or a file for
node-exporter's textfile collector, or both; off unless ``metrics:`` is set.

What it exposes is the agent's last health readings (``gateway_health`` and
each port's ``sensor_health``, edge_agent/health.py), taken every
``health_interval``, so a scrape and InfluxDB tell the same story. Names
follow Prometheus' conventions and the collector's family
(``cityedge_collector_*``, collector/metrics.py): ``cityedge_agent_*``, base
units (seconds, bytes, ratios), ``_total`` counters, labels for reasons and
sensors; the agent's version and clock anchor are labels of
``cityedge_agent_info``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cityedge.atomic import atomic_write
from cityedge.metrics_listener import MetricsListener
from cityedge.uplink import Reading
from edge_agent.config import MetricsConfig

PREFIX = "cityedge_agent"
# gateway_health fields that are gauges: field -> (metric name, factor to base units, help).
GAUGES: dict[str, tuple[str, float, str]] = {
    "outbox_readings": ("outbox_readings", 1, "readings in the outbox"),
    "outbox_bytes": ("outbox_bytes", 1, "bytes the outbox holds"),
    "outbox_full_pct": ("outbox_full_ratio", 0.01, "outbox fill, 0 to 1 of its size"),
    "oldest_age_s": ("outbox_oldest_age_seconds", 1, "age of the oldest reading waiting"),
    "outbox_time_left_s": ("outbox_time_left_seconds", 1, "until the outbox is full at the"
                           " current rate (-1: not filling)"),
    "disk_free_mb": ("disk_free_bytes", 1024 * 1024, "free space beside the outbox"),
    "backlog_readings": ("backlog_readings", 1, "readings waiting behind the live ones"),
    "in_flight_batches": ("in_flight_batches", 1, "batches sent and not yet acked"),
    "link_up": ("uplink_up", 1, "1 while the uplink is connected"),
    "clock_synced": ("clock_synced", 1, "1 while the wall clock is NTP-synchronised"),
    "uptime_s": ("uptime_seconds", 1, "since the agent started"),
    "uplink_rtt_ms": ("ack_round_trip_seconds", 0.001, "last batch's send to ack"),
    "clock_offset_ms": ("clock_offset_seconds", 0.001, "the collector's clock minus ours"),
    "cpu_temp_c": ("cpu_temperature_celsius", 1, "the CPU's temperature"),
}
# Counters kept by reason: the field prefix names a labelled family; its total is not repeated.
BY_REASON = ("bad_acks", "time_answers_refused")
# sensor_health's decode errors: rejected_<reason> (edge_agent/serial_port.py).
REJECTED = "rejected_"
SENSOR_GAUGES = {"port_open": "1 while the sensor's port is open"}
INFO = ("agent_version", "clock_anchor")
TEXTFILE_MODE = 0o644
_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


class HealthFamilies(Collector):
    """The last health readings as metric families, at each scrape."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self.readings: Sequence[Reading] = ()
        self.textfile_failures = 0

    def collect(self) -> Iterator[Metric]:
        gateway = next((r for r in self.readings if r.measurement == "gateway_health"), None)
        if gateway is not None:
            yield from self._gateway(gateway)
        yield from self._sensors([r for r in self.readings if r.measurement == "sensor_health"])
        yield CounterMetricFamily(f"{PREFIX}_metrics_textfile_failures", "textfile writes that"
                                  " failed", value=self.textfile_failures)

    def _gateway(self, reading: Reading) -> Iterator[Metric]:
        f = reading.fields
        info = GaugeMetricFamily(f"{PREFIX}_info", "the agent: its gateway, version and clock"
                                 " anchor", labels=["gateway", *INFO])
        info.add_metric([self.gateway, *(str(f.get(k, "")) for k in INFO)], 1)
        yield info
        yield GaugeMetricFamily(f"{PREFIX}_health_timestamp_seconds", "when these values were"
                                " taken (the last gateway_health)", value=reading.time_ns / 1e9)
        reasons = {p: CounterMetricFamily(f"{PREFIX}_{p}", f"{p.replace('_', ' ')}, by reason",
                                          labels=["reason"]) for p in BY_REASON}
        for name, value in sorted(f.items()):
            number = _number(value)
            if number is None or name in BY_REASON:
                continue
            prefix = next((p for p in BY_REASON if name.startswith(p + "_")), None)
            if name in GAUGES:
                metric, factor, help_ = GAUGES[name]
                yield GaugeMetricFamily(f"{PREFIX}_{metric}", help_, value=number * factor)
            elif prefix is not None:
                reasons[prefix].add_metric([name[len(prefix) + 1:]], number)
            else:
                yield CounterMetricFamily(f"{PREFIX}_{_NAME.sub('_', name)}", f"{name} (a"
                                          " gateway_health field)", value=number)
        yield from reasons.values()

    def _sensors(self, readings: list[Reading]) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        rejected = CounterMetricFamily(f"{PREFIX}_sensor_frames_rejected", "frames the decoder"
                                       " refused, per sensor and reason", labels=["sensor",
                                                                                 "reason"])
        for r in sorted(readings, key=lambda r: r.sensor):
            for name, value in r.fields.items():
                number = _number(value)
                if number is None:
                    continue
                if name.startswith(REJECTED):
                    rejected.add_metric([r.sensor, name[len(REJECTED):]], number)
                    continue
                metric = f"{PREFIX}_sensor_{_NAME.sub('_', name)}"
                if metric not in families:
                    families[metric] = (
                        GaugeMetricFamily(metric, SENSOR_GAUGES[name], labels=["sensor"])
                        if name in SENSOR_GAUGES else CounterMetricFamily(
                            metric, f"{name} per sensor (a sensor_health field)",
                            labels=["sensor"]))
                families[metric].add_metric([r.sensor], number)
        yield from (families[k] for k in sorted(families))
        yield rejected


class AgentMetrics:
    def __init__(self, config: MetricsConfig, gateway: str) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.families = HealthFamilies(gateway)
        self.registry.register(self.families)
        self.textfile_failures = 0
        self._listener: MetricsListener | None = None

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def update(self, readings: Sequence[Reading]) -> None:
        """The newest health readings; written to the textfile at once if one is set."""
        self.families.readings = tuple(readings)
        if self.config.textfile is not None:
            try:
                # Readable by node-exporter's own user.
                atomic_write(Path(self.config.textfile), self.exposition(), mode=TEXTFILE_MODE)
            except OSError:
                self.textfile_failures += 1
                self.families.textfile_failures = self.textfile_failures

    async def start(self) -> None:
        if self.config.port is not None:
            self._listener = MetricsListener(self.registry, self.config.host, self.config.port,
                                             self.config.path)
            await self._listener.start()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
