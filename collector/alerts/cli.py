"""``edge-collector rules|alerts ...``: offline replay of rules, and people's commands.

``rules test`` replays a readings file through rule files with no broker and
no database (Kapacitor's replay is the model) and prints each alert event as
a JSON line. ``rules check`` validates rule files. ``alerts list`` reads the
collector's state file; ``alerts ack`` and ``alerts silence`` drop a command
into the state folder's spool, which the running collector applies within a
tick (or when it next starts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

from cityedge import shipped
from collector.alerts.engine import Engine
from collector.alerts.errors import RuleError, UsageError
from collector.alerts.events import iso
from collector.alerts.replay import ReadingsError, parse_time, read_csv, read_line_protocol, replay
from collector.alerts.rules import RuleSet, load_rules
from collector.alerts.schedule import load_zone
from collector.alerts.store import StateStore
from collector.alerts.units import parse_duration

ENV_STATE_DIR = "CITYEDGE_ALERTS_STATE_DIR"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-collector", description=__doc__.split("\n")[0])
    top = p.add_subparsers(dest="group", required=True)
    rules = top.add_parser("rules", help="check rule files, replay readings through them")
    rsub = rules.add_subparsers(dest="command", required=True)
    test = rsub.add_parser("test", help="replay readings through rules; print alert events (JSON)")
    test.add_argument("--rules", action="append", required=True, metavar="FILE",
                      help="rule file (repeat for several)")
    test.add_argument("--readings", required=True, metavar="FILE",
                      help="CSV with time and measurement columns, or line protocol")
    test.add_argument("--format", choices=("auto", "csv", "lp"), default="auto",
                      help="readings format (default: by extension, .csv or else line protocol)")
    test.add_argument("--precision", choices=("ns", "us", "ms", "s"), default="ns",
                      help="line protocol timestamp precision (default ns)")
    test.add_argument("--timezone", default="Asia/Seoul",
                      help="zone of CSV times written without an offset (default Asia/Seoul)")
    test.add_argument("--tag", action="append", default=[], metavar="NAME",
                      help="a CSV column that is a tag (district, site, site_kind, gateway, "
                           "sensor, model already are)")
    test.add_argument("--until", metavar="TIME",
                      help="advance the clock to TIME after the last reading (to see silences)")
    test.add_argument("--notified", action="store_true",
                      help="print only events that notify (no pending, no withdrawn)")
    check = rsub.add_parser("check", help="validate rule files and list their rules")
    check.add_argument("--rules", action="append", default=None, metavar="FILE",
                       help="rule file (repeat for several; default: the shipped rule sets)")

    alerts = top.add_parser("alerts", help="list, acknowledge and silence alerts")
    asub = alerts.add_subparsers(dest="command", required=True)

    def state_dir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--state-dir", default=os.environ.get(ENV_STATE_DIR),
                        required=ENV_STATE_DIR not in os.environ,
                        help=f"the collector's alerts.state_dir (env {ENV_STATE_DIR})")

    lst = asub.add_parser("list", help="open alerts and silences, from the state file")
    state_dir(lst)
    lst.add_argument("--json", action="store_true")
    ack = asub.add_parser("ack", help="acknowledge a firing alert: no more repeats")
    state_dir(ack)
    ack.add_argument("alert_id")
    ack.add_argument("--by", default=os.environ.get("USER", ""))
    ack.add_argument("--comment", default="")
    sil = asub.add_parser("silence", help="mute notifications of matching alerts for a while")
    state_dir(sil)
    sil.add_argument("--rule", default="*", help="rule name, or * for all (default)")
    sil.add_argument("--match", action="append", default=[], metavar="TAG=VALUE",
                     help="scope tag that must be equal, e.g. district=강남구 (repeatable)")
    sil.add_argument("--for", dest="duration", required=True, help="how long, e.g. 2h")
    sil.add_argument("--by", default=os.environ.get("USER", ""))
    sil.add_argument("--comment", default="")
    uns = asub.add_parser("unsilence", help="end a silence early")
    state_dir(uns)
    uns.add_argument("silence_id")
    return p


def _load(paths: list[str]) -> RuleSet:
    return load_rules(paths)


def _rules_test(args: argparse.Namespace) -> int:
    ruleset = _load(args.rules)
    zone = load_zone(args.timezone)
    path = Path(args.readings)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    fmt = args.format if args.format != "auto" else ("csv" if path.suffix == ".csv" else "lp")
    items = (read_csv(text, zone, args.tag) if fmt == "csv"
             else read_line_protocol(text, args.precision))
    try:
        until = parse_time(args.until, zone) if args.until else None
    except ValueError as exc:
        raise UsageError(f"--until: {exc}") from None
    keys = ("time", "rule", "scope", "state", "value", "severity", "alert_id", "late", "repeat",
            "message")
    try:
        for event in replay(Engine(ruleset), items, until):
            if args.notified and not event.notify:
                continue
            row = event.as_dict()
            print(json.dumps({k: row[k] for k in keys}, ensure_ascii=False))
    except ReadingsError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    return 0


def _rules_check(args: argparse.Namespace) -> int:
    paths = args.rules or [str(path) for path in shipped.rule_files()]
    for rule in _load(paths):
        print(f"{rule.source}: {rule.name} ({rule.kind}, {rule.severity})")
    return 0


def _alerts(args: argparse.Namespace) -> int:
    store = StateStore(args.state_dir)
    now = time.time_ns()
    if args.command == "list":
        return _list(store, args.json)
    if args.command == "ack":
        cmd = {"cmd": "ack", "alert_id": args.alert_id, "time_ns": now, "by": args.by,
               "comment": args.comment}
    elif args.command == "silence":
        match = {}
        for item in args.match:
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise UsageError(f"--match expects TAG=VALUE, got {item!r}")
            match[key] = value
        try:
            until = now + parse_duration(args.duration)
        except ValueError as exc:
            raise UsageError(f"--for: {exc}") from None
        cmd = {"cmd": "silence", "id": uuid.uuid4().hex[:12], "rule": args.rule, "match": match,
               "until_ns": until, "created_ns": now, "by": args.by, "comment": args.comment}
    else:
        cmd = {"cmd": "unsilence", "id": args.silence_id}
    store.put_command(cmd)
    what = cmd.get("id") or cmd.get("alert_id")
    print(f"{args.command} {what}: queued for the collector (applied within a tick)")
    return 0


def _list(store: StateStore, as_json: bool) -> int:
    with store.db() as db:
        alerts = sorted(db.table("alerts").all(), key=lambda a: a["started"])
        silences = db.table("silences").all()
    alerts = [a for a in alerts if a["state"] not in ("inactive", "resolved")]
    pending = [cmd for _, cmd in store.take_commands() if cmd]
    if as_json:
        print(json.dumps({"alerts": alerts, "silences": silences, "queued_commands": pending},
                         ensure_ascii=False, default=list))
        return 0
    for a in alerts:
        scope = ", ".join(f"{k}={v}" for k, v in a["scope"].items())
        late = " (late)" if a["late"] else ""
        print(f"{a['alert_id']}  {a['state']:<12} {a['rule']}{late}  since {iso(a['started'])}"
              f"  value {a['value']:g}  {scope}")
    for s in silences:
        match = ", ".join(f"{k}={v}" for k, v in s["match"].items()) or "any scope"
        print(f"silence {s['id']}  rule {s['rule']}  {match}  until {iso(s['until_ns'])}"
              f"  by {s['by'] or '?'}: {s['comment']}")
    if not alerts and not silences:
        print("no open alerts, no silences")
    if pending:
        print(f"{len(pending)} command(s) queued, not yet applied by a collector")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.group == "rules":
            return _rules_test(args) if args.command == "test" else _rules_check(args)
        return _alerts(args)
    except RuleError as exc:
        print(f"rule error: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
