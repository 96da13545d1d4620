"""``edge-collector rules|alerts ...``: offline replay of rules, and people's commands.

``rules test`` replays a readings file through rule files with no broker and
no database (Kapacitor's replay is the model) and prints each alert event as
a JSON line. ``rules check`` validates rule files. ``alerts list`` reads the
collector's state file; ``alerts ack``, ``silence`` and ``unsilence`` check
what they name against the saved state (an unknown alert, rule or silence is
an error), drop a command into the state folder's spool, and wait (``--wait``)
for the leading collector to apply or refuse it, and say which: exit 0
applied, 1 refused, 3 not taken in time (it stays queued).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from cityedge import shipped
from collector.alerts.commands import result_path
from collector.alerts.engine import Engine
from collector.alerts.errors import RuleError, UsageError
from collector.alerts.events import iso
from collector.alerts.replay import ReadingsError, parse_time, read_csv, read_line_protocol, replay
from collector.alerts.rules import RuleSet, load_rules
from collector.alerts.schedule import load_zone
from collector.alerts.store import StateStore
from collector.alerts.units import parse_duration

ENV_STATE_DIR = "CITYEDGE_ALERTS_STATE_DIR"
# Seconds a command waits for the leading collector's outcome by default (it takes
# the spool every tick, about a second).
DEFAULT_WAIT_S = 10.0
POLL_S = 0.1
EXIT_REFUSED, EXIT_NOT_TAKEN = 1, 3




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

    def state_dir(sp: argparse.ArgumentParser, *, wait: bool = True) -> None:
        sp.add_argument("--state-dir", default=os.environ.get(ENV_STATE_DIR),
                        required=ENV_STATE_DIR not in os.environ,
                        help=f"the collector's alerts.state_dir (env {ENV_STATE_DIR})")
        if wait:
            sp.add_argument("--wait", type=float, default=DEFAULT_WAIT_S, metavar="SECONDS",
                            help="how long to wait for the leading collector to apply it"
                                 f" (default {DEFAULT_WAIT_S:g}; 0: queue and return)")

    lst = asub.add_parser("list", help="open alerts and silences, from the state file")
    state_dir(lst, wait=False)
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


def _unknown(store: StateStore, cmd: dict[str, Any]) -> str | None:
    """Why the saved state shows that what ``cmd`` names does not exist or cannot take it;
    None when it does not show that (or nothing is saved yet). Rules are not in the saved
    state: only the collector can refuse an unknown one."""
    saved = store.load_alerts() if store.alerts_path.exists() else None
    if saved is None:
        return None
    if cmd["cmd"] == "ack":
        found = {g["alert_id"]: g for g in saved["groups"]}.get(cmd["alert_id"])
        if found is None:
            return f"no alert {cmd['alert_id']} (edge-collector alerts list shows them)"
        if found["state"] != "firing":
            return f"alert {cmd['alert_id']} is {found['state']}, not firing"
    if cmd["cmd"] == "unsilence" and cmd["id"] not in {s["id"] for s in saved["silences"]}:
        return f"no silence {cmd['id']} (edge-collector alerts list shows them)"
    return None


def _outcome(store: StateStore, spooled: Path, cmd: dict[str, Any],
             wait_s: float) -> tuple[int, str]:
    """The leading collector's outcome of the command spooled at ``spooled``; if none comes
    within ``wait_s``, what the saved state says of it."""
    done = result_path(spooled)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            outcome = json.loads(done.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            outcome = None
        if isinstance(outcome, dict):
            done.unlink(missing_ok=True)
            if outcome.get("applied"):
                return 0, "applied by the collector"
            return EXIT_REFUSED, f"refused by the collector: {outcome.get('detail', '?')}"
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    if not spooled.exists():
        return 0, "taken by the collector (it reported no outcome)"
    unknown = _unknown(store, cmd)
    if unknown is not None:
        spooled.unlink(missing_ok=True)  # withdrawn: it names nothing that exists
        return EXIT_REFUSED, f"{unknown}; no collector answered within {wait_s:g} s"
    return EXIT_NOT_TAKEN, (f"queued, but no collector took it within {wait_s:g} s (is a"
                            " collector with this state_dir running and leading?); it stays"
                            " queued and is applied when one does")


def _alerts(args: argparse.Namespace) -> int:
    if not Path(args.state_dir).is_dir():
        raise UsageError(f"--state-dir {args.state_dir}: no such directory (the collector's"
                         " alerts.state_dir)")
    store = StateStore(args.state_dir)
    now = time.time_ns()
    if args.command == "list":
        return _list(store, args.json)
    if args.wait < 0:
        raise UsageError("--wait: expected 0 or more seconds")
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
    what = cmd.get("id") or cmd.get("alert_id")
    if args.wait == 0:
        unknown = _unknown(store, cmd)
        if unknown is not None:
            print(f"error: {args.command} {what}: {unknown}", file=sys.stderr)
            return EXIT_REFUSED
        store.put_command(cmd)
        print(f"{args.command} {what}: queued for the collector (applied within a tick)")
        return 0
    code, says = _outcome(store, store.put_command(cmd), cmd, args.wait)
    print(f"{args.command} {what}: {says}", file=sys.stderr if code else sys.stdout)
    return code


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
