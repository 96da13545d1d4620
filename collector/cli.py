"""``edge-collector``: run the collector, or check its config."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys

from cityedge import shipped
from cityedge.redact import configure_logging
from cityedge.version import version_text
from cityedge.yamlconfig import ConfigError
from collector.config import LoadedConfig, load_config

# Subcommands that are a module's main(argv) of their own.
TOOLS = {"pki": "collector.pki", "influx-setup": "collector.schema.setup",
         "fleet": "collector.fleet"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-collector", description=__doc__)
    p.add_argument("--version", action="version", version=version_text("edge-collector"))
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="validate, write to InfluxDB, ack to gateways")
    run.add_argument("--config", default=os.environ.get("CITYEDGE_COLLECTOR_CONFIG"), required=
                     "CITYEDGE_COLLECTOR_CONFIG" not in os.environ,
                     help="collector YAML config (env CITYEDGE_COLLECTOR_CONFIG)")
    run.add_argument("--log-level", default=os.environ.get("CITYEDGE_LOG_LEVEL", "INFO"),
                     help="DEBUG, INFO, WARNING (env CITYEDGE_LOG_LEVEL; default INFO)")
    sub.add_parser("rules", help="rules test|check: replay readings through alert rules offline")
    sub.add_parser("alerts", help="alerts list|ack|silence|unsilence")
    sub.add_parser("gateways", help="the gateway registry: add|list|rotate|revoke|add-collector"
                   "|mosquitto (edge-collector gateways --help)")
    sub.add_parser("influx-setup", help="create the database, its retention policies and"
                   " continuous queries, idempotently (edge-collector influx-setup --help)")
    sub.add_parser("fleet", help="each gateway: last seen, link, outbox, drops, clock, firing"
                   " alerts; stale marked (edge-collector fleet --help)")
    sub.add_parser("pki", help="a small CA: init|issue certificates (edge-collector pki --help)")
    check = sub.add_parser("check", help="validate a config file and exit")
    check.add_argument("--config", required=True)
    sub.add_parser("sample-config", help="print the commented sample config (every key);"
                   " --systemd: the systemd unit")
    return p


def _check(path: str, loaded: LoadedConfig) -> int:
    """The config, and the registry it names (readable, every entry valid)."""
    registry = loaded.registry_path
    if registry is not None:
        from collector.registry import RegistryError, load

        try:
            reg = load(registry)
        except RegistryError as exc:
            print(f"registry error: {exc}", file=sys.stderr)
            return 2
        print(f"{registry}: {len(reg.active())} active gateways,"
              f" {len(reg.gateways) - len(reg.active())} revoked, {len(reg.collectors)} collectors")
    else:
        print("warning: insecure: true: no gateway registry", file=sys.stderr)
    print(f"{path}: ok")
    return 0


def _subcommand(argv: list[str]) -> int | None:
    """Commands with parsers of their own; None for run and check."""
    if argv[:1] in (["rules"], ["alerts"]):
        from collector.alerts import cli as alerts_cli

        return alerts_cli.main(argv)
    if argv[:1] == ["gateways"]:
        from collector.registry import cli as registry_cli

        return registry_cli.main(argv[1:])
    if argv[:1] and argv[0] in TOOLS:
        tool: int = importlib.import_module(TOOLS[argv[0]]).main(argv[1:])
        return tool
    if argv in (["sample-config"], ["sample-config", "--systemd"]):
        path = (shipped.systemd_unit("collector") if "--systemd" in argv
                else shipped.sample_config("collector"))
        sys.stdout.write(path.read_text(encoding="utf-8"))
        return 0
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    done = _subcommand(argv)
    if done is not None:
        return done
    args = _parser().parse_args(argv)
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        return _check(args.config, loaded)
    configure_logging(args.log_level.upper(), "%(asctime)s %(levelname)s %(name)s: %(message)s")
    from collector.service import CollectorService, StartupError

    async def _run() -> None:
        service = CollectorService(loaded)
        service.install_signal_handlers()
        await service.serve()

    try:
        asyncio.run(_run())
    except StartupError as exc:
        logging.getLogger("collector").error("collector cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
