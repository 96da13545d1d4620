"""``edge-collector influx-setup``: the database, its retention policies and continuous queries.

Reads what the database has, plans the difference (collector/schema/retention.py)
and applies it; run twice, the second run finds nothing to do and says so.
``--dry-run`` prints the statements without running them; ``--backfill 30d``
also fills the downsampled policies from the raw points already there.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cityedge import yamlconfig
from cityedge.redact import redact_text
from collector.config import LoadedConfig, load_config
from collector.schema.catalogue import SHIPPED_PROFILES, sensor_measurements
from collector.schema.retention import (
    RetentionError,
    RetentionLayout,
    Step,
    backfill,
    plan,
    read_existing,
)
from collector.writers.influxdb_v1.writer import InfluxV1Config

PASSWORD_ENV = "INFLUX_PASSWORD"
QUERY_TIMEOUT_S = 30.0


class SetupError(RuntimeError):
    """InfluxDB could not be reached or refused a statement."""


@dataclass(frozen=True)
class Target:
    url: str
    database: str
    username: str | None = None
    password: str | None = None


class InfluxQuery:
    """InfluxQL over HTTP, one statement at a time (blocking: a command line runs it)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def __call__(self, q: str, *, post: bool = False, db: str | None = None,
                 epoch: bool = False) -> dict[str, Any]:
        params = {"q": q}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = "ns"
        data = urllib.parse.urlencode(params)
        url = f"{self.target.url}/query"
        headers = {}
        if self.target.username is not None:
            pair = f"{self.target.username}:{self.target.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        req = (urllib.request.Request(url, data=data.encode(), method="POST", headers=headers)
               if post else urllib.request.Request(f"{url}?{data}", headers=headers))
        try:
            with urllib.request.urlopen(req, timeout=QUERY_TIMEOUT_S) as resp:
                answer: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", "replace")[:300]
            raise SetupError(f"HTTP {exc.code}: {redact_text(body)}") from None
        except (OSError, ValueError) as exc:
            raise SetupError(f"{self.target.url}: {redact_text(str(exc))}") from None
        for result in answer.get("results") or []:
            if isinstance(result, dict) and "error" in result and post:
                raise SetupError(f"{q[:120]}: {result['error']}")
        return answer


def current(query: InfluxQuery, database: str) -> Any:
    dbs = query("SHOW DATABASES")
    names = {row[0] for s in dbs["results"][0].get("series") or [] for row in s.get("values") or []}
    if database not in names:
        return read_existing(dbs, {}, {}, database)
    return read_existing(dbs, query(f'SHOW RETENTION POLICIES ON "{database}"'),
                         query("SHOW CONTINUOUS QUERIES"), database)


def apply(target: Target, layout: RetentionLayout, *, profiles_dir: Path = SHIPPED_PROFILES,
          dry_run: bool = False, backfill_since: str | None = None
          ) -> tuple[list[Step], list[Step]]:
    """Bring the database to ``layout``: the changes and the backfills made (or, with
    ``dry_run``, to make)."""
    query = InfluxQuery(target)
    measurements = sensor_measurements(profiles_dir)
    changes = plan(target.database, layout, measurements, current(query, target.database))
    fills = [] if backfill_since is None else backfill(target.database, measurements,
                                                       backfill_since)
    if not dry_run:
        for step in changes + fills:
            query(step.statement, post=True, db=target.database)
    return changes, fills


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-collector influx-setup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="the collector's YAML config: its writer's url, database,"
                   " credentials and retention durations")
    p.add_argument("--influx", metavar="URL", help="InfluxDB's URL (instead of --config)")
    p.add_argument("--database", help="database name (default: the config's, or cityedge)")
    p.add_argument("--username", help=f"InfluxDB user; the password is read from ${PASSWORD_ENV}")
    p.add_argument("--profiles-dir", type=Path, default=SHIPPED_PROFILES,
                   help="firmware profiles whose measurements are downsampled"
                        " (default: the shipped ones)")
    p.add_argument("--dry-run", action="store_true", help="print the statements, run none")
    p.add_argument("--backfill", metavar="DURATION",
                   help="also fill the downsampled policies from raw points of the last"
                        " DURATION (e.g. 30d)")
    return p


def writer_target(loaded: LoadedConfig) -> tuple[Target, RetentionLayout | None]:
    """The database an influxdb_v1 writer writes, and its retention layout (None: not set)."""
    options = {k: v for k, v in loaded.config.writer.items() if k != "type"}
    cfg = yamlconfig.bind(InfluxV1Config, options, loaded.doc, ("writer",))
    return Target(cfg.url, cfg.database, cfg.username, cfg.password), cfg.retention


def target_from(config: str | None, influx: str | None, database: str | None,
                username: str | None, password: str | None
                ) -> tuple[Target, RetentionLayout | None]:
    """The database to talk to and the writer's retention layout (None: not set), from the
    collector's config or from a URL; ValueError when given neither."""
    if config:
        loaded = load_config(config)
        if loaded.config.writer.get("type") != "influxdb_v1":
            raise ValueError(f"{config}: writer.type is not influxdb_v1")
        target, layout = writer_target(loaded)
        return replace(target, database=database or target.database), layout
    if influx:
        return Target(influx.rstrip("/"), database or "cityedge", username, password), None
    raise ValueError("give --config or --influx URL")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        target, configured = target_from(args.config, args.influx, args.database,
                                          args.username, os.environ.get(PASSWORD_ENV))
        layout = configured or RetentionLayout()
        if args.backfill is not None:
            RetentionLayout(raw=args.backfill)  # checks the duration's form
        changes, fills = apply(target, layout, profiles_dir=args.profiles_dir, dry_run=args.dry_run,
                      backfill_since=args.backfill)
    except yamlconfig.ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"influx-setup: {exc}", file=sys.stderr)
        return 2
    except (SetupError, RetentionError) as exc:
        print(f"influx-setup: {exc}", file=sys.stderr)
        return 1
    verb = "would run" if args.dry_run else "done"
    for step in changes + fills:
        print(f"{verb}: {step.says}" + (f"\n  {step.statement}" if args.dry_run else ""))
    if not changes:
        print(f"{target.database}: retention policies and continuous queries already as"
              " configured, nothing changed")
    return 0
