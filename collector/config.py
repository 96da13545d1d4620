"""The collector's configuration (configs/collector.sample.yaml documents every key)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityedge import yamlconfig
from cityedge.logthrottle import DEFAULT_INTERVAL_S
from cityedge.tls import TlsConfig
from cityedge.uplink.topics import DEFAULT_PREFIX, DEFAULT_SHARE_GROUP
from collector.alerts.config import LoadedAlerts, load_alerts
from collector.ratelimit import DEFAULT_BURST, DEFAULT_MAX_KEYS, DEFAULT_RATE, RateLimiter
from collector.sources.http import HttpSourceConfig
from collector.writers import REGISTRY


@dataclass(frozen=True)
class MqttSourceConfig:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata={"min": 1, "max": 65535})
    client_id: str = "cityedge-collector-1"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # A hung collector leaves its share group 1.5 keepalives after it stopped (the broker
    # drops it; measured by bench/shared_members_bench.py: 7.5 s at 5).
    keepalive: int = field(default=5, metadata={"min": 5})
    topic_prefix: str = DEFAULT_PREFIX
    # Empty string: a plain subscription (one collector only).
    share_group: str = DEFAULT_SHARE_GROUP
    # Unanswered batches at most (announced as MQTT 5 Receive Maximum, and enforced by
    # pausing reading, as Mosquitto 2.0.11 does not honour it): bounds our memory.
    receive_maximum: int = field(default=200, metadata={"min": 1, "max": 65535})
    # TLS to the broker, verified against ca_file (cert_file/key_file: a client
    # certificate); null: plain TCP, for a broker on this host only.
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class BatchingConfig:
    max_points: int = field(default=5000, metadata={"min": 1})
    linger: float = field(default=0.05, metadata={"min": 0.0, "max": 10.0})


@dataclass(frozen=True)
class LimitsConfig:
    """What one gateway may ask of the collector (both sources share it)."""

    # Batches a second each gateway may send on average, and at once (a gateway
    # draining its backlog after an outage). A gateway sends about one batch a
    # second; MQTT refuses the rest (the gateway resends), HTTP answers 429. The
    # unit is a batch of up to BATCH_COST_BYTES (256 KiB) of payload; a larger one
    # costs one more per started 256 KiB (collector/ratelimit.py).
    batches_per_s: float = field(default=DEFAULT_RATE, metadata={"min": 0.01})
    burst: int = field(default=DEFAULT_BURST, metadata={"min": 1})
    # Gateways whose rate is tracked at once (the fleet is about 3,300); the least
    # recently seen is forgotten first, and comes back with a full burst.
    max_gateways: int = field(default=DEFAULT_MAX_KEYS, metadata={"min": 1, "max": 10_000_000})
    # Seconds between two log lines for the same kind of refusal; the rest are
    # counted (cityedge_collector) and summed up in the next line.
    log_interval: float = field(default=DEFAULT_INTERVAL_S, metadata={"min": 0.0, "max": 3600.0})

    def limiter(self) -> RateLimiter:
        return RateLimiter(self.batches_per_s, self.burst, self.max_gateways)


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus' scrape endpoint (collector/metrics.py), on a listener of its own."""

    host: str = "127.0.0.1"
    port: int = field(default=9464, metadata={"min": 1, "max": 65535})
    path: str = "/metrics"

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path: expected a path starting with /, got {self.path!r}")


@dataclass(frozen=True)
class OpsPageConfig:
    """The operations room's read-only page (collector/opspage/), on a listener of its own."""

    host: str = "127.0.0.1"
    port: int = field(default=9465, metadata={"min": 1, "max": 65535})
    # Seconds between two looks at InfluxDB and two refreshes of the open page.
    refresh: float = field(default=10.0, metadata={"min": 1.0, "max": 3600.0})
    # A gateway silent this long is marked stale (its health comes every 10 s).
    stale: float = field(default=120.0, metadata={"min": 1.0})


@dataclass(frozen=True)
class CollectorConfig:
    writer: dict[str, Any]
    # null turns a source off; at least one of mqtt and http must be on.
    mqtt: MqttSourceConfig | None = field(default_factory=MqttSourceConfig)
    http: HttpSourceConfig | None = None
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    health_interval: float = field(default=10.0, metadata={"min": 1.0})
    shutdown_timeout: float = field(default=10.0, metadata={"min": 0.0})
    # Alert rules and notifiers (docs/alerts.md); off unless set.
    alerts: dict[str, Any] | None = None
    # The gateway registry (edge-collector gateways): who may send, their site
    # tags, HTTP tokens and seal keys. Relative to this file's folder.
    registry: str | None = None
    # true runs without a registry: any gateway id is taken at its word. Explicit
    # opt-in only, for a closed test network.
    insecure: bool = False
    # Prometheus metrics at http://host:port/metrics; off unless set.
    metrics: MetricsConfig | None = None
    # The operations page at http://host:port/ (needs writer.type influxdb_v1: it reads
    # InfluxDB with InfluxQL); off unless set.
    ops_page: OpsPageConfig | None = None

    def __post_init__(self) -> None:
        if self.mqtt is None and self.http is None:
            raise ValueError("mqtt: no source left: configure mqtt, http or both")


@dataclass(frozen=True)
class LoadedConfig:
    config: CollectorConfig
    doc: yamlconfig.Located
    alerts: LoadedAlerts | None = None
    # The config file's folder: relative paths (registry, TLS files) are taken from it.
    base: Path = Path()

    @property
    def registry_path(self) -> Path | None:
        r = self.config.registry
        return None if r is None else _resolve(self.base, r)


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _resolve_tls(config: CollectorConfig, base: Path) -> CollectorConfig:
    """TLS file paths taken from the config's folder, as the rule files are."""
    mqtt, http = config.mqtt, config.http
    if mqtt is not None and mqtt.tls is not None:
        mqtt = dataclasses.replace(mqtt, tls=mqtt.tls.resolved(base))
    if http is not None and http.tls is not None:
        http = dataclasses.replace(http, tls=http.tls.resolved(base))
    return dataclasses.replace(config, mqtt=mqtt, http=http)


def load_config(path: Path | str) -> LoadedConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise yamlconfig.ConfigError(str(path), None, (), f"cannot read: {exc.strerror}") from None
    doc = yamlconfig.parse(text, str(path))
    config = _resolve_tls(yamlconfig.bind(CollectorConfig, doc.data, doc), path.parent)
    make_writer(config, doc)  # validates the writer's options now, before any connection
    check_identity(config, doc)
    if config.ops_page is not None and config.writer.get("type") != "influxdb_v1":
        raise doc.error(("ops_page",), "needs writer.type influxdb_v1 (the page reads InfluxDB"
                        " with InfluxQL)")
    alerts = None if config.alerts is None else load_alerts(config.alerts, doc, path.parent)
    return LoadedConfig(config, doc, alerts, path.parent)


def check_identity(config: CollectorConfig, doc: yamlconfig.Located) -> None:
    """A registry, or the explicit ``insecure: true``; never neither, never both."""
    if config.registry is None and not config.insecure:
        raise doc.error(("registry",), "required (the gateway registry, docs/identity.md);"
                        " or set insecure: true to take any gateway at its word")
    if config.registry is not None and config.insecure:
        raise doc.error(("insecure",), "true means no registry; drop one of the two")
    if config.registry is not None and config.http is not None and (
            config.http.token is not None or config.http.tokens):
        raise doc.error(("http",), "token/tokens are for running without a registry; with"
                        " one, each gateway's secret is its bearer token")


def make_writer(config: CollectorConfig, doc: yamlconfig.Located) -> Any:
    options = dict(config.writer)
    kind = options.pop("type", None)
    if kind not in REGISTRY:
        raise doc.error(("writer", "type"),
                        f"expected one of {', '.join(sorted(REGISTRY))}, got {kind!r}")
    return REGISTRY[kind](options, doc, ("writer",))
