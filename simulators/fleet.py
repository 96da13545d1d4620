"""A small city on one machine: gateways of the three site kinds, their simulated sensors,
and the agent and collector configs that wire them to a broker and a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class SimSensor:
    id: str
    profile: str
    interval: float
    seed: int
    # Extra keys for the sensor in the agent config (mode, poll_interval, ...).
    config: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class SimGateway:
    id: str
    district: str
    site: str
    kind: str
    sensors: tuple[SimSensor, ...] = field(default=())


# What each site kind carries (DESIGN.md, "Where it runs"), with the real models:
# a dust zone has a Plantower PMS5003 streaming and a Nova SDS011 polled in query
# mode; a bus stop has its information terminal's controller on Modbus RTU and a
# PMS7003; an apartment unit has a Modbus sound-level meter and a PMSA003 for
# indoor air, polled in passive mode. The Modbus devices are polled every few
# seconds here so the demo shows them; in production the noise meter is read
# once a minute, as its register map says.
DEMO_FLEET = (
    SimGateway("gw-dust-gangnam-01", "강남구", "역삼초등학교 옥상", "dust_zone", (
        SimSensor("pm-roof", "pms5003", 1.0, 11),
        SimSensor("pm-pole", "sds011", 1.0, 12, (("mode", "passive"), ("poll_interval", 2.0))),
    )),
    SimGateway("gw-bus-jongno-0147", "종로구", "세종로 정류장 01-147", "bus_stop", (
        SimSensor("bit-controller", "bus_terminal_modbus", 1.0, 21, (("poll_interval", 5.0),)),
        SimSensor("pm-shelter", "pms7003", 1.0, 22),
    )),
    SimGateway("gw-apt-mapo-1203", "마포구", "상암 래미안 103동 1203호", "apartment", (
        SimSensor("noise-living", "noise_meter_modbus", 1.0, 31, (("poll_interval", 5.0),)),
        SimSensor("air-living", "pmsa003", 2.0, 32, (("poll_interval", 2.0),)),
    )),
)


def collector_config(mqtt: dict[str, Any], trust: dict[str, Any], influx_url: str,
                     database: str, alerts: dict[str, Any] | None = None, *,
                     writer: dict[str, Any] | None = None) -> dict[str, Any]:
    """``mqtt``: the collector's broker keys (host, port, account, tls); ``trust``: its
    ``registry``, or ``insecure: true``; ``writer``: another writer than InfluxDB 1.x at
    ``influx_url``."""
    doc: dict[str, Any] = {
        **trust,
        "mqtt": {**mqtt, "client_id": "cityedge-demo-collector"},
        "writer": writer or {"type": "influxdb_v1", "url": influx_url, "database": database},
        "health_interval": 5,
    }
    if alerts is not None:
        doc["alerts"] = alerts
    return doc


def alerts_config(rules: Path, state_dir: Path, mqtt: dict[str, Any], webhook_url: str,
                  secret: str) -> dict[str, Any]:
    """Alerts to the log, a webhook, and the affected district's bus-stop displays
    (``mqtt``: the notifier's broker keys, the collector's account)."""
    return {
        "rules": [str(rules)],
        "state_dir": str(state_dir),
        "tick_interval": 0.5,
        "notifiers": [
            {"type": "log"},
            {"type": "webhook", "url": webhook_url, "secret": secret, "timeout": 5.0},
            {"type": "mqtt_downlink", **mqtt, "client_id": "cityedge-demo-downlink",
             "rules": ["pm*_advisory*"], "ttl": 600.0},
        ],
    }


def agent_config(gw: SimGateway, device_dir: Path, state_dir: Path, mqtt: dict[str, Any],
                 secret_file: Path | None) -> dict[str, Any]:
    """``mqtt``: the broker keys (host, port, tls); ``secret_file``: the gateway's secret
    from the registry (its MQTT password and seal key source); None: insecure."""
    gateway: dict[str, Any] = {"id": gw.id}
    if secret_file is not None:
        gateway["secret_file"] = str(secret_file)
    gateway["site"] = {"district": gw.district, "site": gw.site, "kind": gw.kind}
    return {
        "gateway": gateway,
        "sensors": [
            {"id": s.id, "port": str(device_dir / gw.id / s.id), "profile": s.profile,
             **dict(s.config)}
            for s in gw.sensors
        ],
        "outbox": {"path": str(state_dir / gw.id / "outbox.sqlite")},
        "uplink": {"mqtt": mqtt},
        # A bus stop's terminal shows alert displays; the agent keeps them in this file.
        "display": ({"output": "file", "path": str(display_file(gw, state_dir))}
                    if gw.kind == "bus_stop" else {"output": "none"}),
        "health_interval": 5,
    }


def display_file(gw: SimGateway, state_dir: Path) -> Path:
    return state_dir / gw.id / "display.json"


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
