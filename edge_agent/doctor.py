"""``edge-agent doctor``: what is wrong with this gateway, in plain words, and the fix.

It checks, in order: the config (every error at its line); each sensor's port
(exists, is a device this user may read and write, and something answers: the
running agent's last reading, or, with the agent stopped, which profile a probe
finds); the uplink (DNS, TCP, TLS, the login: MQTT's CONNECT, or over HTTP a probe
batch the collector must ack, sealed for this gateway); the disk (free space against the
outbox's limit, the time a write and fsync take on this card); the clock (NTP);
the outbox (opens, integrity). With the agent running it asks the agent rather
than touching its port. Exit code 0: nothing failed; 1: something did.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import socket
import sqlite3
import ssl
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import serial

from cityedge.mqtt import MqttClient, MqttOptions
from cityedge.tls import client_context
from cityedge.yamlconfig import ConfigError
from edge_agent import doctor_http, site_check, status_cmd
from edge_agent.agent import SHIPPED_PROFILES
from edge_agent.clock import Clock
from edge_agent.config import AgentConfig, MqttConfig, effective_uplink, load_config, resolve
from edge_agent.decoding import scan_profiles
from edge_agent.outbox.space import free_bytes
from edge_agent.probe import probe
from edge_agent.status import status_socket

# Seconds for one network step (DNS, TCP, TLS, the login).
NET_TIMEOUT_S = 5.0
# Bytes written and fsynced to time the card.
FSYNC_PROBE_BYTES = 64 * 1024
# A write and fsync slower than this makes commit_window: 0 a poor choice.
SLOW_FSYNC_S = 0.2
# Seconds a probe listens on a port before asking.
PROBE_LISTEN_S = 1.5


@dataclass(frozen=True)
class Finding:
    area: str
    verdict: str  # "ok", "warn" or "FAIL"
    text: str
    fix: str = ""


def ok(area: str, text: str) -> Finding:
    return Finding(area, "ok", text)


def warn(area: str, text: str, fix: str = "") -> Finding:
    return Finding(area, "warn", text, fix)


def fail(area: str, text: str, fix: str = "") -> Finding:
    return Finding(area, "FAIL", text, fix)


def check_config(path: str) -> tuple[AgentConfig | None, list[Finding]]:
    errors: list[ConfigError] = []
    config = None
    try:
        config = load_config(path)
    except ConfigError as exc:
        errors.append(exc)
    doc = site_check.locate(path)
    if doc is not None and config is not None:
        where = (resolve(Path(path).resolve().parent, config.profiles_dir)
                 if config.profiles_dir else SHIPPED_PROFILES)
        errors += site_check.profile_errors(doc, where)
    if not errors and config is not None:
        return config, [ok("config", f"{path}: {len(config.sensors)} sensors,"
                                     f" gateway {config.gateway.id}")]
    flat = ConfigError.combine(errors).errors if errors else ()
    return None, [fail("config", str(e), f"edit that line, then: edge-agent check --config"
                                         f" {path}") for e in flat]


def _access(port: str) -> Finding | None:
    """A port this user cannot read and write: which group to join."""
    if os.access(port, os.R_OK | os.W_OK):
        return None
    st = os.stat(port)
    group = grp.getgrgid(st.st_gid).gr_name
    user = pwd.getpwuid(os.getuid()).pw_name
    return fail("port", f"{port}: {user} may not read and write it (owner group {group})",
                f"sudo usermod -aG {group} {user} (then log in again, or restart the service)")


def check_ports(config: AgentConfig, live: dict[str, Any] | None) -> list[Finding]:
    out = []
    by_id = {s["id"]: s for s in (live or {}).get("sensors", [])}
    for sensor in config.sensors:
        area, port = f"sensor {sensor.id}", sensor.port
        if not os.path.exists(port):
            out.append(fail(area, f"{port} does not exist",
                            "plug the sensor in; ls -l /dev/serial/by-id/ for its stable path"))
            continue
        if not stat.S_ISCHR(os.stat(port).st_mode):
            out.append(fail(area, f"{port} is not a serial device", "fix sensors[].port"))
            continue
        denied = _access(port)
        if denied is not None:
            out.append(Finding(area, denied.verdict, denied.text, denied.fix))
            continue
        if sensor.id in by_id:
            out.append(_live_port(area, by_id[sensor.id]))
        else:
            out.append(_probe_port(area, port, sensor.profile))
    return out


def _live_port(area: str, s: dict[str, Any]) -> Finding:
    age = s["last_reading_age_s"]
    if not s["open"]:
        return fail(area, f"{s['port']}: the agent cannot open it now (unplugged?)",
                    "check the cable; journalctl -u cityedge-agent")
    if age is None:
        return fail(area, f"{s['port']}: open, but no reading yet ({s['profile']})",
                    "wrong profile or baud? stop the agent, then: edge-agent probe"
                    f" {s['port']}")
    return ok(area, f"{s['port']}: the agent's last {s['profile']} reading {age:.0f} s ago")


def _probe_port(area: str, port: str, profile: str) -> Finding:
    try:
        result = probe(port, scan_profiles(SHIPPED_PROFILES).profiles, listen=PROBE_LISTEN_S,
                       reply_timeout=0.5)
    except (serial.SerialException, OSError) as exc:
        return fail(area, f"{port}: cannot open it: {exc}", "is another program using it?"
                    " (fuser -v PORT)")
    if not result.matched:
        return fail(area, f"{port}: nothing answers as any known profile",
                    "check power, wiring (TX/RX crossed) and the sensor's baud rate")
    if profile in result.matched:
        return ok(area, f"{port}: answers as {profile}")
    return fail(area, f"{port}: answers as {', '.join(result.matched)}, the config says"
                f" {profile}", f"set sensors[].profile: {result.matched[0]}")


def check_uplink(config: AgentConfig, base: Path, live: dict[str, Any] | None) -> list[Finding]:
    u = effective_uplink(config, base)
    if u.kind == "http":
        parts = urlsplit(u.http.url)
        host, tls = parts.hostname or "", parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        context = ((client_context(u.http.tls) if u.http.tls is not None
                    else ssl.create_default_context()) if tls else None)
    else:
        host, port = u.mqtt.host, u.mqtt.port
        context = client_context(u.mqtt.tls) if u.mqtt.tls is not None else None
    area = "uplink"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return [fail(area, f"{host}: name not found ({exc})",
                     "check uplink host and /etc/resolv.conf")]
    out = [ok(area, f"{host} is {addresses[0][4][0]}")]
    try:
        with socket.create_connection((host, port), timeout=NET_TIMEOUT_S) as raw:
            out.append(ok(area, f"TCP {host}:{port} answers"))
            if context is not None:
                with context.wrap_socket(raw, server_hostname=host) as tls_sock:
                    out.append(ok(area, f"TLS {tls_sock.version()}: certificate of {host}"
                                        " verified"))
    except ssl.SSLError as exc:
        return [*out, fail(area, f"TLS to {host}:{port}: {exc.reason or exc}",
                           "tls.ca_file must be the CA that signed the server's certificate,"
                           " and the host name must be in it")]
    except OSError as exc:
        return [*out, fail(area, f"TCP {host}:{port}: {exc.strerror or exc}",
                           "is the broker or collector running, and the port open in the"
                           " firewall?")]
    if u.kind == "mqtt":
        out.append(_login(u.mqtt, config.gateway.id))
    else:
        out.append(Finding(area, *doctor_http.check_ack(config, base)))
    if live is not None:
        up = live["uplink"]
        out.append(ok(area, "the running agent is connected") if up["connected"] else
                   fail(area, f"the running agent is not connected: {up['problem']}"))
    return out


def _login(mqtt: MqttConfig, gateway: str) -> Finding:
    """An MQTT CONNECT with the gateway's login (its own client id: the agent's session and
    retained status are left alone)."""
    options = MqttOptions(host=mqtt.host, port=mqtt.port, client_id=f"cityedge-doctor-{gateway}",
                          username=mqtt.username, password=mqtt.password, clean_start=True,
                          session_expiry=0, tls=mqtt.tls, reconnect_max=NET_TIMEOUT_S)

    async def connect() -> str | None:
        client = MqttClient(options)
        client.start()
        try:
            await client.wait_connected(NET_TIMEOUT_S)
            return None
        except Exception:
            return client.stats.last_error or "no answer"
        finally:
            await client.close()

    problem = asyncio.run(connect())
    who = mqtt.username or "(anonymous)"
    if problem is None:
        return ok("uplink", f"MQTT login as {who} accepted")
    return fail("uplink", f"MQTT login as {who}: {problem}",
                "gateway.secret must be the one edge-collector gateways add printed for this"
                " gateway (edge-collector gateways rotate issues a new one)")


def check_disk(config: AgentConfig, outbox: Path) -> list[Finding]:
    folder = outbox.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = free_bytes(folder)
    limit = config.outbox.max_size_mb * 1024 * 1024
    out = [(ok if free >= limit else warn)(
        "disk", f"{free / 1024 / 1024:.0f} MB free in {folder}; outbox limit"
                f" {config.outbox.max_size_mb:.0f} MB")]
    if free < limit:
        out[0] = Finding("disk", "warn", out[0].text, "lower outbox.max_size_mb below the"
                         " free space, or free some: a full disk stops storing readings")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".doctor-", dir=folder)
    except OSError as exc:
        return [*out, fail("disk", f"{folder}: not writable ({exc.strerror})",
                           "the service user must own the state folder")]
    try:
        started = time.monotonic()
        os.write(fd, b"\0" * FSYNC_PROBE_BYTES)
        os.fsync(fd)
        took = time.monotonic() - started
    finally:
        os.close(fd)
        os.unlink(tmp)
    text = f"write and fsync of {FSYNC_PROBE_BYTES // 1024} KiB: {took * 1000:.0f} ms"
    out.append(ok("disk", text) if took < SLOW_FSYNC_S or config.outbox.commit_window else
               warn("disk", text + " with commit_window: 0", "a slow card: set"
                    " outbox.commit_window: 1.0"))
    return out


def check_clock(config: AgentConfig) -> Finding:
    if Clock(config.clock_synced).synced():
        return ok("clock", "synchronised" + ("" if config.clock_synced == "auto"
                                               else " (the config says so)"))
    return warn("clock", "not NTP-synchronised: readings are stamped against time anchors"
                " until it is", "timedatectl; systemctl status systemd-timesyncd")


def check_outbox(path: Path, running: bool) -> Finding:
    if not path.exists():
        return (fail if running else warn)("outbox", f"{path} does not exist yet",
                                           "the agent makes it on its first start")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=NET_TIMEOUT_S)
        try:
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            waiting = db.execute("SELECT count(*) FROM readings").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return fail("outbox", f"{path}: cannot be read: {exc}",
                    "stop the agent and move the file aside (its readings are lost)")
    if result != "ok":
        return fail("outbox", f"{path}: damaged: {result}",
                    "stop the agent and move the file aside (its readings are lost)")
    return ok("outbox", f"{path}: intact, {waiting} readings waiting")


def diagnose(config_path: str) -> list[Finding]:
    config, found = check_config(config_path)
    if config is None:
        return found
    base = Path(config_path).resolve().parent
    outbox = resolve(base, config.outbox.path)
    live: dict[str, Any] | None = None
    try:
        live = status_cmd.ask(status_socket(config, base))
        found.append(ok("agent", f"running (pid {live.get('pid')}): its port and uplink"
                                 " state come from it"))
    except (OSError, ValueError):
        found.append(warn("agent", "not running: ports are probed directly",
                          "systemctl start cityedge-agent (journalctl -u cityedge-agent)"))
    found += check_ports(config, live)
    found += check_uplink(config, base, live)
    found += check_disk(config, outbox)
    found.append(check_clock(config))
    found.append(check_outbox(outbox, live is not None))
    return found


def run(config_path: str) -> int:
    findings = diagnose(config_path)
    for f in findings:
        print(f"{f.verdict:<4} {f.area}: {f.text}")
        if f.fix:
            print(f"     fix: {f.fix}")
    failed = sum(f.verdict == "FAIL" for f in findings)
    warned = sum(f.verdict == "warn" for f in findings)
    print(f"{failed} failed, {warned} warnings, {len(findings) - failed - warned} ok")
    return 1 if failed else 0
