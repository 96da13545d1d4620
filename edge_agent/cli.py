"""``edge-agent``: the field technician's tool on a gateway.

``run`` starts the agent; ``check`` validates a config; ``status`` shows the
outbox (what is waiting, since when) without disturbing a running agent;
``probe`` tells which sensor model is on a port; ``decode`` decodes captured
bytes offline.
Every flag can also be set by an environment variable, named in its help:
CITYEDGE_AGENT_<FLAG> (--reply-timeout: CITYEDGE_AGENT_REPLY_TIMEOUT; a
switch such as --json: 1, true or yes), except --log-level and
--profiles-dir, which read CITYEDGE_LOG_LEVEL and CITYEDGE_PROFILES_DIR. A
flag on the command line wins over its variable.
Exit codes of ``run`` and ``check``: 0 ok; 1 the outbox cannot be opened or its
folder is not writable (one line says which and why); 2 a config error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cityedge.redact import configure_logging
from cityedge.yamlconfig import ConfigError
from edge_agent.config import AgentConfig, load_config, resolve
from edge_agent.display_file import read_display_file
from edge_agent.outbox.space import OutboxUnusable, free_bytes

ENV_PREFIX = "CITYEDGE_AGENT_"
# Flags whose variable is shared with the collector's CLI or predates the prefix.
ENV_NAMES = {"--log-level": "CITYEDGE_LOG_LEVEL", "--profiles-dir": "CITYEDGE_PROFILES_DIR"}
TRUE_WORDS = ("1", "true", "yes", "on")


def env_name(flag: str) -> str:
    return ENV_NAMES.get(flag, ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_"))


def _flag(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup, flag: str,
          help: str, **kwargs: object) -> bool:
    """Add ``flag`` with its environment variable as the default (argparse converts a string
    default with the flag's ``type``); True if the variable is set."""
    name = env_name(flag)
    raw = os.environ.get(name)
    if kwargs.get("action") == "store_true":
        kwargs["default"] = raw is not None and raw.strip().lower() in TRUE_WORDS
    elif raw is not None:
        kwargs["default"] = raw
        kwargs["required"] = False
    parser.add_argument(flag, help=f"{help} (env {name})", **kwargs)  # type: ignore[arg-type]
    return raw is not None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("run", "read sensors and deliver readings"),
                       ("check", "validate the config and the profiles it names"),
                       ("status", "show the outbox: readings waiting, oldest, epoch")):
        sp = sub.add_parser(name, help=text)
        _flag(sp, "--config", "agent YAML config", required=True)
        if name == "run":
            _flag(sp, "--log-level", "DEBUG, INFO, WARNING (default INFO)", default="INFO")
        if name == "status":
            _flag(sp, "--json", "one JSON object instead of a table", action="store_true")
    _add_technician_commands(sub)
    return p


def _load(path: str) -> AgentConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]config error[/]: {exc}",
                                                   highlight=False)
        raise SystemExit(2) from None


def _status(config: AgentConfig, base: Path, as_json: bool) -> int:
    path = resolve(base, config.outbox.path)
    if not path.exists():
        info: dict[str, object] = {"outbox": str(path), "exists": False}
    else:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        epoch = db.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        count, oldest, lo, hi = db.execute(
            "SELECT count(*), min(time_ns), min(seq), max(seq) FROM readings").fetchone()
        per_sensor = dict(db.execute(
            "SELECT sensor, count(*) FROM readings GROUP BY sensor ORDER BY sensor").fetchall())
        last = db.execute("SELECT seq FROM sqlite_sequence WHERE name='readings'").fetchone()
        db.close()
        info = {
            "outbox": str(path), "exists": True, "epoch": epoch[0] if epoch else None,
            "waiting": count,
            "oldest_age_s": round(time.time() - oldest / 1e9, 1) if oldest else None,
            "seq_range": [lo, hi], "last_seq": last[0] if last else 0, "per_sensor": per_sensor,
        }
    if config.display.output == "file":
        info["displays"] = _displays(resolve(base, config.display.path))
    if as_json:
        print(json.dumps(info, ensure_ascii=False))
        return 0
    table = Table(title=f"gateway {config.gateway.id} outbox", show_header=False)
    for key, value in info.items():
        shown = "\n".join(value) or "(nothing)" if key == "displays" and isinstance(value, list) \
            else str(value)
        table.add_row(key, shown)
    Console().print(table)
    return 0


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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("probe", "decode"):
        return int(args.handler(args))
    config = _load(args.config)
    base = Path(args.config).resolve().parent
    if args.command == "status":
        return _status(config, base, args.json)
    from edge_agent.agent import Agent

    try:
        def agent_factory() -> Agent:
            return Agent(config, base)

        if args.command == "check":
            asyncio.run(_check(agent_factory))
            return _check_outbox(args.config, config, resolve(base, config.outbox.path))
    except (ValueError, ConfigError) as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]config error[/]: {exc}",
                                                   highlight=False)
        return 2
    configure_logging(args.log_level.upper(), "%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def _run() -> None:
        try:
            agent = agent_factory()
        except (ValueError, ConfigError) as exc:
            Console(stderr=True, soft_wrap=True).print(f"[bold red]config error[/]: {exc}",
                                                   highlight=False)
            raise SystemExit(2) from None
        agent.install_signal_handlers()
        await agent.serve()

    try:
        asyncio.run(_run())
    except OutboxUnusable as exc:
        logging.getLogger("edge_agent").error("outbox error: %s", exc)
        return 1
    return 0


def _check_outbox(config_path: str, config: AgentConfig, outbox: Path) -> int:
    problem = _outbox_unwritable(outbox)
    if problem:
        print(f"outbox error: {problem}", file=sys.stderr)
        return 1
    free = free_bytes(_existing(outbox))
    print(f"{config_path}: ok ({len(config.sensors)} sensors; outbox {outbox} writable,"
          f" {free / 1024 / 1024:.0f} MB free)")
    return 0


def _existing(path: Path) -> Path:
    """The nearest folder of ``path`` that exists (the agent creates the rest)."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _outbox_unwritable(path: Path) -> str | None:
    """Why the agent could not write its outbox, found by really writing: a temporary file
    in its folder (a permission check says nothing for root or a read-only mount), and the
    outbox itself opened for writing when it exists."""
    folder = _existing(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".check-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
        if path.exists():
            os.close(os.open(path, os.O_RDWR))
    except OSError as exc:
        return f"{path}: not writable ({exc.strerror or exc})"
    return None


async def _check(factory: object) -> None:
    factory()  # type: ignore[operator]


# -- probe and decode: what is on this port, and what do these bytes say -------------

_PROFILES_HELP = "firmware profiles folder (default: the shipped ones)"


def _add_technician_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pr = sub.add_parser(
        "probe", help="find which sensor model is on a serial port",
        description="Listen on PORT, then send each profile's query, and report which firmware"
        " profile matches, with the evidence (frames seen, checksums passed) and one decoded"
        " reading. Exit code 0: a profile matched; 1: none did; 2: the port could not be opened."
        " The probe may leave a sensor in passive mode; the agent sets its mode on start.")
    pr.add_argument("port", help="serial port, e.g. /dev/ttyUSB0")
    _flag(pr, "--baud", "try every profile at this baud rate (default: each profile's own)",
          type=int, default=None)
    _flag(pr, "--listen", "seconds to listen before asking (default 3)", type=float,
          default=3.0)
    _flag(pr, "--reply-timeout", "seconds to wait for each answer (default 0.5)", type=float,
          default=0.5)
    _flag(pr, "--slave", "Modbus slave address to ask (default: each profile's)", type=int,
          default=None)
    _flag(pr, "--profiles-dir", _PROFILES_HELP)
    _flag(pr, "--json", "one JSON object instead of tables", action="store_true")
    pr.set_defaults(handler=_probe_command)
    de = sub.add_parser(
        "decode", help="decode captured bytes offline, one JSON line per frame",
        description="Decode bytes captured from a port with a firmware profile: one JSON line"
        " per reading (fields with units), per reply, and per rejected frame (offset and"
        " reason). Exit code 0: at least one reading; 1: none; 2: unreadable input.")
    _flag(de, "--profile", "firmware profile name, e.g. pms5003", required=True)
    source = de.add_mutually_exclusive_group()
    from_env = _flag(source, "--hex", 'the bytes as hex, e.g. "42 4D 00 1C ..."')
    from_env |= _flag(source, "--file", "a file of raw captured bytes ('-' for stdin)")
    source.required = not from_env  # argparse counts only what the command line gave
    _flag(de, "--slave", "Modbus slave address (default: the profile's)", type=int,
          default=None)
    _flag(de, "--skipped", "also a line per skipped run of bytes", action="store_true")
    _flag(de, "--profiles-dir", _PROFILES_HELP)
    de.set_defaults(handler=_decode_command)


def _profiles(directory: str | None, wanted: str | None = None) -> dict[str, object]:
    """Every profile that loads; each broken one is one line on stderr (exit 2 only if
    ``wanted`` is that one, or the folder cannot be read)."""
    from edge_agent.agent import SHIPPED_PROFILES
    from edge_agent.decoding import scan_profiles

    err = Console(stderr=True, soft_wrap=True)  # one line per error, never wrapped
    try:
        scan = scan_profiles(directory or SHIPPED_PROFILES)
    except OSError as exc:
        err.print(f"[bold red]profile error[/]: {exc}", highlight=False)
        raise SystemExit(2) from None
    for error in scan.errors:
        err.print(f"[bold red]profile error[/]: {error}", highlight=False)
    if wanted is not None and scan.error_for(wanted) is not None:
        err.print(f"[bold red]profile error[/]: {wanted} cannot be used until its file is"
                  " fixed", highlight=False)
        raise SystemExit(2)
    return dict(scan.profiles)


def _decode_command(args: argparse.Namespace) -> int:
    from edge_agent import decode_cmd

    if args.hex is not None and args.file is not None:
        print(f"decode: one of --hex and --file ({env_name('--hex')}, {env_name('--file')})",
              file=sys.stderr)
        return 2
    profiles = _profiles(args.profiles_dir, args.profile)
    if args.profile not in profiles:
        print(f"decode: unknown profile {args.profile!r}; known: {', '.join(sorted(profiles))}",
              file=sys.stderr)
        return 2
    return decode_cmd.run(profiles[args.profile], hex_text=args.hex, file=args.file,  # type: ignore[arg-type]
                          slave=args.slave, skipped=args.skipped)


def _probe_command(args: argparse.Namespace) -> int:
    import serial

    from edge_agent.probe import describe, probe

    profiles = _profiles(args.profiles_dir)
    err = Console(stderr=True)
    try:
        result = probe(args.port, profiles, baud=args.baud, listen=args.listen,  # type: ignore[arg-type]
                       reply_timeout=args.reply_timeout, slave=args.slave,
                       progress=(lambda _: None) if args.json else
                       (lambda text: err.print(f"[dim]probe: {text}[/]", highlight=False)))
    except (serial.SerialException, OSError) as exc:
        err.print(f"[bold red]probe[/]: cannot open {args.port}: {exc}", highlight=False)
        return 2
    if args.json:
        print(json.dumps(result.as_dict(profiles), ensure_ascii=False))  # type: ignore[arg-type]
        return result.exit_code
    console = Console()
    table = Table(title=f"probe {args.port}")
    for column in ("profile", "serial", "readings", "replies", "checksums ok", "damaged", "asked"):
        table.add_column(column)
    ranked = sorted(result.evidence.values(), key=lambda e: e.key(), reverse=True)
    for e in ranked:
        style = "bold green" if e.model in result.matched else ""
        table.add_row(e.model, result.settings.get(e.model, ""), str(e.readings), str(e.replies),
                      str(e.checksums_passed), str(e.damaged), ", ".join(e.asked) or "-",
                      style=style)
    console.print(table)
    best = result.evidence[result.matched[0]] if result.matched else None
    if best is not None and best.first_reading:
        reading = Table(title="one decoded reading", show_header=True)
        for column in ("measurement", "field", "value", "unit"):
            reading.add_column(column)
        for measurement, fields in best.first_reading.items():
            for name, item in fields.items():
                reading.add_row(measurement, name, str(item["value"]), item["unit"])
        console.print(reading)
    for line in describe(result, profiles):  # type: ignore[arg-type]
        console.print(("[bold green]matched[/]: " if result.matched else "[bold red]no match[/]: ")
                      + line, highlight=False)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
