"""What a SIGHUP reload would change (edge_agent/reload.py), decided without I/O: which
sensors are added, removed, reopened or only retagged, and which changes need a restart."""

from __future__ import annotations

import dataclasses

from cityedge import shipped
from edge_agent.config import AgentConfig, GatewayConfig, OutboxConfig, SensorConfig, SiteConfig
from edge_agent.decoding import load_profiles
from edge_agent.reload import RESTART_ONLY, diff_sensors, restart_only_changes

PROFILES = load_profiles(shipped.profiles_dir())
SITE = SiteConfig(district="d", site="s", kind="dust_zone")


def sensor(sid: str, port: str = "/dev/ttyUSB0", profile: str = "pms5003",
           **extra: object) -> SensorConfig:
    return SensorConfig(id=sid, port=port, profile=profile, **extra)  # type: ignore[arg-type]


def config(*sensors: SensorConfig, **extra: object) -> AgentConfig:
    return AgentConfig(gateway=GatewayConfig(id="gw-1", site=SITE), sensors=list(sensors),
                       **extra)  # type: ignore[arg-type]


def test_each_kind_of_sensor_change_is_told_apart() -> None:
    old = [sensor("a"), sensor("b", "/dev/ttyUSB1"), sensor("c", "/dev/ttyUSB2"),
           sensor("d", "/dev/ttyUSB3", tags={"pole": "1"})]
    new = [sensor("a"),                                           # the same: left alone
           sensor("b", "/dev/ttyUSB1", profile="sds011"),         # another model: reopened
           sensor("d", "/dev/ttyUSB3", tags={"pole": "2"}),       # tags only: port kept
           sensor("e", "/dev/ttyUSB4")]                           # new
    diff = diff_sensors(old, new, PROFILES, PROFILES)
    assert [s.id for s in diff.added] == ["e"]
    assert list(diff.removed) == ["c"]
    assert [s.id for s in diff.changed] == ["b"]
    assert [s.id for s in diff.retagged] == ["d"]
    assert diff.describe() == "added e; removed c; reopened b; retagged d"


def test_polling_or_baud_rate_changes_reopen_the_port() -> None:
    old = [sensor("a"), sensor("b", "/dev/ttyUSB1")]
    new = [sensor("a", baudrate=19200), sensor("b", "/dev/ttyUSB1", mode="passive")]
    diff = diff_sensors(old, new, PROFILES, PROFILES)
    assert [s.id for s in diff.changed] == ["a", "b"] and not diff.retagged


def test_a_profile_file_edited_on_disk_reopens_its_sensors() -> None:
    edited = {**PROFILES, "pms5003": dataclasses.replace(PROFILES["pms5003"], vendor="x")}
    diff = diff_sensors([sensor("a")], [sensor("a")], PROFILES, edited)
    assert [s.id for s in diff.changed] == ["a"]
    assert diff_sensors([sensor("a")], [sensor("a")], PROFILES, PROFILES).describe() == (
        "sensors unchanged")


def test_only_restart_only_keys_are_named() -> None:
    base = config(sensor("a"))
    assert restart_only_changes(base, config(sensor("b"), health_interval=5)) == []
    moved = config(sensor("a"), outbox=OutboxConfig(path="/elsewhere.sqlite"),
                   clock_synced=True)
    assert restart_only_changes(base, moved) == ["outbox", "clock_synced"]
    renamed = dataclasses.replace(base, gateway=GatewayConfig(id="gw-2", site=SITE))
    assert restart_only_changes(base, renamed) == ["gateway.id"]
    assert set(RESTART_ONLY) >= {"gateway.id", "outbox", "status"}
