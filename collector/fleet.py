"""``edge-collector fleet``: every gateway's state at a glance, from InfluxDB.

For each gateway: when it last reported (its newest ``gateway_health``), its
link, outbox depth, fill and oldest reading's age, readings dropped, clock
offset against the collector, agent version, and the alerts firing on it
(its own, its site's or its district's, from the ``alerts`` measurement).
With ``--config``, the gateways' retained status messages on the broker add
online/offline and the version the agent announced. Each gateway's problems
are named: stale (silent for longer than ``--stale``), offline, filling
(outbox past FILLING_PCT), dropping (readings dropped), off_clock (not
synchronised, or off by more than OFF_CLOCK_MS). Stale ones first, then by
gateway id. ``--json`` prints the same as one JSON document. Any collector
(or a laptop) can run it: it reads InfluxDB and the broker only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cityedge import yamlconfig
from cityedge.mqtt import MqttError
from cityedge.uplink.status import GatewayStatus
from collector.config import load_config
from collector.fleet_status import DEFAULT_LISTEN_S, read_statuses
from collector.schema.groups import GATEWAY_HEALTH
from collector.schema.setup import PASSWORD_ENV, InfluxQuery, SetupError, target_from

# A gateway sends gateway_health every health_interval (10 s by default): silent for
# this long, it is stale.
DEFAULT_STALE_S = 120.0
# How far back gateways and alerts are looked for.
LOOKBACK = "7d"
SCOPE_TAGS = ("gateway", "site", "district")
# Outbox fill, percent of its size, from which a gateway is "filling".
FILLING_PCT = 80.0
# Clock offset against the collector, ms, past which a gateway is "off_clock".
OFF_CLOCK_MS = 2000.0


@dataclass(frozen=True)
class GatewayState:
    gateway: str
    district: str
    site: str
    last_seen_ns: int
    age_s: float
    stale: bool
    link_up: bool | None
    outbox_readings: int | None
    oldest_age_s: float | None
    dropped_readings: int | None
    clock_offset_ms: float | None
    firing: tuple[str, ...]
    outbox_full_pct: float | None = None
    clock_synced: bool | None = None
    agent_version: str | None = None
    # From the status topic: online, offline, or None when not heard.
    status: str | None = None
    # stale, offline, filling, dropping, off_clock: what needs a look.
    problems: tuple[str, ...] = ()


def _num(row: Mapping[str, Any], key: str) -> Any:
    value = row.get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def firing_alerts(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The newest transition of each alert id, where that is ``firing``."""
    latest: dict[str, Mapping[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["time"]):
        if isinstance(row.get("alert_id"), str):
            latest[row["alert_id"]] = row
    return [r for r in latest.values() if r.get("state") == "firing"]


def _problems(row: Mapping[str, Any], stale: bool, status: GatewayStatus | None
              ) -> tuple[str, ...]:
    full, drops, offset = (_num(row, k) for k in ("outbox_full_pct", "dropped_readings",
                                                  "clock_offset_ms"))
    synced = row.get("clock_synced")
    checks = (("stale", stale),
              ("offline", status is not None and status.state == "offline"),
              ("filling", full is not None and full >= FILLING_PCT),
              ("dropping", bool(drops)),
              ("off_clock", synced is False or (offset is not None
                                                and abs(offset) > OFF_CLOCK_MS)))
    return tuple(name for name, bad in checks if bad)


def fleet(health: Iterable[Mapping[str, Any]], alerts: Iterable[Mapping[str, Any]],
          now_ns: int, stale_s: float,
          statuses: Mapping[str, GatewayStatus] | None = None) -> list[GatewayState]:
    """Each gateway's newest health row (``health``: one per gateway, tags folded in) with
    the firing alerts whose scope covers it and its status message if heard; stale first,
    then by gateway."""
    firing = firing_alerts(alerts)
    statuses = statuses or {}
    out = []
    for row in health:
        gw = str(row.get("gateway", ""))
        mine = sorted({f"{a['rule']} ({a['alert_id']})" for a in firing
                       if all(not a.get(t) or a.get(t) == row.get(t) for t in SCOPE_TAGS)
                       and any(a.get(t) for t in SCOPE_TAGS)})
        age = max(0.0, (now_ns - int(row["time"])) / 1e9)
        link = row.get("link_up")
        status = statuses.get(gw)
        version = row.get("agent_version")
        if status is not None and status.agent_version is not None:
            version = status.agent_version  # the status is the newer word
        synced = row.get("clock_synced")
        out.append(GatewayState(
            gateway=gw, district=str(row.get("district") or ""), site=str(row.get("site") or ""),
            last_seen_ns=int(row["time"]), age_s=round(age, 1), stale=age > stale_s,
            link_up=link if isinstance(link, bool) else None,
            outbox_readings=_num(row, "outbox_readings"), oldest_age_s=_num(row, "oldest_age_s"),
            dropped_readings=_num(row, "dropped_readings"),
            clock_offset_ms=_num(row, "clock_offset_ms"), firing=tuple(mine),
            outbox_full_pct=_num(row, "outbox_full_pct"),
            clock_synced=synced if isinstance(synced, bool) else None,
            agent_version=version if isinstance(version, str) else None,
            status=None if status is None else status.state,
            problems=_problems(row, age > stale_s, status)))
    return sorted(out, key=lambda g: (not g.stale, g.gateway))


def _rows(answer: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for result in answer.get("results") or []:
        if "error" in result:
            raise SetupError(str(result["error"]))
        for series in result.get("series") or []:
            for values in series.get("values") or []:
                row = dict(zip(series["columns"], values, strict=True))
                row.update(series.get("tags") or {})
                out.append(row)
    return out


def read(query: InfluxQuery, database: str, health_rp: str | None,
         events_rp: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def src(rp: str | None, m: str) -> str:
        return f'"{rp}"."{m}"' if rp else f'"{m}"'
    health = _rows(query(f"SELECT * FROM {src(health_rp, GATEWAY_HEALTH)} WHERE time > now() -"
                         f" {LOOKBACK} GROUP BY gateway ORDER BY time DESC LIMIT 1",
                         db=database, epoch=True))
    alerts = _rows(query(f'SELECT alert_id, "state", "rule", "severity", "message", "value",'
                         f' "gateway", "site", "district" FROM'
                         f" {src(events_rp, 'alerts')} WHERE time > now() - {LOOKBACK}",
                         db=database, epoch=True))
    return health, alerts


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def render(states: list[GatewayState]) -> str:
    head = (f"{'gateway':<24} {'seen':>8} {'link':<5} {'outbox':>7} {'oldest_s':>9}"
            f" {'drops':>6} {'clock_ms':>9} {'version':<10} firing")
    lines = [head]
    for g in states:
        link = "-" if g.link_up is None else ("up" if g.link_up else "down")
        mark = " STALE" if g.stale else ""
        others = [p for p in g.problems if p != "stale"]
        mark += f" [{' '.join(others)}]" if others else ""
        lines.append(f"{g.gateway:<24} {g.age_s:>7.0f}s {link:<5} {_cell(g.outbox_readings):>7}"
                     f" {_cell(g.oldest_age_s, '{:.0f}'):>9} {_cell(g.dropped_readings):>6}"
                     f" {_cell(g.clock_offset_ms, '{:.0f}'):>9} {_cell(g.agent_version):<10}"
                     f" {', '.join(g.firing) or '-'}"
                     f"{mark}")
    stale = sum(g.stale for g in states)
    lines.append(f"{len(states)} gateways, {stale} stale")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="edge-collector fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="the collector's YAML config (its writer's InfluxDB)")
    p.add_argument("--influx", metavar="URL", help="InfluxDB's URL (instead of --config)")
    p.add_argument("--database", help="database name (default: the config's, or cityedge)")
    p.add_argument("--username", help=f"InfluxDB user; the password is read from ${PASSWORD_ENV}")
    p.add_argument("--stale", type=float, default=DEFAULT_STALE_S, metavar="SECONDS",
                   help=f"silent this long, a gateway is stale (default {DEFAULT_STALE_S:g})")
    p.add_argument("--status-wait", type=float, default=DEFAULT_LISTEN_S, metavar="SECONDS",
                   help="with --config: listen this long for the gateways' retained status"
                        f" messages on the broker; 0: do not (default {DEFAULT_LISTEN_S:g})")
    p.add_argument("--json", action="store_true", help="one JSON document")
    args = p.parse_args(argv)
    try:
        target, layout = target_from(args.config, args.influx, args.database, args.username,
                                     os.environ.get(PASSWORD_ENV))
        health, alerts = read(InfluxQuery(target), target.database,
                              "health" if layout else None, "events" if layout else None)
    except yamlconfig.ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    except SetupError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    statuses: dict[str, GatewayStatus] = {}
    broker = load_config(args.config).config.mqtt if args.config else None
    if broker is not None and args.status_wait > 0:
        try:
            statuses.update(read_statuses(broker, args.status_wait))
        except MqttError as exc:
            print(f"fleet: status messages not heard: {exc}", file=sys.stderr)
    states = fleet(health, alerts, time.time_ns(), args.stale, statuses)
    if args.json:
        print(json.dumps({"gateways": [asdict(g) for g in states], "stale_s": args.stale},
                         ensure_ascii=False))
    else:
        print(render(states))
    return 0
