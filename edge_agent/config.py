"""The gateway's configuration (configs/agent.sample.yaml documents every key)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cityedge import yamlconfig
from cityedge.tls import TlsConfig
from cityedge.uplink.payload import (
    ID_RE,
    MAX_READINGS_PER_BATCH,
    MAX_TAGS_PER_SENSOR,
    NAME_RE,
    tag_value_ok,
)
from cityedge.uplink.topics import DEFAULT_PREFIX

SITE_KINDS = ("dust_zone", "bus_stop", "apartment")
RESERVED_TAGS = ("model", "sensor", "gateway", "district", "site", "site_kind", "quality")
# The gateway's own health readings travel as this pseudo-sensor.
AGENT_SENSOR = "agent"


@dataclass(frozen=True)
class SiteConfig:
    district: str
    site: str
    kind: Literal["dust_zone", "bus_stop", "apartment"]

    def __post_init__(self) -> None:
        for key in ("district", "site"):
            if not tag_value_ok(getattr(self, key)):
                raise ValueError(f"{key}: expected a non-empty name without a newline or a"
                                 " trailing backslash, at most 256 characters")


@dataclass(frozen=True)
class GatewayConfig:
    id: str
    site: SiteConfig
    # The one secret the registry issued (edge-collector gateways add): the MQTT
    # password (username: the id), the HTTP bearer token, and the source of the key
    # acks and display messages must be sealed with (cityedge/uplink/seal.py). None
    # takes them unsealed, from anyone who can publish to this gateway's topics
    # (insecure: for tests and closed networks only).
    secret: str | None = None

    def __post_init__(self) -> None:
        if not ID_RE.fullmatch(self.id):
            raise ValueError(f"id: expected letters, digits, '_.:-' (max 64), got {self.id!r}")


@dataclass(frozen=True)
class SensorConfig:
    id: str
    port: str
    profile: str
    baudrate: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # How the sensor is polled (checked against its profile when the agent starts):
    # one of the profile's polling modes (e.g. active, passive); default: the profile's.
    mode: str | None = None
    # Seconds between polls; overrides the mode's interval (Modbus: the profile's).
    poll_interval: float | None = None
    # Modbus slave address 1..247; overrides the profile's (modbus_rtu profiles only).
    modbus_slave: int | None = None
    # Values for the command parameters a profile declares, e.g. {working_period_min: 5}.
    params: dict[str, int] = field(default_factory=dict)
    # Warm-up after a wake or start: seconds, and readings discarded at least
    # (default: the profile's).
    warmup_s: float | None = None
    warmup_readings: int | None = None

    def __post_init__(self) -> None:
        if not ID_RE.fullmatch(self.id):
            raise ValueError(f"id: expected letters, digits, '_.:-' (max 64), got {self.id!r}")
        if self.id == AGENT_SENSOR:
            raise ValueError(f"id: {AGENT_SENSOR!r} is reserved for the gateway's own health")
        # The agent adds the model tag; the collector refuses a batch whose sensor carries
        # more than MAX_TAGS_PER_SENSOR, so a config past it would stall every batch.
        if len(self.tags) > MAX_TAGS_PER_SENSOR - 1:
            raise ValueError(f"tags: at most {MAX_TAGS_PER_SENSOR - 1} (the model tag makes"
                             f" {MAX_TAGS_PER_SENSOR}), got {len(self.tags)}")
        for key in self.tags:
            if not NAME_RE.fullmatch(key) or key in RESERVED_TAGS:
                raise ValueError(f"tags: tag name {key!r} is reserved or not a plain name")
            if not tag_value_ok(self.tags[key]):
                raise ValueError(f"tags: value of {key!r} is empty, too long, or has a newline"
                                 " or a trailing backslash")


# Where a packaged gateway keeps its state: systemd's StateDirectory=cityedge
# (configs/systemd/cityedge-agent.service), not the config's folder (/etc/cityedge).
STATE_DIR = "/var/lib/cityedge"


@dataclass(frozen=True)
class OutboxConfig:
    path: str = f"{STATE_DIR}/outbox.sqlite"
    # Seconds between fsyncs; a power cut loses at most this window. 0 fsyncs every reading.
    commit_window: float = field(default=1.0, metadata={"min": 0.0, "max": 60.0})
    # Bound on the outbox; when full the drop policy makes room, counted per sensor.
    max_size_mb: float = field(default=256.0, metadata={"min": 0.01})
    drop_policy: Literal["oldest", "priority"] = "oldest"
    # With drop_policy priority: measurement -> priority, lower dropped first (default 0).
    priorities: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata={"min": 1, "max": 65535})
    keepalive: int = field(default=30, metadata={"min": 5, "max": 3600})
    # Default: the gateway id and gateway.secret, when a secret is configured.
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    topic_prefix: str = DEFAULT_PREFIX
    # Longest wait between reconnect attempts (exponential backoff, full jitter).
    reconnect_max: float = field(default=30.0, metadata={"min": 0.5, "max": 3600.0})
    # TLS to the broker (TLS 1.2+, certificate and host name always verified):
    # ca_file to trust, cert_file/key_file for a client certificate whose CN is
    # the gateway id. null: plain TCP, for a broker on the same host only.
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class HttpUplinkConfig:
    # The collector's base URL, with its path prefix if any: batches go to
    # {url}/v1/gateways/{gateway}/batches.
    url: str = "http://127.0.0.1:8080"
    # Sent as "Authorization: Bearer <token>"; default: gateway.secret.
    token: str | None = field(default=None, repr=False)
    # Seconds for one request, the collector's write included; keep it above
    # the collector's write_timeout and at most the uplink's ack_timeout.
    timeout: float = field(default=15.0, metadata={"min": 0.5, "max": 600.0})
    # For an https url: the CA to verify the collector against (default: the
    # system's CAs), and an optional client certificate.
    tls: TlsConfig | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url: expected http:// or https://, got {self.url!r}")


@dataclass(frozen=True)
class UplinkConfig:
    kind: Literal["mqtt", "http"] = "mqtt"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    http: HttpUplinkConfig = field(default_factory=HttpUplinkConfig)
    batch_size: int = field(default=500, metadata={"min": 1, "max": MAX_READINGS_PER_BATCH})
    max_in_flight: int = field(default=4, metadata={"min": 1, "max": 64})
    ack_timeout: float = field(default=15.0, metadata={"min": 0.5})


@dataclass(frozen=True)
class DisplayConfig:
    # Where alert displays sent by the collector go (MQTT uplink only): "none"
    # refuses them (acked as rejected); "file" keeps what the terminal should
    # show in a JSON file its display software reads, rewritten atomically.
    output: Literal["none", "file"] = "none"
    path: str = f"{STATE_DIR}/display.json"


# Permission bits of the status socket: the owner must read and write it; others get
# nothing (what the agent reads would be anyone's on the gateway).
STATUS_MODE_RE = re.compile(r"0?[0-7]{3}")


@dataclass(frozen=True)
class StatusConfig:
    # The unix socket edge-agent status, tail and doctor ask (no network port).
    # Default: agent.sock beside the outbox; the unit's /run/cityedge/agent.sock lets
    # the state folder stay 0700.
    socket: str | None = None
    # The group that may ask (technicians without root: sudo usermod -aG cityedge NAME);
    # default: the agent's own group. The agent must be a member (or root).
    group: str | None = None
    # Permission bits, octal: 0660 lets the group ask, 0600 only the agent's user.
    # (YAML reads an unquoted 0660 as the octal number it is; "0660" works too.)
    mode: str | int = "0660"

    def __post_init__(self) -> None:
        if isinstance(self.mode, str) and not STATUS_MODE_RE.fullmatch(self.mode):
            raise ValueError(f"mode: expected octal permission bits such as 0660, got"
                             f" {self.mode!r}")
        bits = self.bits
        if bits & ~0o777 or bits & 0o600 != 0o600 or bits & 0o007 or bits & 0o111:
            raise ValueError(f"mode: expected 0600, 0640 or 0660 (the agent reads and writes,"
                             f" the group may, others may not), got {bits:04o}")

    @property
    def bits(self) -> int:
        return int(self.mode, 8) if isinstance(self.mode, str) else self.mode


@dataclass(frozen=True)
class MetricsConfig:
    """The agent's counters for Prometheus (edge_agent/metrics.py): a listener on
    ``host:port`` (loopback by default; null: none), and/or ``textfile``, a file
    rewritten every health_interval for node-exporter's textfile collector."""

    host: str = "127.0.0.1"
    port: int | None = field(default=9466, metadata={"min": 1, "max": 65535})
    path: str = "/metrics"
    textfile: str | None = None

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path: expected a path starting with /, got {self.path!r}")
        if self.port is None and self.textfile is None:
            raise ValueError("port: null needs a textfile (else there is nothing to expose)")
        if self.textfile is not None and not self.textfile.endswith(".prom"):
            raise ValueError(f"textfile: node-exporter reads *.prom files, got {self.textfile!r}")


@dataclass(frozen=True)
class AgentConfig:
    gateway: GatewayConfig
    sensors: list[SensorConfig]
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    profiles_dir: str | None = None
    # auto asks the kernel; true/false (YAML's yes/no too) override it.
    clock_synced: bool | Literal["auto"] = "auto"
    # Seconds an unsynchronised reading waits for its boot's time anchor (NTP or the
    # collector's clock) before it is sent as stamped, flagged time_unverified.
    clock_hold_max: float = field(default=300.0, metadata={"min": 0.0})
    health_interval: float = field(default=10.0, metadata={"min": 1.0})
    # On SIGTERM, how long to wait for the collector to ack what is stored.
    shutdown_timeout: float = field(default=10.0, metadata={"min": 0.0})
    # Prometheus metrics (a loopback listener, a textfile); off unless set.
    metrics: MetricsConfig | None = None

    def __post_init__(self) -> None:
        ids = [s.id for s in self.sensors]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"sensors: sensor ids must be unique, repeated: {', '.join(dupes)}")


def effective_uplink(config: AgentConfig, base: Path) -> UplinkConfig:
    """The uplink with the gateway's secret as its default credentials and TLS file
    paths taken from the config's folder."""
    u, gw = config.uplink, config.gateway
    mqtt, http = u.mqtt, u.http
    if gw.secret is not None:
        mqtt = dataclasses.replace(mqtt, username=mqtt.username or gw.id,
                                   password=mqtt.password or gw.secret)
        http = dataclasses.replace(http, token=http.token or gw.secret)
    if mqtt.tls is not None:
        mqtt = dataclasses.replace(mqtt, tls=mqtt.tls.resolved(base))
    if http.tls is not None:
        http = dataclasses.replace(http, tls=http.tls.resolved(base))
    return dataclasses.replace(u, mqtt=mqtt, http=http)


def load_config(path: Path | str) -> AgentConfig:
    """Load and validate; relative paths in the file are taken from the file's folder."""
    return yamlconfig.load(path, AgentConfig)


def resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p
