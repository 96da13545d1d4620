"""The alert engine, sans-IO: readings, status and clock ticks in; alert events out.

Nothing here reads a clock, opens a socket or sleeps. ``tick(now_ns)`` is the
only notion of "now" and comes from the caller (the runner's loop, or the
replay's event times). A reading is judged live when it is in order for its
series and less than the rule's ``late_after`` behind ``now``; otherwise it
only feeds statistics (and, for ``late: report`` rules, a separate late track
whose events are marked late). A reading stamped more than ``max_future_ns``
ahead of ``now`` is counted as ``future`` and goes to no rule. Readings are
deduplicated by
(gateway, epoch, seq) before anything else, so a resend counts once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from cityedge.uplink import OUT_OF_RANGE_FIELD
from collector.alerts.clock import Change
from collector.alerts.clockrules import ClockRules
from collector.alerts.errors import UsageError
from collector.alerts.evaluate import HELD, KINDS, OK, PENDING, Member, Verdict, hold
from collector.alerts.events import Ack, AlertEvent, Silence, Status, alert_id, iso
from collector.alerts.group import Group
from collector.alerts.lifecycle import ACKABLE, QUIET, REPEATS_IN, Input, State, step
from collector.alerts.rules import RuleSet
from collector.alerts.table import Directory, EngineLimits, MemberTable, TableCounts
from collector.alerts.windows import Dedupe
from collector.lineprotocol import Identity

LOCATION_TAGS = ("district", "site", "site_kind")
# Route cache entries (distinct measurement + tag sets); cleared when full.
MAX_ROUTES = 200_000


class PointLike(Protocol):
    """collector.lineprotocol.Point, or anything shaped like it."""

    @property
    def measurement(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def fields(self) -> Mapping[str, Any]: ...
    @property
    def time_ns(self) -> int: ...
    @property
    def identity(self) -> Identity | None: ...
    @property
    def source(self) -> str: ...


def _flagged(fields: Mapping[str, Any], name: str) -> bool:
    """The reading says ``name`` is outside its sensor's datasheet range (kept, flagged)."""
    flagged = fields.get(OUT_OF_RANGE_FIELD)
    return isinstance(flagged, str) and name in flagged.split(",")


def _number(raw: Any) -> float | None:
    """A field value the rules can use (bools are 0/1); None for text, missing or non-finite."""
    if raw is None or isinstance(raw, str):
        return None
    v = float(raw)
    return v if math.isfinite(v) else None  # a NaN would poison every window it entered


class _Safe(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


class Engine:
    def __init__(self, rules: RuleSet, limits: EngineLimits | None = None) -> None:
        self.rules = rules
        self.now = 0
        self.limits = limits = limits or EngineLimits()
        self.dedupe = Dedupe()
        n = len(rules.rules)
        self.tables = TableCounts()  # members forgotten or refused (table.py)
        self.members = [MemberTable(limits.max_members, self.tables) for _ in range(n)]
        self.late_members = [MemberTable(limits.max_members, self.tables) for _ in range(n)]
        self.groups: list[dict[tuple[str, ...], Group]] = [{} for _ in range(n)]
        self.late_groups: list[dict[tuple[str, ...], Group]] = [{} for _ in range(n)]
        self.open: dict[Group, None] = {}  # groups not in a quiet state (ordered set)
        self.by_id: dict[str, Group] = {}
        self.directory = Directory(limits.max_gateways, self.tables)
        self.silences: dict[str, Silence] = {}
        self.index = {r.name: i for i, r in enumerate(rules.rules)}
        self._timed = [i for i, r in enumerate(rules.rules) if r.kind in ("silence", "offline")]
        self._offline = [i for i, r in enumerate(rules.rules) if r.kind == "offline"]
        # No silence or offline deadline falls before this: the tick skips its scan until then.
        self._timed_due = 0
        self.clock = ClockRules(rules, self.members, self._clock_move)
        self._backfill = False  # events being made are re-judgements of late readings
        self._routes: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[int, ...]] = {}
        self.counts = {"readings": 0, "duplicates": 0, "late": 0, "future": 0, "events": 0}
        self._out: list[AlertEvent] = []

    def set_limits(self, limits: EngineLimits) -> None:
        """New bounds (for an engine restored from saved state); tables shrink as they fill."""
        self.limits = limits
        for table in (*self.members, *self.late_members):
            table.cap = limits.max_members
        self.directory.cap = limits.max_gateways

    # -- inputs --------------------------------------------------------------
    def advance(self, now_ns: int) -> None:
        """Move the clock (for lateness) without the tick's sweeps: cheap, for every batch."""
        self.now = max(self.now, now_ns)

    def tick(self, now_ns: int) -> list[AlertEvent]:
        """Advance the clock: silences, offline gateways, flap settling, repeats, late tracks."""
        self.now = max(self.now, now_ns)
        now = self.now
        if now >= self._timed_due:
            self._scan_deadlines(now)
        if now >= self.clock.due:
            self.clock.scan(now)
        for g in list(self.open):
            self._sweep(g, now)
        for sid in [s.id for s in self.silences.values() if s.until_ns <= now]:
            del self.silences[sid]
        # A tick can find several deadlines passed at once: report them in time order
        # (and in a stable order within one instant).
        return sorted(self._take(), key=lambda e: (e.time_ns, e.rule, e.alert_id))

    def _scan_deadlines(self, now: int) -> None:
        next_due = 1 << 62
        for ri in self._timed:
            rule = self.rules.rules[ri]
            for m in list(self.members[ri].values()):
                start = m.last_seen if rule.kind == "silence" else m.down_since
                if start is None or start < 0 or m.status == HELD:
                    continue
                due = start + rule.after_ns
                if now >= due:
                    self._apply(ri, m, due, (True, (due - start) / 1e9, 0), late=False)
                else:
                    next_due = min(next_due, due)
        self._timed_due = next_due

    def _due(self, due: int) -> None:
        """A silence or offline deadline was (re)set: the next tick must look by then."""
        self._timed_due = min(self._timed_due, due)

    def _sweep(self, g: Group, now: int) -> None:
        flap, rule = g.rule.flap, g.rule
        if g.late and now - g.last_arrival >= rule.late_after_ns:
            # The backlog has drained: close the late episode where its readings ended,
            # and forget its members so that the next backlog starts afresh.
            ri = self.index[rule.name]
            for key in [k for k, m in self.late_members[ri].items()
                        if rule.group_key(m.tags) == g.key]:
                del self.late_members[ri][key]
            g.n_pending = g.n_held = 0
            g.levels.clear()
            g.last_input = Input.CLEAR
            self._transition(g, Input.CLEAR, g.last_t, g.value)
        elif g.state == State.FLAPPING and flap and now - g.last_change >= flap.quiet_ns:
            inp = Input.SETTLE_HELD if g.last_input == Input.HOLD else Input.SETTLE_CLEAR
            self._transition(g, inp, g.last_change + flap.quiet_ns, g.value)
        elif g.state in REPEATS_IN and rule.repeat_ns and now - g.last_notified >= rule.repeat_ns:
            # One reminder per tick even after a long pause, at the last due time.
            g.last_notified += (now - g.last_notified) // rule.repeat_ns * rule.repeat_ns
            self._emit(g, g.state, g.last_notified, g.value, notify=True, repeat=True)

    def readings(self, points: Iterable[PointLike]) -> list[AlertEvent]:
        for p in points:
            self._reading(p)
        return self._take()

    def _admit(self, tags: Mapping[str, str], identity: Identity | None, t: int) -> bool:
        """False for a resend or a reading from the future; learns where each gateway
        stands (for downlinks and offline)."""
        if self.now and t > self.now + self.limits.max_future_ns:
            # Stored by the collector, but no rule takes it: as live it would move the
            # series' last time and its clock periods ahead of every real reading.
            self.counts["future"] += 1
            return False
        gw = tags.get("gateway")
        if not gw:
            return True
        if identity is not None and not self.dedupe.first_time(gw, identity.epoch,
                                                               identity.seq):
            self.counts["duplicates"] += 1
            return False
        where = (tags.get("district"), tags.get("site"), tags.get("site_kind"))
        self.directory.learn(gw, where, {k: tags[k] for k in LOCATION_TAGS if tags.get(k)})
        return True

    def _reading(self, p: PointLike) -> None:
        tags, t, fields = p.tags, p.time_ns, p.fields
        if not self._admit(tags, p.identity, t):
            return
        self.counts["readings"] += 1
        gw = tags.get("gateway")
        route = self._route(p.measurement, tags, p.source)
        if not route:
            return
        series: Any = ((gw, tags["sensor"]) if gw and "sensor" in tags
                       else tuple(sorted(tags.items())))
        own_tags: dict[str, str] | None = None  # one copy, shared by the members it creates
        late_seen = False
        for ri in route:
            rule = self.rules.rules[ri]
            ops = KINDS[rule.kind]
            v = _number(fields.get(rule.field)) if ops.needs_field else 0.0
            if v is None or (rule.skip_out_of_range and _flagged(fields, rule.field)):
                continue
            key = rule.group_key(tags) if rule.pooled else series
            if rule.pooled and "" in key:
                continue  # e.g. a dead letter has no sensor: it cannot fall silent as one
            m = self.members[ri].seen(key)
            if m is None:
                own_tags = own_tags or dict(tags)
                m = self._member(ri, key, own_tags, late=False)
                if m is None:
                    continue  # refused: the rule's table is full of busy members
            live = t >= m.last_t and self.now - t < rule.late_after_ns
            if m.clock is not None:
                self.clock.reading(ri, m, t, v, live)
            else:
                self._series(ri, m, t, v, live)
            if not live:
                late_seen = True
                if rule.late_report:
                    self._late(ri, key, own_tags or dict(tags), t, v)
        if late_seen:
            self.counts["late"] += 1

    def _member(self, ri: int, key: tuple[str, ...], tags: dict[str, str], *,
                late: bool) -> Member | None:
        """A new member, if the rule's table has room or can make it (table.py)."""
        rule = self.rules.rules[ri]
        groups = self.late_groups[ri] if late else self.groups[ri]

        def forget(old: Member) -> None:  # its group goes too when nothing of it is left
            gkey = rule.group_key(old.tags)
            if (g := groups.get(gkey)) is not None and g.forgettable(self.now):
                del groups[gkey]

        table = self.late_members[ri] if late else self.members[ri]
        return table.admit(key, lambda: Member(rule, key, tags), forget)

    def _series(self, ri: int, m: Member, t: int, v: float, live: bool) -> None:
        """A reading for a rule on rolling statistics: absorbed, and judged when live."""
        rule = self.rules.rules[ri]
        ops = KINDS[rule.kind]
        ops.absorb(rule, m, t, v)
        if rule.pooled:
            self._due(m.last_seen + rule.after_ns)
        if live:
            m.last_t = t
            verdict = ops.judge(rule, m, t, v)
            if verdict is not None:
                self._apply(ri, m, t, verdict, late=False)

    def _route(self, measurement: str, tags: Mapping[str, str], source: str) -> tuple[int, ...]:
        """Indexes of the rules a reading of this measurement, tag set and source goes to
        (cached)."""
        route_key = (source, measurement, tuple(tags.items()))
        route = self._routes.get(route_key)
        if route is None:
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()
            route = tuple(i for i, r in enumerate(self.rules.rules)
                          if r.kind != "offline" and r.matches(measurement, tags, source))
            self._routes[route_key] = route
        return route

    def _late(self, ri: int, key: Any, tags: dict[str, str], t: int, v: float) -> None:
        """A late reading under a ``late: report`` rule: judged on the rule's late track."""
        rule = self.rules.rules[ri]
        ops = KINDS[rule.kind]
        lm = self.late_members[ri].seen(key) or self._member(ri, key, tags, late=True)
        if lm is None:
            return
        ops.absorb(rule, lm, t, v)
        if t < lm.last_t:
            return
        lm.last_t = t
        verdict = ops.judge(rule, lm, t, v)
        if verdict is not None:
            self._apply(ri, lm, t, verdict, late=True)
        g = self.late_groups[ri].get(rule.group_key(tags))
        if g is not None:
            g.last_arrival, g.last_t = self.now, t

    def status(self, s: Status) -> list[AlertEvent]:
        """A gateway went offline (last will) or came back online."""
        tags = {**self.directory.get(s.gateway, {}), "gateway": s.gateway}
        for ri in self._offline:
            rule = self.rules.rules[ri]
            if not rule.matches("", tags):
                continue
            key = (s.gateway,)
            m = self.members[ri].seen(key) or self._member(ri, key, tags, late=False)
            if m is None:
                continue
            m.tags = tags
            if s.online:
                m.down_since = None
                self._apply(ri, m, s.time_ns, (False, 0.0, 0), late=False)
            elif m.down_since is None:
                m.down_since = s.time_ns
                self._due(s.time_ns + rule.after_ns)
                if self.now >= s.time_ns + rule.after_ns:
                    self._apply(ri, m, s.time_ns + rule.after_ns,
                                (True, rule.after_ns / 1e9, 0), late=False)
        return self._take()

    def acknowledge(self, ack: Ack) -> list[AlertEvent]:
        """Raises UsageError for an id that is not open or an alert that is not firing."""
        g = self.by_id.get(ack.alert_id)
        if g is None:
            raise UsageError(f"no open alert {ack.alert_id}")
        if g.state not in ACKABLE:
            raise UsageError(f"alert {ack.alert_id} is {g.state.value}, not firing")
        self._transition(g, Input.ACK, max(ack.time_ns, g.last_change), g.value)
        return self._take()

    def add_silence(self, silence: Silence) -> None:
        self.silences[silence.id] = silence

    def remove_silence(self, silence_id: str) -> bool:
        return self.silences.pop(silence_id, None) is not None

    # -- the member -> group -> lifecycle path -------------------------------
    def _clock_move(self, ri: int, m: Member, change: Change) -> None:
        """A clock-mean rule judged a period: the member's new status (late when backfilled)."""
        m.raised = change.status != OK
        self._backfill = change.late
        try:
            self._move(ri, m, change.time_ns, change.status, value=change.value, level=0,
                       late=False)
        finally:
            self._backfill = False

    def _apply(self, ri: int, m: Member, t: int, verdict: Verdict, *, late: bool) -> None:
        assert verdict is not None
        raised, value, level = verdict
        new_status = hold(self.rules.rules[ri], m, t, raised)
        self._move(ri, m, t, new_status, value=value, level=level, late=late)

    def _move(self, ri: int, m: Member, t: int, new_status: int, *, value: float, level: int,
              late: bool) -> None:
        """The member's status is new_status: update its group and step the lifecycle."""
        rule = self.rules.rules[ri]
        old_status, old_level = m.status, m.level
        m.value = value
        if new_status == old_status and (new_status != HELD or level == old_level):
            return
        m.status, m.level = new_status, level
        groups = self.late_groups[ri] if late else self.groups[ri]
        gkey = rule.group_key(m.tags)
        g = groups.get(gkey)
        if g is None:
            g = groups[gkey] = Group(rule, gkey, rule.scope(m.tags), late)
        if old_status == PENDING:
            g.n_pending -= 1
        elif old_status == HELD:
            g.n_held -= 1
            g.levels[old_level] -= 1
        if new_status == PENDING:
            g.n_pending += 1
        elif new_status == HELD:
            g.n_held += 1
            g.levels[level] = g.levels.get(level, 0) + 1
        if late:
            g.last_arrival, g.last_t = self.now, t
        self._regroup(g, t, value)

    def _regroup(self, g: Group, t: int, value: float) -> None:
        inp = Input.HOLD if g.n_held else (Input.RAISE if g.n_pending else Input.CLEAR)
        level = max((lv for lv, n in g.levels.items() if n), default=0) if g.n_held else g.level
        if inp != g.last_input:
            g.last_change = t
            if inp == Input.HOLD:
                g.holds.append(t)
        g.last_input = inp
        flap = g.rule.flap
        if flap:
            while g.holds and g.holds[0] <= t - flap.window_ns:
                g.holds.popleft()
        step_inp = inp
        if inp == Input.HOLD:
            if g.state in (State.FIRING, State.ACKED) and level != g.level:
                step_inp = Input.LEVEL
            elif flap and len(g.holds) >= flap.count:
                step_inp = Input.HOLD_FLAPPING
        if g.state in QUIET or inp == Input.HOLD:
            g.level = level
        self._transition(g, step_inp, t, value)

    def _transition(self, g: Group, inp: Input, t: int, value: float) -> None:
        new, notify = step(g.state, inp)
        g.value = value
        if new == g.state and not notify:
            return
        if g.state in QUIET and new not in QUIET:
            g.alert_id = alert_id(g.rule.name, g.key, t, g.late)
            g.started, g.seq = t, 0
            self.by_id[g.alert_id] = g
            self.open[g] = None
        elif new in QUIET:
            self.open.pop(g, None)
            self.by_id.pop(g.alert_id, None)
        if notify:
            g.last_notified = t
        self._emit(g, new, t, value, notify=notify, repeat=False)

    def _emit(self, g: Group, new: State, t: int, value: float, *, notify: bool,
              repeat: bool) -> None:
        rule = g.rule
        previous, g.state = g.state, new
        g.seq += 1
        severity = rule.bands[g.level][0] if rule.bands else rule.severity
        members = g.n_held or g.n_pending
        values = _Safe(g.scope, rule=rule.name, severity=severity, state=new.value, value=value,
                       field=rule.field, members=members, level=severity, started=iso(g.started))
        if rule.message:
            message = rule.message.format_map(values)
        else:
            where = ", ".join(f"{k}={g.scope[k]}" for k in rule.scope_tags if k in g.scope)
            what = f"{rule.field} {value:g}" if rule.field else f"{value:g}"
            message = f"{rule.name} {new.value}: {what} ({where})"
        silenced = any(s.covers(rule.name, g.scope, t) for s in self.silences.values())
        self.counts["events"] += 1
        self._out.append(AlertEvent(
            alert_id=g.alert_id, seq=g.seq, rule=rule.name, state=new.value,
            previous=previous.value, severity=severity, time_ns=t, started_ns=g.started,
            value=value, message=message, scope=dict(g.scope), notify=notify,
            late=g.late or self._backfill,
            repeat=repeat, silenced=silenced, members=members,
            display=rule.display.format_map(values) if rule.display else ""))

    def _take(self) -> list[AlertEvent]:
        out, self._out = self._out, []
        return out

    # -- views ---------------------------------------------------------------
    def open_alerts(self) -> list[Group]:
        return sorted(self.open, key=lambda g: (g.started, g.rule.name, g.key))

    def gateways(self, match: Mapping[str, str]) -> list[str]:
        """Known gateways whose location tags equal every item of match (for downlinks)."""
        return sorted(gw for gw, tags in self.directory.items()
                      if all(tags.get(k) == v or (k == "gateway" and gw == v)
                             for k, v in match.items()))
