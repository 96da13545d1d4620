"""The shipped systemd units run the agent and the collector as a packaged service does:
a dedicated user, the state under /var/lib/cityedge (StateDirectory=), the config under
/etc/cityedge, always restarted, hardened; and ``systemd-analyze verify`` accepts them
where systemd is installed (the checks of their keys run everywhere)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cityedge import shipped
from edge_agent.config import STATE_DIR, DisplayConfig, OutboxConfig

UNITS = {"agent": "edge-agent", "collector": "edge-collector"}
# Hardening every unit has (systemd.exec(5)).
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
             "PrivateTmp": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
             "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
             "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
             "SystemCallFilter": "@system-service", "UMask": "0077",
             "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX"}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of key -> values (a key may repeat, as DeviceAllow= does)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


@pytest.mark.parametrize("name", sorted(UNITS))
def test_the_unit_runs_the_service_as_a_package_would(name: str) -> None:
    unit = parse_unit(shipped.systemd_unit(name).read_text(encoding="utf-8"))
    service = unit["Service"]
    assert one(service, "ExecStart") == (f"/opt/cityedge/bin/{UNITS[name]} run --config"
                                         f" /etc/cityedge/{name}.yaml")
    assert (one(service, "User"), one(service, "Group")) == ("cityedge", "cityedge")
    assert one(service, "Restart") == "always"
    assert one(service, "StateDirectory") == "cityedge"
    assert one(service, "StateDirectoryMode") == "0700"
    assert one(service, "ConfigurationDirectory") == "cityedge"
    for key, value in HARDENING.items():
        assert one(service, key) == value, key
    assert one(unit["Install"], "WantedBy") == "multi-user.target"
    assert "network-online.target" in one(unit["Unit"], "Wants")
    # READY=1 and WATCHDOG=1 come from the service itself (cityedge/sdnotify.py).
    assert (one(service, "Type"), one(service, "NotifyAccess")) == ("notify", "main")
    assert 10 <= int(one(service, "WatchdogSec")) <= 120
    assert one(service, "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_the_agent_reaches_serial_ports_and_reads_the_clock_state() -> None:
    service = parse_unit(shipped.systemd_unit("agent").read_text(encoding="utf-8"))["Service"]
    assert one(service, "SupplementaryGroups") == "dialout"
    assert one(service, "DevicePolicy") == "closed"
    assert set(service["DeviceAllow"]) >= {"char-ttyUSB rw", "char-ttyACM rw", "char-ttyAMA rw"}
    assert "PrivateDevices" not in service
    # The status socket's folder: the technicians' group may reach it (status.group).
    assert (one(service, "RuntimeDirectory"), one(service, "RuntimeDirectoryMode")) == (
        "cityedge", "0750")
    # ProtectClock's filter refuses adjtimex(), which clock_synced: auto reads.
    assert "ProtectClock" not in service


def test_the_default_state_paths_are_the_units_state_directory() -> None:
    assert STATE_DIR == "/var/lib/cityedge"
    assert OutboxConfig().path == "/var/lib/cityedge/outbox.sqlite"
    assert DisplayConfig().path == "/var/lib/cityedge/display.json"


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    checked = []
    for name, command in UNITS.items():
        text = shipped.systemd_unit(name).read_text(encoding="utf-8")
        assert parse_unit(text)["Service"]["ExecStart"]
        if analyze is None:  # not installed by ./run: the key checks above stand alone
            continue
        # verify wants ExecStart's program to exist: this Python's installed command.
        here = Path(sys.executable).parent / command
        program = here if here.exists() else Path(shutil.which("true") or "/bin/true")
        unit = tmp_path / f"cityedge-{name}.service"
        unit.write_text(text.replace(f"/opt/cityedge/bin/{command}", str(program)))
        done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        checked.append(name)
    assert analyze is None or checked == sorted(UNITS)
