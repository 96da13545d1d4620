"""The gateway's configuration (configs/agent.sample.yaml documents every key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cityedge import yamlconfig
from cityedge.uplink.payload import ID_RE, MAX_READINGS_PER_BATCH, NAME_RE

SITE_KINDS = ("dust_zone", "bus_stop", "apartment")
RESERVED_TAGS = ("model", "sensor", "gateway", "district", "site", "site_kind")
# The gateway's own health readings travel as this pseudo-sensor.
AGENT_SENSOR = "agent"


@dataclass(frozen=True)
class SiteConfig:
    district: str
    site: str
    kind: Literal["dust_zone", "bus_stop", "apartment"]


@dataclass(frozen=True)
class GatewayConfig:
    id: str
    site: SiteConfig

    def __post_init__(self) -> None:
        if not ID_RE.match(self.id):
            raise ValueError(f"id: expected letters, digits, '_.:-' (max 64), got {self.id!r}")


@dataclass(frozen=True)
class SensorConfig:
    id: str
    port: str
    profile: str
    baudrate: int | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not ID_RE.match(self.id):
            raise ValueError(f"id: expected letters, digits, '_.:-' (max 64), got {self.id!r}")
        if self.id == AGENT_SENSOR:
            raise ValueError(f"id: {AGENT_SENSOR!r} is reserved for the gateway's own health")
        for key in self.tags:
            if not NAME_RE.match(key) or key in RESERVED_TAGS:
                raise ValueError(f"tags: tag name {key!r} is reserved or not a plain name")


@dataclass(frozen=True)
class OutboxConfig:
    path: str = "var/outbox.sqlite"
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
    username: str | None = None
    password: str | None = None
    topic_prefix: str = "cityedge/v1"


@dataclass(frozen=True)
class UplinkConfig:
    kind: Literal["mqtt"] = "mqtt"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    batch_size: int = field(default=500, metadata={"min": 1, "max": MAX_READINGS_PER_BATCH})
    max_in_flight: int = field(default=4, metadata={"min": 1, "max": 64})
    ack_timeout: float = field(default=15.0, metadata={"min": 0.5})


@dataclass(frozen=True)
class AgentConfig:
    gateway: GatewayConfig
    sensors: list[SensorConfig]
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    profiles_dir: str | None = None
    clock_synced: Literal["auto", "yes", "no"] = "auto"
    health_interval: float = field(default=10.0, metadata={"min": 1.0})
    # On SIGTERM, how long to wait for the collector to ack what is stored.
    shutdown_timeout: float = field(default=10.0, metadata={"min": 0.0})

    def __post_init__(self) -> None:
        ids = [s.id for s in self.sensors]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"sensors: sensor ids must be unique, repeated: {', '.join(dupes)}")


def load_config(path: Path | str) -> AgentConfig:
    """Load and validate; relative paths in the file are taken from the file's folder."""
    return yamlconfig.load(path, AgentConfig)


def resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p
