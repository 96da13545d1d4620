"""Prometheus metrics for the collector (prometheus-client), on a loopback listener of its own.

Off unless ``metrics:`` is set. The counters are the ones the collector's health
point already keeps (``cityedge_collector``), read at each scrape and named
per Prometheus' conventions (``_total`` counters, base units, labels for
reasons); beside them, an InfluxDB write latency histogram and write errors
by kind (``TimedWriter``), and when each gateway's points last landed. Its
own port, not the gateways' HTTP ingest: the ingest faces the gateways, the
metrics face the operations room's Prometheus.
"""

from __future__ import annotations

import re
import time
from collections import Counter as CountOf
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cityedge.metrics_listener import MetricsListener
from collector.config import MetricsConfig
from collector.lineprotocol import Point
from collector.writers.base import Writer

PREFIX = "cityedge_collector"
# Gateways whose last landing time is kept (the fleet is about 3,300); the least
# recently seen is forgotten first.
MAX_GATEWAYS = 20_000
# InfluxDB write durations, seconds: a healthy write takes milliseconds.
WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Health fields that are gauges (the rest of the integers are counters since start).
GAUGES = {"pending_points": "points waiting to be written",
          "rate_limit_gateways": "gateways whose rate is tracked",
          "registry_gateways": "active gateways in the registry",
          "alerts_open": "alerts open now",
          "alerts_leader": "1 while this collector evaluates the alert rules"}
# Health fields that are counted by reason: field prefix -> (metric, help).
BY_REASON = {
    "refused": ("batches_refused", "batches refused, by reason"),
    "dead_letters": ("dead_letters", "readings kept as dead letters, by reason"),
    "not_written": ("batches_not_written", "batches not acked (the gateways resend them)"),
    "http_connections_refused": ("http_connections_refused", "HTTP connections refused"),
}
# Counters whose health name says less than a metric name should.
RENAMED = {"batches": "batches_landed", "readings": "readings_landed",
           "writes": "influxdb_writes", "write_retries": "influxdb_write_retries",
           "mqtt_acks_not_sent": "acks_not_sent"}
_NAME = re.compile(r"[^a-zA-Z0-9_]")


class HealthCollector(Collector):
    """The health point's fields as metric families, read at each scrape."""

    def __init__(self, fields: Callable[[], Mapping[str, int | float | str | bool]],
                 notifiers: Callable[[], Sequence[str]],
                 last_seen: Mapping[str, float],
                 written: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self.fields = fields
        self.notifiers = notifiers
        self.last_seen = last_seen
        self.written = written if written is not None else {}

    def collect(self) -> Iterator[Metric]:
        fields = self.fields()
        reasons: dict[str, CounterMetricFamily] = {}
        notes = CounterMetricFamily(f"{PREFIX}_notifications", "notifications by notifier and"
                                    " outcome", labels=["notifier", "outcome"])
        queued = GaugeMetricFamily(f"{PREFIX}_notifications_queued", "notifications waiting",
                                   labels=["notifier"])
        names = sorted(self.notifiers(), key=len, reverse=True)
        for name, value in sorted(fields.items()):
            if isinstance(value, str):
                continue
            number = float(value)
            notifier = next((n for n in names if name.startswith(f"notify_{n}_")), None)
            prefix = next((p for p in BY_REASON if name.startswith(p + "_")), None)
            if notifier is not None:
                outcome = name[len(f"notify_{notifier}_"):]
                if outcome == "queued":
                    queued.add_metric([notifier], number)
                else:
                    notes.add_metric([notifier, outcome], number)
            elif name in GAUGES:
                yield GaugeMetricFamily(f"{PREFIX}_{name}", GAUGES[name], value=number)
            elif name == "last_write_ms":
                yield GaugeMetricFamily(f"{PREFIX}_last_write_seconds", "duration of the last"
                                        " InfluxDB write", value=number / 1000)
            elif name == "insecure":
                yield GaugeMetricFamily(f"{PREFIX}_insecure", "1: running without a registry",
                                        value=number)
            elif prefix is not None and name not in ("refused_batches", "dead_letters"):
                metric, help_ = BY_REASON[prefix]
                family = reasons.setdefault(prefix, CounterMetricFamily(
                    f"{PREFIX}_{metric}", help_, labels=["reason"]))
                family.add_metric([name[len(prefix) + 1:]], number)
            elif name not in ("refused_batches", "dead_letters"):  # their by-reason families
                metric = _NAME.sub("_", RENAMED.get(name, name))
                yield CounterMetricFamily(f"{PREFIX}_{metric}", f"{name} since the collector"
                                          " started (cityedge_collector health field)",
                                          value=number)
        yield from reasons.values()
        yield notes
        yield queued
        yield from self._gateways()

    def _gateways(self) -> Iterator[Metric]:
        seen = GaugeMetricFamily(f"{PREFIX}_gateway_last_seen_timestamp_seconds", "when a"
                                 " gateway's points last landed in InfluxDB",
                                 labels=["gateway"])
        for gateway, t in sorted(self.last_seen.items()):
            seen.add_metric([gateway], t)
        yield seen
        written = CounterMetricFamily(f"{PREFIX}_gateway_readings_written", "readings of a"
                                      " gateway InfluxDB accepted, by measurement (a resent"
                                      " reading counts again)", labels=["gateway", "measurement"])
        for gateway, counts in sorted(self.written.items()):
            for measurement, n in sorted(counts.items()):
                written.add_metric([gateway, measurement], n)
        yield written


class TimedWriter:
    """The writer with each write timed and its errors counted by kind; records when each
    gateway's points landed."""

    def __init__(self, writer: Writer, metrics: Metrics) -> None:
        self.writer = writer
        self.name = writer.name
        self.metrics = metrics

    async def start(self) -> None:
        await self.writer.start()

    async def write(self, points: Sequence[Point]) -> None:
        started = time.monotonic()
        try:
            await self.writer.write(points)
        except Exception as exc:
            self.metrics.write_errors.labels(type(exc).__name__).inc()
            raise
        finally:
            self.metrics.write_seconds.observe(time.monotonic() - started)
        self.metrics.landed(points)

    async def close(self) -> None:
        await self.writer.close()


class Metrics:
    """The registry, its HTTP endpoint and the collector's instruments."""

    def __init__(self, config: MetricsConfig,
                 fields: Callable[[], Mapping[str, int | float | str | bool]],
                 notifiers: Callable[[], Sequence[str]]) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.last_seen: OrderedDict[str, float] = OrderedDict()
        # Per gateway (the same ones as last_seen), readings written per measurement.
        self.written: dict[str, CountOf[str]] = {}
        self.write_seconds = Histogram(f"{PREFIX}_influxdb_write_duration_seconds",
                                       "InfluxDB write requests, send to answer",
                                       buckets=WRITE_BUCKETS, registry=self.registry)
        self.write_errors = Counter(f"{PREFIX}_influxdb_write_errors", "InfluxDB writes that"
                                    " failed, by kind", ["kind"], registry=self.registry)
        self.registry.register(HealthCollector(fields, notifiers, self.last_seen, self.written))
        self._listener = MetricsListener(self.registry, config.host, config.port, config.path)

    def landed(self, points: Sequence[Point]) -> None:
        now = time.time()
        for p in points:
            gateway = p.tags.get("gateway")
            if gateway and p.identity is not None:  # a reading: its gateway was heard
                self.last_seen[gateway] = now
                self.last_seen.move_to_end(gateway)
                self.written.setdefault(gateway, CountOf())[p.measurement] += 1
        while len(self.last_seen) > MAX_GATEWAYS:
            gone, _ = self.last_seen.popitem(last=False)
            self.written.pop(gone, None)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def start(self) -> None:
        await self._listener.start()

    async def close(self) -> None:
        await self._listener.close()
