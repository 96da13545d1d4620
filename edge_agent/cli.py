"""``edge-agent``: the field technician's tool on a gateway.

``run`` starts the agent; ``check`` validates a config; ``status`` shows the
outbox (what is waiting, since when) without disturbing a running agent.
Every flag can also be set by an environment variable (CITYEDGE_...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cityedge.yamlconfig import ConfigError
from edge_agent.config import AgentConfig, load_config, resolve


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    env_config = os.environ.get("CITYEDGE_AGENT_CONFIG")
    for name, text in (("run", "read sensors and deliver readings"),
                       ("check", "validate the config and the profiles it names"),
                       ("status", "show the outbox: readings waiting, oldest, epoch")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--config", default=env_config, required=env_config is None,
                        help="agent YAML config (env CITYEDGE_AGENT_CONFIG)")
        if name == "run":
            sp.add_argument("--log-level", default=os.environ.get("CITYEDGE_LOG_LEVEL", "INFO"),
                            help="DEBUG, INFO, WARNING (env CITYEDGE_LOG_LEVEL; default INFO)")
        if name == "status":
            sp.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    return p


def _load(path: str) -> AgentConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        Console(stderr=True).print(f"[bold red]config error[/]: {exc}", highlight=False)
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
            "waiting": count, "oldest_age_s": round(time.time() - oldest / 1e9, 1) if oldest else None,
            "seq_range": [lo, hi], "last_seq": last[0] if last else 0, "per_sensor": per_sensor,
        }
    if as_json:
        print(json.dumps(info, ensure_ascii=False))
        return 0
    table = Table(title=f"gateway {config.gateway.id} outbox", show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    Console().print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = _load(args.config)
    base = Path(args.config).resolve().parent
    if args.command == "status":
        return _status(config, base, args.json)
    from edge_agent.agent import Agent

    try:
        agent_factory = lambda: Agent(config, base)  # noqa: E731
        if args.command == "check":
            asyncio.run(_check(agent_factory))
            print(f"{args.config}: ok ({len(config.sensors)} sensors)")
            return 0
    except (ValueError, ConfigError) as exc:
        Console(stderr=True).print(f"[bold red]config error[/]: {exc}", highlight=False)
        return 2
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def _run() -> None:
        try:
            agent = agent_factory()
        except (ValueError, ConfigError) as exc:
            Console(stderr=True).print(f"[bold red]config error[/]: {exc}", highlight=False)
            raise SystemExit(2) from None
        agent.install_signal_handlers()
        await agent.serve()

    asyncio.run(_run())
    return 0


async def _check(factory: object) -> None:
    factory()  # type: ignore[operator]


if __name__ == "__main__":
    sys.exit(main())
