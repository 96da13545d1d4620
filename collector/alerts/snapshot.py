"""Engine state as plain JSON-able data, in two parts, and back.

``alerts`` is small and changes rarely: open alerts, the members that hold
them up, silences and the gateway directory. ``stats`` is everything else
(window buckets, exceedance times, last-seen times, seen seqs) and grows
with the fleet. The runner writes both atomically (collector/alerts/store.py);
losing only ``stats`` costs window history, never an alert's lifecycle.
State saved for a rule whose definition changed (its fingerprint differs)
is dropped, not applied to the new rule.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Generator
from typing import Any

from collector.alerts.engine import Engine
from collector.alerts.evaluate import HELD, OK, PENDING, Member
from collector.alerts.events import Silence
from collector.alerts.group import Group
from collector.alerts.lifecycle import QUIET, Input, State

VERSION = 1
_MEMBER_LIFE = ("last_t", "raised", "since", "status", "level", "value", "down_since")
_MEMBER_STATS = ("prev_t", "prev_v", "run_v", "run_n", "run_t0", "last_seen")
_GROUP = ("alert_id", "seq", "started", "level", "value", "last_change", "last_notified",
          "last_arrival", "last_t")


def _tuple(x: Any) -> Any:
    return tuple(_tuple(i) for i in x) if isinstance(x, list) else x


def _members(engine: Engine) -> list[dict[str, Any]]:
    """Members that hold an alert up (or a gateway down), lifecycle fields only."""
    out = []
    for ri, rule in enumerate(engine.rules.rules):
        for late, table in ((False, engine.members[ri]), (True, engine.late_members[ri])):
            for m in table.values():
                if m.status != OK or m.down_since is not None:
                    d: dict[str, Any] = {"rule": rule.name, "fp": rule.fingerprint, "late": late,
                                         "key": m.key, "tags": m.tags}
                    d.update({name: getattr(m, name) for name in _MEMBER_LIFE})
                    out.append(d)
    return out


def dump_alerts(engine: Engine) -> dict[str, Any]:
    groups = []
    for ri, rule in enumerate(engine.rules.rules):
        for late, table in ((False, engine.groups[ri]), (True, engine.late_groups[ri])):
            for g in table.values():
                if g.state in QUIET and not g.holds:
                    continue
                d: dict[str, Any] = {"rule": rule.name, "fp": rule.fingerprint, "late": late,
                                     "key": g.key, "scope": g.scope, "state": g.state.value,
                                     "last_input": g.last_input.value, "holds": list(g.holds)}
                d.update({name: getattr(g, name) for name in _GROUP})
                groups.append(d)
    return {
        "version": VERSION,
        "now": engine.now,
        "groups": groups,
        "members": _members(engine),
        "silences": [{"id": s.id, "rule": s.rule, "match": dict(s.match), "until_ns": s.until_ns,
                      "created_ns": s.created_ns, "by": s.by, "comment": s.comment}
                     for s in engine.silences.values()],
        "directory": dict(engine.directory),  # entries are replaced, never mutated
    }


def dump_stats_text(engine: Engine, chunk: int = 5000) -> Generator[None, None, str]:
    """Every member as JSON text, positionally (``STAT_COLUMNS``), each tag set stored once.

    The generator yields every ``chunk`` members so that the runner can let
    the event loop run in between (each member is dumped whole; the set of
    them spans a few milliseconds, which is all window statistics need).
    Rows are encoded as they go: short-lived lists and immutable strings keep
    Python's full garbage collections, which walk every live container, rare.
    """
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    tag_index: dict[tuple[tuple[str, str], ...], int] = {}
    tag_sets: list[dict[str, str]] = []
    parts = []
    done = 0
    for ri, rule in enumerate(engine.rules.rules):
        for late, table in ((False, engine.members[ri]), (True, engine.late_members[ri])):
            if not table:
                continue
            rows = []
            for m in list(table.values()):
                done += 1
                if chunk and done % chunk == 0:
                    yield
                tkey = tuple(m.tags.items())
                ti = tag_index.get(tkey)
                if ti is None:
                    ti = tag_index[tkey] = len(tag_sets)
                    tag_sets.append(m.tags)
                rows.append(encode([m.key, ti, *(getattr(m, a) for a in _MEMBER_ROW),
                                    m.win.dump() if m.win is not None else None,
                                    m.hits.times if m.hits is not None else None,
                                    m.clock.dump() if m.clock is not None else None]))
            parts.append(f'{{"rule":{encode(rule.name)},"fp":{encode(rule.fingerprint)},'
                         f'"late":{encode(late)},"rows":[{",".join(rows)}]}}')
    head = encode({"version": VERSION, "columns": list(STAT_COLUMNS), "tags": tag_sets,
                   "dedupe": engine.dedupe.dump()})
    return head[:-1] + ',"rules":[' + ",".join(parts) + "]}"


_MEMBER_ROW = _MEMBER_LIFE + _MEMBER_STATS
STAT_COLUMNS = ("key", "tags", *_MEMBER_LIFE, *_MEMBER_STATS, "win", "hits", "clock")
# Files saved before clock means existed have every column but the last: still read.
_OLD_COLUMNS = STAT_COLUMNS[:-1]


def restore(engine: Engine, alerts: dict[str, Any] | None,
            stats: dict[str, Any] | None) -> list[str]:
    """Load saved state into a fresh engine; returns warnings (dropped, changed rules)."""
    warnings: list[str] = []
    dropped: set[str] = set()

    def rule_index(d: dict[str, Any]) -> int | None:
        ri = engine.index.get(d["rule"])
        if ri is None or engine.rules.rules[ri].fingerprint != d["fp"]:
            dropped.add(d["rule"])
            return None
        return ri

    for part in (alerts, stats):
        if part is not None and part.get("version") != VERSION:
            raise ValueError(f"state version {part.get('version')!r}, expected {VERSION}")
    if stats:
        engine.dedupe.load(stats.get("dedupe", []))
        columns = stats.get("columns")
        if columns not in (list(STAT_COLUMNS), list(_OLD_COLUMNS)):
            raise ValueError("stats columns differ from this version's")
        tag_sets = stats["tags"]
        for part in stats["rules"]:
            ri = rule_index(part)
            if ri is None:
                continue
            for row in part["rows"]:
                d = dict(zip(columns, row, strict=True))
                d.update(late=part["late"], tags=tag_sets[d["tags"]])
                _load_member(engine, d, ri, full=True)
    if alerts:
        engine.now = max(engine.now, int(alerts.get("now", 0)))
        for d in alerts.get("members", []):
            _load_member(engine, d, rule_index(d), full=False)
        for d in alerts.get("groups", []):
            ri = rule_index(d)
            if ri is not None:
                _load_group(engine, ri, d)
        for s in alerts.get("silences", []):
            engine.add_silence(Silence(s["id"], s["rule"], s["match"], s["until_ns"],
                                       s["created_ns"], s.get("by", ""), s.get("comment", "")))
        engine.directory.update(alerts.get("directory", {}))
    _recount(engine)
    warnings += [f"rule {name!r} changed or was removed: its saved state was dropped"
                 for name in sorted(dropped)]
    return warnings


def _load_member(engine: Engine, d: dict[str, Any], ri: int | None, full: bool) -> None:
    if ri is None:
        return
    rule = engine.rules.rules[ri]
    table = engine.late_members[ri] if d["late"] else engine.members[ri]
    key = _tuple(d["key"])
    m = table.get(key)
    if m is None:
        m = table[key] = Member(rule, key, dict(d["tags"]))
    for name in _MEMBER_LIFE + (_MEMBER_STATS if full else ()):
        setattr(m, name, d[name])
    if full and m.win is not None and "win" in d:
        m.win.load(d["win"])
    if full and m.hits is not None and "hits" in d:
        m.hits.times = list(d["hits"])
    if m.clock is not None:
        if full and d.get("clock"):
            m.clock.load(d["clock"])
        elif m.clock.done is None:  # no statistics: the periods restart empty, the status stays
            m.clock.status = m.status


def _load_group(engine: Engine, ri: int, d: dict[str, Any]) -> None:
    rule = engine.rules.rules[ri]
    key = _tuple(d["key"])
    g = Group(rule, key, dict(d["scope"]), bool(d["late"]))
    for name in _GROUP:
        setattr(g, name, d[name])
    g.state, g.last_input = State(d["state"]), Input(d["last_input"])
    g.holds = deque(d["holds"])
    (engine.late_groups if g.late else engine.groups)[ri][key] = g
    if g.state not in QUIET:
        engine.open[g] = None
        engine.by_id[g.alert_id] = g


def _recount(engine: Engine) -> None:
    """Group counters are derived from members, never saved, so they cannot disagree."""
    for ri, rule in enumerate(engine.rules.rules):
        for late, members, groups in ((False, engine.members[ri], engine.groups[ri]),
                                      (True, engine.late_members[ri], engine.late_groups[ri])):
            for g in groups.values():
                g.n_pending = g.n_held = 0
                g.levels = {}
            for m in members.values():
                if m.status == OK:
                    continue
                gkey = rule.group_key(m.tags)
                found = groups.get(gkey)
                g = found if found is not None else Group(rule, gkey, rule.scope(m.tags), late)
                groups[gkey] = g
                if m.status == PENDING:
                    g.n_pending += 1
                elif m.status == HELD:
                    g.n_held += 1
                    g.levels[m.level] = g.levels.get(m.level, 0) + 1
