"""Rule specs compiled into what the engine runs: nanoseconds, matchers, per-schedule limits.

Compiling once at load keeps the per-reading work to dict lookups and float
comparisons. A rule's ``fingerprint`` changes with any key of it (and with its
file's time zone and schedules); saved state of a changed rule is dropped on
restore instead of being applied to a different rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from collector.alerts.clock import ClockSpec
from collector.alerts.errors import RuleError
from collector.alerts.rulefile import (
    GROUP_ALIASES,
    Limit,
    LoadedRules,
    RuleFile,
    RuleSpec,
    TagMatch,
    load_rule_file,
)
from collector.alerts.schedule import DAYS, Schedules, Window, load_zone, parse_hours
from collector.alerts.units import parse_duration

# group_by alias -> (tags that identify the alert, tags copied into its scope)
GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sensor": (("gateway", "sensor"), ("district", "site", "site_kind", "gateway", "sensor",
                                       "model")),
    "gateway": (("gateway",), ("district", "site", "site_kind", "gateway")),
    "site": (("district", "site"), ("district", "site", "site_kind")),
    "district": (("district",), ("district",)),
}
assert tuple(GROUPS) == GROUP_ALIASES
# How far back late readings re-judge a clock mean's periods unless the rule says.
DEFAULT_BACKFILL = "6h"


@dataclass(frozen=True, slots=True)
class Level:
    """A limit: one number, or one per named schedule (None outside every listed schedule)."""

    fixed: float | None
    table: Mapping[str, float] | None = None
    schedules: Schedules | None = None

    def at(self, time_ns: int) -> float | None:
        if self.fixed is not None:
            return self.fixed
        assert self.table is not None and self.schedules is not None
        name = self.schedules.at(time_ns)
        return None if name is None else self.table.get(name)


@dataclass(frozen=True, slots=True)
class Flap:
    count: int
    window_ns: int
    quiet_ns: int


def _match(spec: TagMatch) -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple(sorted((k, frozenset([v] if isinstance(v, str) else v)) for k, v in spec.items()))


class Rule:
    """One compiled rule; the engine keeps per-series state for it."""

    def __init__(self, spec: RuleSpec, file: RuleFile, schedules: Schedules, source: str) -> None:
        self.spec = spec
        self.source = source
        self.name = spec.name
        self.kind = spec.kind
        self.severity = spec.severity
        self.message = spec.message
        self.display = spec.display
        self.field = spec.field or ""
        match, exclude = dict(spec.match), dict(spec.exclude)
        m_in, m_out = match.pop("measurement", None), exclude.pop("measurement", None)
        self.measurements = None if m_in is None else _match({"m": m_in})[0][1]
        self.excluded_measurements = frozenset() if m_out is None else _match({"m": m_out})[0][1]
        self.match = _match(match)
        self.exclude = _match(exclude)
        self.sources = None if spec.sources is None else frozenset(spec.sources)
        groups = [spec.group_by] if isinstance(spec.group_by, str) else list(spec.group_by)
        if len(groups) == 1 and groups[0] in GROUPS:
            self.identity, self.scope_tags = GROUPS[groups[0]]
        else:
            self.identity = self.scope_tags = tuple(groups)
        # Silence and offline watch the group as a whole (a gateway is silent when
        # nothing at all arrives from it); the others evaluate each sensor's series.
        self.pooled = spec.kind in ("silence", "offline")
        self._limits(spec, schedules)
        self._kind_options(spec)
        self._clock(spec, schedules)
        d = file.defaults
        self.late_report = spec.late == "report"
        self.skip_out_of_range = spec.out_of_range == "skip"
        self.late_after_ns = parse_duration(spec.late_after or d.late_after)
        repeat = spec.repeat or d.repeat
        self.repeat_ns = None if repeat == "off" else parse_duration(repeat)
        flap = spec.flap or d.flap
        self.flap = (Flap(flap.count, parse_duration(flap.window), parse_duration(flap.quiet))
                     if flap.enabled else None)
        text = repr((spec, file.timezone, sorted(file.schedules.items()), d))
        if self.skip_out_of_range:  # only then: saved state of every other rule stays valid
            text += " out_of_range=skip"
        if self.sources is not None:
            text += f" sources={sorted(self.sources)}"
        self.fingerprint = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    def _limits(self, spec: RuleSpec, schedules: Schedules) -> None:
        def level(limit: Limit | None) -> Level | None:
            if limit is None:
                return None
            if isinstance(limit, dict):
                return Level(None, dict(limit), schedules)
            return Level(float(limit))

        self.direction = 1 if spec.above is not None else (-1 if spec.below is not None else 0)
        self.raise_level = level(spec.above if spec.above is not None else spec.below)
        self.clear_level = level(spec.clear) or self.raise_level
        self.low, self.high = level(spec.low), level(spec.high)

    def _kind_options(self, spec: RuleSpec) -> None:
        self.mean_step = self.mean_n = 0
        self.min_coverage = 0.0
        if spec.mean is not None:
            window = parse_duration(spec.mean.window)
            step = parse_duration(spec.mean.step) if spec.mean.step else max(window // 60, 1)
            self.mean_step, self.mean_n = step, max(window // step, 1)
            self.min_coverage = spec.mean.min_coverage
        self.round = spec.round
        self.bands = tuple((b.level, b.min) for b in spec.bands or ())
        names = [b[0] for b in self.bands]
        self.fire_from = names.index(spec.fire_from) if spec.fire_from else min(1, len(names) - 1)
        self.per_ns = parse_duration(spec.per) if spec.per else 0
        self.stuck_count = spec.count or 0
        self.stuck_ns = parse_duration(spec.duration) if spec.duration else 0
        self.tolerance = spec.tolerance or 0.0
        self.window_ns = parse_duration(spec.window) if spec.window else 0
        self.times = spec.times or 0
        self.after_ns = parse_duration(spec.after) if spec.after else 0
        self.hold_ns = parse_duration(spec.hold) if spec.hold else 0

    def _clock(self, spec: RuleSpec, schedules: Schedules) -> None:
        self.clock: ClockSpec | None = None
        self.consecutive = spec.consecutive or 1
        if spec.mean is None or not spec.mean.clock:
            return
        period = parse_duration(spec.mean.window)
        slot = parse_duration(spec.mean.step or spec.mean.window)
        backfill = parse_duration(spec.mean.backfill or DEFAULT_BACKFILL)
        keep = max(-(-backfill // period), 1) + 1
        self.clock = ClockSpec(schedules.zone, period, slot, min_coverage=spec.mean.min_coverage,
                               min_count=spec.mean.min_count or 1, keep=keep)
        self.mean_step = self.mean_n = 0  # no rolling window

    def matches(self, measurement: str, tags: Mapping[str, str], source: str = "uplink") -> bool:
        if self.sources is not None and source not in self.sources:
            return False
        if self.measurements is not None and measurement not in self.measurements:
            return False
        if measurement in self.excluded_measurements:
            return False
        for key, allowed in self.match:
            if tags.get(key) not in allowed:
                return False
        return all(tags.get(key) not in banned for key, banned in self.exclude)

    def group_key(self, tags: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(tags.get(t, "") for t in self.identity)

    def scope(self, tags: Mapping[str, str]) -> dict[str, str]:
        return {t: tags[t] for t in self.scope_tags if tags.get(t)}

    def __repr__(self) -> str:
        return f"<Rule {self.name} {self.kind}>"


def compile_file(loaded: LoadedRules, source: str) -> list[Rule]:
    spec = loaded.spec
    zone = load_zone(spec.timezone)
    windows = []
    for name, s in spec.schedules.items():
        start, end = parse_hours(s.hours)
        windows.append(Window(name, start, end, frozenset(DAYS.index(d) for d in s.days)))
    # Each rule gets its own Schedules (its one-slot cache must not thrash between rules).
    return [Rule(r, spec, Schedules(zone, tuple(windows)), source) for r in spec.rules]


class RuleSet:
    """The rules of one or more files; names are unique across all of them."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self.by_name = {r.name: r for r in self.rules}

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)


def load_rules(paths: Sequence[str]) -> RuleSet:
    """Load and check rule files; raises RuleError at the offending file:line."""
    rules: list[Rule] = []
    where: dict[str, str] = {}
    for path in paths:
        loaded = load_rule_file(path)
        for i, rule in enumerate(compile_file(loaded, path)):
            if rule.name in where:
                line = loaded.doc.line(("rules", i, "name"))
                raise RuleError(path, line, ("rules", i, "name"),
                                f"rule {rule.name!r} is already defined in {where[rule.name]}")
            where[rule.name] = path
            rules.append(rule)
    return RuleSet(rules)
