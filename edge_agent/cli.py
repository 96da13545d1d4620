"""``edge-agent``: the field technician's tool on a gateway.

``run`` starts the agent; ``check`` validates a config and what it names on
this machine; ``status`` asks the running agent (sensors, outbox, uplink,
clock; exit 0 healthy, 1 degraded, 2 not running or no outbox); ``tail``
prints each reading the running agent stores; ``doctor`` checks config,
ports, uplink, disk, clock and outbox and says the fix; ``probe`` tells which
sensor model is on a port; ``decode`` decodes captured bytes offline.
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
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cityedge import shipped
from cityedge.redact import configure_logging
from cityedge.version import version_text
from cityedge.yamlconfig import ConfigError
from edge_agent.config import AgentConfig, load_config, resolve
from edge_agent.outbox.space import OutboxUnusable, free_bytes
from edge_agent.status_cmd import WATCH_S

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
    p.add_argument("--version", action="version", version=version_text("edge-agent"))
    sub = p.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample-config", help="print the commented sample config (every key)")
    _flag(sample, "--systemd", "print the systemd unit instead (docs/install.md)",
          action="store_true")
    _flag(sample, "--site", "a commented config for one kind of site instead:"
          f" {', '.join(shipped.SITE_SAMPLES)}", choices=shipped.SITE_SAMPLES, default=None)
    sample.set_defaults(handler=lambda args: _print_sample("agent", args.systemd, args.site))
    for name, text in (("run", "read sensors and deliver readings"),
                       ("check", "validate the config, the profiles and ports it names"),
                       ("status", "ask the running agent: sensors, outbox, uplink, clock")):
        sp = sub.add_parser(name, help=text)
        _flag(sp, "--config", "agent YAML config", required=True)
        if name == "run":
            _flag(sp, "--log-level", "DEBUG, INFO, WARNING (default INFO)", default="INFO")
        if name == "status":
            _flag(sp, "--json", "one JSON object instead of tables", action="store_true")
            _flag(sp, "--watch", f"refresh every {WATCH_S:g} s until Ctrl-C",
                  action="store_true")
    tail = sub.add_parser("tail", help="print each reading the running agent stores, live",
                          description="One line per reading as the agent stores it, until"
                          " Ctrl-C. Exit code 2: no agent answers.")
    _flag(tail, "--config", "agent YAML config", required=True)
    _flag(tail, "--sensor", "only this sensor's readings (its id)")
    _flag(tail, "--json", "one JSON object per line", action="store_true")
    doctor = sub.add_parser(
        "doctor", help="check config, ports, uplink, disk, clock and outbox; say the fix",
        description="What is wrong with this gateway, in plain words, with the command that"
        " fixes it. Exit code 0: nothing failed; 1: something did.")
    _flag(doctor, "--config", "agent YAML config", required=True)
    doctor.set_defaults(handler=_doctor_command)
    _add_technician_commands(sub)
    return p


def _doctor_command(args: argparse.Namespace) -> int:
    from edge_agent import doctor

    return doctor.run(args.config)


def _print_sample(name: str, unit: bool, site: str | None = None) -> int:
    try:  # a --site from the environment is not checked by argparse
        path = (shipped.systemd_unit(name) if unit else shipped.site_sample(site) if site
                else shipped.sample_config(name))
    except ValueError as exc:
        print(f"sample-config: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return 0


def _config_errors(errors: list[ConfigError]) -> None:
    """Every error, one line each (file:line: key: what is wrong), then how many."""
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    flat = ConfigError.combine(errors).errors
    for error in flat:
        err.print(f"[bold red]config error[/]: {error}")
    if len(flat) > 1:
        err.print(f"{len(flat)} errors")


def _load(path: str, ports: bool = False) -> AgentConfig:
    """The config, checked whole: its keys and values, the profiles it names (in its
    profiles_dir or the shipped ones) and, with ``ports``, that its ports exist here.
    Every error is printed at once; exits 2 if there is any."""
    from edge_agent import site_check
    from edge_agent.agent import SHIPPED_PROFILES

    errors: list[ConfigError] = []
    config: AgentConfig | None = None
    try:
        config = load_config(path)
    except ConfigError as exc:
        errors.append(exc)
    doc = site_check.locate(path)
    if doc is not None:
        raw = doc.data.get("profiles_dir") if isinstance(doc.data, dict) else None
        where = (resolve(Path(path).resolve().parent, raw) if isinstance(raw, str)
                 else SHIPPED_PROFILES)
        errors += site_check.profile_errors(doc, where)
        if config is not None:
            errors += site_check.sensor_errors(doc, config, where)
        if ports:
            errors += site_check.missing_ports(doc)
    if errors or config is None:
        _config_errors(errors)
        raise SystemExit(2)
    return config


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("probe", "decode", "sample-config", "doctor"):
        return int(args.handler(args))
    config = _load(args.config, ports=args.command == "check")
    base = Path(args.config).resolve().parent
    if args.command in ("status", "tail"):
        from edge_agent import status_cmd

        return (status_cmd.run(config, base, args.json, args.watch) if args.command == "status"
                else status_cmd.tail(config, base, args.sensor, args.json))
    from edge_agent.agent import Agent

    try:
        def agent_factory() -> Agent:
            return Agent(config, base, config_path=Path(args.config).resolve())

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
