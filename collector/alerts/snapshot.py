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

from collections import deque
from typing import Any

from collector.alerts.engine import Engine, Group
from collector.alerts.evaluate import HELD, OK, PENDING, Member
from collector.alerts.events import Silence
from collector.alerts.lifecycle import QUIET, Input, State

VERSION = 1
_MEMBER_LIFE = ("last_t", "raised", "since", "status", "level", "value", "down_since")
_MEMBER_STATS = ("prev_t", "prev_v", "run_v", "run_n", "run_t0", "last_seen")
_GROUP = ("alert_id", "seq", "started", "level", "value", "last_change", "last_notified",
          "last_arrival", "last_t")


def _tuple(x: Any) -> Any:
    return tuple(_tuple(i) for i in x) if isinstance(x, list) else x


def _member(rule: str, fp: str, late: bool, m: Member, full: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"rule": rule, "fp": fp, "late": late, "key": m.key, "tags": m.tags}
    for name in _MEMBER_LIFE + (_MEMBER_STATS if full else ()):
        d[name] = getattr(m, name)
    if full and m.win is not None:
        d["win"] = m.win.dump()
    if full and m.hits is not None:
        d["hits"] = list(m.hits.times)
    return d


def _members(engine: Engine, full: bool) -> list[dict[str, Any]]:
    out = []
    for ri, rule in enumerate(engine.rules.rules):
        for late, table in ((False, engine.members[ri]), (True, engine.late_members[ri])):
            for m in table.values():
                if full or m.status != OK or m.down_since is not None:
                    out.append(_member(rule.name, rule.fingerprint, late, m, full))
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
        "members": _members(engine, full=False),
        "silences": [{"id": s.id, "rule": s.rule, "match": dict(s.match), "until_ns": s.until_ns,
                      "created_ns": s.created_ns, "by": s.by, "comment": s.comment}
                     for s in engine.silences.values()],
        "directory": engine.directory,
    }


def dump_stats(engine: Engine) -> dict[str, Any]:
    return {"version": VERSION, "members": _members(engine, full=True),
            "dedupe": engine.dedupe.dump()}


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
        for d in stats.get("members", []):
            _load_member(engine, d, rule_index(d), full=True)
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
        engine.open.add(g)
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
