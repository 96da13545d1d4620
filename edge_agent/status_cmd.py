"""``edge-agent status``: what the running agent says about itself, or why it cannot.

It asks the agent over its unix socket (status.py): sensors (port, profile, last
reading and its age, counters), the outbox (depth, oldest, size against its
limit, drops, time left), the uplink (connected, last ack, in flight) and the
clock. When no agent answers it reads the outbox file directly, read-only, and
says the agent is not running. Exit codes: 0 healthy; 1 degraded (the problems
are listed); 2 not running, or the outbox is missing or unreadable.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edge_agent.config import AgentConfig, resolve
from edge_agent.display_file import read_display_file
from edge_agent.status import status_socket

HEALTHY, DEGRADED, DOWN = 0, 1, 2
# Seconds to wait for the agent's answer.
ASK_TIMEOUT_S = 5.0
# Largest answer read (a few sensors' status is a few KB).
MAX_ANSWER_BYTES = 1 << 20
# Seconds between refreshes with --watch.
WATCH_S = 2.0


def ask(path: Path, timeout: float = ASK_TIMEOUT_S) -> dict[str, Any]:
    """The running agent's snapshot; OSError or ValueError if it does not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(b"status\n")
        chunks, size = [], 0
        while chunk := s.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise ValueError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    answer = json.loads(b"".join(chunks))
    if not isinstance(answer, dict):
        raise ValueError("answer is not a JSON object")
    return answer


def offline(path: Path) -> dict[str, Any]:
    """The outbox as stored, read-only; raises sqlite3.Error or OSError if unreadable."""
    if not path.exists():
        raise FileNotFoundError(f"no outbox at {path} (the agent has never run with this"
                                " config, or outbox.path points elsewhere)")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        epoch = db.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        count, oldest, lo, hi = db.execute(
            "SELECT count(*), min(time_ns), min(seq), max(seq) FROM readings").fetchone()
        per_sensor = dict(db.execute(
            "SELECT sensor, count(*) FROM readings GROUP BY sensor ORDER BY sensor").fetchall())
        last = db.execute("SELECT seq FROM sqlite_sequence WHERE name='readings'").fetchone()
    finally:
        db.close()
    return {"outbox": str(path), "exists": True, "epoch": epoch[0] if epoch else None,
            "waiting": count,
            "oldest_age_s": round(time.time() - oldest / 1e9, 1) if oldest else None,
            "seq_range": [lo, hi], "last_seq": last[0] if last else 0, "per_sensor": per_sensor}


def gather(config: AgentConfig, base: Path) -> tuple[int, dict[str, Any]]:
    """The exit code and what to show."""
    outbox = resolve(base, config.outbox.path)
    sock = status_socket(config, base)
    try:
        info = ask(sock)
        code = DEGRADED if info.get("problems") else HEALTHY
        info = {"running": True, "exit": code, "waiting": info["outbox"]["readings"], **info}
    except PermissionError:
        group = config.status.group or "the agent's group"
        info = {"running": None, "exit": DOWN,
                "problems": [f"not allowed to ask the agent on {sock}: join {group}"
                             f" (sudo usermod -aG {config.status.group or 'cityedge'} $USER,"
                             " then log in again) or use sudo"]}
    except (OSError, ValueError, KeyError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        info = {"running": False, "exit": DOWN,
                "problems": [f"agent not running: no answer on {sock} ({why})"]}
        try:
            info.update(offline(outbox))
        except (OSError, sqlite3.Error) as err:
            info.update({"outbox": str(outbox), "exists": outbox.exists()})
            info["problems"].append(f"outbox: {err}")
    if config.display.output == "file":
        info["displays"] = _displays(resolve(base, config.display.path))
    return int(info["exit"]), info


def _displays(path: Path) -> list[str] | str:
    """What the terminal is told to show, one line per alert."""
    try:
        board = read_display_file(path)
    except (OSError, ValueError) as exc:
        return f"unreadable: {exc}"
    if board is None:
        return []
    lines = []
    for d in board["showing"]:
        until = (time.strftime("%Y-%m-%d %H:%M", time.localtime(d["expires_ns"] / 1e9))
                 if d.get("expires_ns") else "cleared by the collector")
        lines.append(f"[{d.get('severity', '')}] {d.get('text', '')} (until {until})")
    return lines


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.0f} s ago"


def render(console: Console, gateway: str, info: dict[str, Any]) -> None:
    state = ("[bold green]healthy[/]", "[bold yellow]degraded[/]",
             "[bold red]not running[/]")[info["exit"]]
    if info["running"] is None:  # a socket this user may not use
        state = "[bold red]cannot ask the agent[/]"
    console.print(f"gateway {gateway}: {state}", highlight=False)
    for line in info.get("problems", []):
        console.print(f"  [red]![/] {line}", highlight=False)
    if info["running"] is None:
        pass
    elif info["running"]:
        _live(console, info)
    else:
        table = Table(title="outbox (as stored)", show_header=False)
        for key, value in info.items():
            if key not in ("running", "exit", "problems", "displays"):
                table.add_row(key, str(value))
        console.print(table)
    if "displays" in info:
        shown = info["displays"]
        console.print("terminal shows: " + ("\n".join(shown) or "(nothing)"
                                            if isinstance(shown, list) else shown))


def _live(console: Console, info: dict[str, Any]) -> None:
    sensors = Table(title="sensors")
    # frames: good frames; rejected: bad checksum, length, range...; skipped: bytes passed
    # over to find a frame (resyncs); unplugs: the port lost (serial_port.py counters).
    for column in ("sensor", "port", "profile", "open", "last reading", "frames", "rejected",
                   "skipped", "unplugs", "not stored"):
        sensors.add_column(column, overflow="fold")
    for s in info["sensors"]:
        c = s["counters"]
        rejected = sum(n for k, n in c.items() if k.startswith("rejected_"))
        sensors.add_row(s["id"], s["port"], s["profile"], "yes" if s["open"] else "NO",
                        _age(s["last_reading_age_s"]), str(c.get("frames_ok", 0)),
                        str(rejected), str(c.get("bytes_skipped", 0)),
                        str(c.get("port_errors", 0)), str(s["not_stored"]))
    console.print(sensors)
    box, up, clock = info["outbox"], info["uplink"], info["clock"]
    left = box["time_left_s"]
    rows = [
        ("outbox", f"{box['readings']} readings, oldest {_age(box['oldest_age_s'])};"
                   f" {box['bytes'] / 1e6:.1f} of {box['max_bytes'] / 1e6:.0f} MB"
                   f" ({box['full_pct']:.1f}%); dropped {box['dropped']}, not stored"
                   f" {box['not_stored']}; full in "
                   + ("(not filling)" if left is None else f"{left / 3600:.1f} h")),
        ("uplink", f"{up['target']}: " + ("connected" if up["connected"] else
                                          f"DOWN ({up['problem'] or 'no answer'})")
         + f"; last ack {_age(up['last_ack_age_s'])}; {up['in_flight']} batches in flight,"
           f" {up['backlog_readings']} readings to resend; {up['outages']} outages"),
        ("clock", ("NTP-synchronised" if clock["synced"] else "NOT synchronised")
         + f"; anchor {clock['anchor']}; boot {clock['boot']}"),
        ("agent", f"pid {info['pid']}, up {info['uptime_s'] / 60:.0f} min"),
    ]
    table = Table(show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def tail(config: AgentConfig, base: Path, sensor: str | None, as_json: bool) -> int:
    """Each reading the running agent stores, as it stores it, until Ctrl-C."""
    sock = status_socket(config, base)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(sock))
            s.sendall(b"tail\n")
            for raw in s.makefile("rb"):
                line = json.loads(raw)
                if "error" in line:
                    print(f"tail: {line['error']}", file=sys.stderr)
                    return DOWN
                if sensor is None or line["sensor"] == sensor:
                    print(raw.decode().rstrip("\n") if as_json else _reading_text(line),
                          flush=True)
    except KeyboardInterrupt:
        return HEALTHY
    except OSError as exc:
        print(f"tail: agent not running: no answer on {sock} ({exc.strerror or exc})",
              file=sys.stderr)
        return DOWN
    print("tail: the agent stopped", file=sys.stderr)
    return DOWN


def _reading_text(line: dict[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(line["time_ns"] / 1e9))
    values = " ".join(f"{k}={v}" for k, v in line["fields"].items())
    return f"{when} {line['sensor']} {line['measurement']} {values}"


def run(config: AgentConfig, base: Path, as_json: bool, watch: bool) -> int:
    console = Console()
    while True:
        code, info = gather(config, base)
        if as_json:
            print(json.dumps(info, ensure_ascii=False), flush=True)
        else:
            if watch:
                console.clear()
            render(console, config.gateway.id, info)
        if not watch:
            return code
        try:
            time.sleep(WATCH_S)
        except KeyboardInterrupt:
            return code
