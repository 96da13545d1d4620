"""The rule language: YAML bound to dataclasses by cityedge.yamlconfig, checked before use.

One ``RuleSpec`` dataclass carries every kind's keys; ``__post_init__`` refuses
keys a kind does not use and demands the ones it needs, so a typo or a
misplaced key is reported at its file:line like any other config error.
Cross-references (a per-schedule limit naming a schedule, ``fire_from`` naming
a band, unique rule names) are checked in ``check()`` with the parsed
document's line numbers. docs/alerts.md describes every key.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from dataclasses import field as dfield
from typing import Any, Literal

from cityedge import yamlconfig
from collector.alerts.errors import RuleError
from collector.alerts.schedule import DAYS, load_zone, parse_hours
from collector.alerts.units import parse_duration
from collector.lineprotocol import Source

Limit = float | dict[str, float]
TagMatch = dict[str, str | list[str]]
Kind = Literal["threshold", "band", "range", "rate", "stuck", "count", "silence", "offline"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Tag keys the engine writes itself on every alert point; a rule may not group by them.
RESERVED_TAGS = frozenset({"rule", "severity", "state", "alert_id"})
GROUP_ALIASES = ("sensor", "gateway", "site", "district")
# A window of more buckets than this costs more memory per series than it is worth.
MAX_BUCKETS = 1440
# A clock period's coverage slots are one bit each in one int per kept period.
MAX_CLOCK_SLOTS = 1440
# How far back late readings re-judge clock periods (also how many periods are kept).
MAX_BACKFILL = "2d"
MAX_BACKFILL_NS = parse_duration(MAX_BACKFILL)
DAY_NS = parse_duration("1d")

# Which keys each kind reads (besides the common ones); docs/alerts.md has one example each.
KIND_KEYS: dict[str, frozenset[str]] = {
    "threshold": frozenset({"field", "mean", "round", "above", "below", "clear", "hold",
                            "consecutive"}),
    "band": frozenset({"field", "mean", "round", "bands", "fire_from", "hold"}),
    "range": frozenset({"field", "mean", "round", "low", "high", "hold"}),
    "rate": frozenset({"field", "per", "above", "below", "clear", "hold"}),
    "stuck": frozenset({"field", "count", "duration", "tolerance"}),
    "count": frozenset({"field", "above", "below", "window", "times", "hold"}),
    "silence": frozenset({"after"}),
    "offline": frozenset({"after"}),
}
OPTIONAL_KEYS = frozenset().union(*KIND_KEYS.values())


def _duration(key: str, value: str | None, *, positive: bool = False) -> None:
    if value is None:
        return
    try:
        ns = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None
    if positive and ns <= 0:
        raise ValueError(f"{key}: expected a duration above 0, got {value!r}")


@dataclass(frozen=True)
class ScheduleSpec:
    hours: str = "00-24"
    days: list[Day] = dfield(default_factory=lambda: list(DAYS))  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        try:
            parse_hours(self.hours)
        except ValueError as exc:
            raise ValueError(f"hours: {exc}") from None
        if not self.days:
            raise ValueError("days: expected at least one day")


@dataclass(frozen=True)
class MeanSpec:
    window: str
    step: str | None = None
    min_coverage: float = dfield(default=0.0, metadata={"min": 0.0, "max": 1.0})
    # clock: means over completed local clock periods of `window` (e.g. hours)
    # instead of a rolling window; `step` is then the coverage slot.
    clock: bool = False
    min_count: int | None = dfield(default=None, metadata={"min": 1})
    backfill: str | None = None

    def __post_init__(self) -> None:
        _duration("window", self.window, positive=True)
        _duration("step", self.step, positive=True)
        _duration("backfill", self.backfill)
        window = parse_duration(self.window)
        step = parse_duration(self.step) if self.step else None
        if step is not None:
            if window % step:
                raise ValueError(f"step: {self.step} does not divide the window {self.window}")
            if window // step > MAX_BUCKETS:
                raise ValueError(f"step: {window // step} buckets; at most {MAX_BUCKETS}")
        if self.clock:
            if step is None:
                raise ValueError("step: a clock mean needs step, the coverage slot (e.g. 5m)")
            if DAY_NS % window:
                raise ValueError(f"window: a clock period must divide a day, got {self.window}")
            if window // step > MAX_CLOCK_SLOTS:
                raise ValueError(f"step: {window // step} slots; at most {MAX_CLOCK_SLOTS}")
            if self.backfill is not None and parse_duration(self.backfill) > MAX_BACKFILL_NS:
                raise ValueError(f"backfill: at most {MAX_BACKFILL}")
        else:
            for key in ("min_count", "backfill"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: only for a clock mean (clock: true)")


@dataclass(frozen=True)
class BandSpec:
    level: str
    min: float


@dataclass(frozen=True)
class FlapSpec:
    enabled: bool = True
    count: int = dfield(default=5, metadata={"min": 2})
    window: str = "1h"
    quiet: str = "30m"

    def __post_init__(self) -> None:
        _duration("window", self.window, positive=True)
        _duration("quiet", self.quiet, positive=True)


@dataclass(frozen=True)
class DefaultsSpec:
    late_after: str = "5m"
    repeat: str = "off"
    flap: FlapSpec = dfield(default_factory=FlapSpec)

    def __post_init__(self) -> None:
        _duration("late_after", self.late_after, positive=True)
        if self.repeat != "off":
            _duration("repeat", self.repeat, positive=True)


@dataclass(frozen=True)
class RuleSpec:
    name: str
    kind: Kind
    severity: str = "warning"
    description: str = ""
    message: str | None = None
    display: str | None = None
    match: TagMatch = dfield(default_factory=dict)
    exclude: TagMatch = dfield(default_factory=dict)
    group_by: str | list[str] = "sensor"
    late: Literal["ignore", "report"] = "ignore"
    # Which ways in the rule takes readings from (collector.lineprotocol.SOURCES); all
    # when left out. Out of the repr like out_of_range: other rules keep their fingerprint.
    sources: list[Source] | None = dfield(default=None, repr=False)
    # A value outside its sensor's datasheet range (the reading's out_of_range
    # field names it) is evaluated like any other, or skipped. Left out of the
    # repr so that rules which keep the default keep their fingerprint (rules.py).
    out_of_range: Literal["evaluate", "skip"] = dfield(default="evaluate", repr=False)
    late_after: str | None = None
    repeat: str | None = None
    # Mapping-valued keys are typed without "| None" (None is only the default)
    # so that yamlconfig reports a mistake inside them at its own key.
    flap: FlapSpec = None  # type: ignore[assignment]
    hold: str | None = None
    consecutive: int | None = dfield(default=None, metadata={"min": 1})
    mean: MeanSpec = None  # type: ignore[assignment]
    round: int | None = dfield(default=None, metadata={"min": 0, "max": 6})
    above: Limit | None = None
    below: Limit | None = None
    clear: Limit | None = None
    low: Limit | None = None
    high: Limit | None = None
    bands: list[BandSpec] = None  # type: ignore[assignment]
    fire_from: str | None = None
    per: str | None = None
    count: int | None = dfield(default=None, metadata={"min": 2})
    duration: str | None = None
    tolerance: float | None = dfield(default=None, metadata={"min": 0.0})
    window: str | None = None
    times: int | None = dfield(default=None, metadata={"min": 1})
    after: str | None = None
    field: str | None = None

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"name: expected lower_snake_case (a-z, 0-9, _), got {self.name!r}")
        used = KIND_KEYS[self.kind]
        for key in sorted(OPTIONAL_KEYS - used):
            if getattr(self, key) is not None:
                raise ValueError(f"{key}: not used by kind {self.kind!r} "
                                 f"(it reads: {', '.join(sorted(used))})")
        if "field" in used and not self.field:
            raise ValueError(f"field: kind {self.kind!r} needs the field to watch")
        for key in ("hold", "late_after", "per", "window"):
            _duration(key, getattr(self, key), positive=key != "hold")
        _duration("duration", self.duration, positive=True)
        _duration("after", self.after)
        if self.repeat not in (None, "off"):
            _duration("repeat", self.repeat, positive=True)
        self._check_kind()
        self._check_groups()

    def _check_kind(self) -> None:
        k = self.kind
        if k in ("threshold", "rate", "count") and (self.above is None) == (self.below is None):
            raise ValueError(f"above: kind {k!r} needs exactly one of above or below")
        if self.clear is not None and k == "count":
            raise ValueError("clear: kind 'count' clears when the count falls below times")
        if k == "range" and self.low is None and self.high is None:
            raise ValueError("low: kind 'range' needs low, high or both")
        if k == "band" and not self.bands:
            raise ValueError("bands: kind 'band' needs a list of {level, min}")
        if k == "stuck" and self.count is None and self.duration is None:
            raise ValueError("count: kind 'stuck' needs count, duration or both")
        if k == "count" and (self.window is None or self.times is None):
            raise ValueError(f"{'window' if self.window is None else 'times'}: "
                             "kind 'count' needs window and times")
        if k in ("silence", "offline") and self.after is None:
            raise ValueError(f"after: kind {k!r} needs after (how long without data)")
        if k == "rate" and self.per is None:
            raise ValueError("per: kind 'rate' needs per (the unit of time, e.g. 1m)")
        self._check_clock()

    def _check_clock(self) -> None:
        clock = self.mean is not None and self.mean.clock
        if self.consecutive is not None and not clock:
            raise ValueError("consecutive: counts clock periods; it needs mean.clock: true")
        if not clock:
            return
        if self.kind != "threshold":
            raise ValueError("mean: a clock mean is for kind 'threshold'")
        if self.hold is not None:
            raise ValueError("hold: a clock mean holds for `consecutive` periods, not a time")
        if self.late == "report":
            raise ValueError("late: a clock mean re-judges late readings itself (backfill)")

    def _check_groups(self) -> None:
        groups = [self.group_by] if isinstance(self.group_by, str) else self.group_by
        if not groups:
            raise ValueError("group_by: expected a tag or a list of tags")
        for tag in groups:
            if tag in RESERVED_TAGS:
                raise ValueError(f"group_by: {tag!r} is written by the engine itself")
        for key in (*self.match, *self.exclude):
            if key in RESERVED_TAGS:
                raise ValueError(f"match: {key!r} is not a reading tag")
        if self.sources is not None and not self.sources:
            raise ValueError("sources: expected at least one (or leave it out for all)")


@dataclass(frozen=True)
class RuleFile:
    rules: list[RuleSpec]
    version: Literal[1] = 1
    timezone: str = "Asia/Seoul"
    schedules: dict[str, ScheduleSpec] = dfield(default_factory=dict)
    defaults: DefaultsSpec = dfield(default_factory=DefaultsSpec)

    def __post_init__(self) -> None:
        try:
            load_zone(self.timezone)
        except ValueError as exc:
            raise ValueError(f"timezone: {exc}") from None


@dataclass(frozen=True)
class LoadedRules:
    spec: RuleFile
    doc: yamlconfig.Located


def _limits(rule: RuleSpec) -> dict[str, Limit]:
    keys = ("above", "below", "clear", "low", "high")
    return {k: getattr(rule, k) for k in keys if getattr(rule, k) is not None}


_SAMPLE = {"rule": "r", "severity": "s", "state": "firing", "value": 1.5, "field": "f",
           "members": 1, "level": "l", "started": "2024-01-01T00:00:00+09:00"}


class _Sample(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "x"


def _check_template(doc: yamlconfig.Located, path: yamlconfig.KeyPath, text: str) -> None:
    try:
        for _, name, _, _ in string.Formatter().parse(text):
            if name is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"placeholder {{{name}}} must be a plain name")
        text.format_map(_Sample(_SAMPLE))
    except (ValueError, IndexError, KeyError) as exc:
        raise doc.error(path, f"bad template: {exc}") from None


def _check_limits(spec: RuleFile, rule: RuleSpec, doc: yamlconfig.Located,
                  at: yamlconfig.KeyPath) -> None:
    for key, limit in _limits(rule).items():
        if not isinstance(limit, dict):
            continue
        if not limit:
            raise doc.error((*at, key), "expected a number or {schedule: number}")
        for sched in limit:
            if sched not in spec.schedules:
                known = ", ".join(sorted(spec.schedules)) or "none defined"
                raise doc.error((*at, key, sched),
                                f"unknown schedule {sched!r} (schedules: {known})")


def _check_bands(rule: RuleSpec, doc: yamlconfig.Located, at: yamlconfig.KeyPath) -> None:
    bands = rule.bands
    levels = [b.level for b in bands]
    if len(set(levels)) != len(levels):
        raise doc.error((*at, "bands"), "band levels must be unique")
    for j in range(1, len(bands)):
        if bands[j].min <= bands[j - 1].min:
            raise doc.error((*at, "bands", j, "min"), "band minimums must increase down the list")
    if rule.fire_from is not None and rule.fire_from not in levels:
        raise doc.error((*at, "fire_from"),
                        f"expected one of {', '.join(levels)}, got {rule.fire_from!r}")


def check(spec: RuleFile, doc: yamlconfig.Located) -> None:
    """Cross-references that need the whole file; raises ConfigError at the offending line."""
    seen: dict[str, int] = {}
    for i, rule in enumerate(spec.rules):
        at: yamlconfig.KeyPath = ("rules", i)
        if rule.name in seen:
            raise doc.error((*at, "name"), f"duplicate rule name {rule.name!r} "
                                           f"(also rules[{seen[rule.name]}])")
        seen[rule.name] = i
        _check_limits(spec, rule, doc, at)
        if rule.bands:
            _check_bands(rule, doc, at)
        for key in ("message", "display"):
            text = getattr(rule, key)
            if text is not None:
                _check_template(doc, (*at, key), text)


def parse_rules(text: str, file: str = "<rules>") -> LoadedRules:
    """Parse, bind and check one rule file's text; raises RuleError."""
    try:
        doc = yamlconfig.parse(text, file)
        spec = yamlconfig.bind(RuleFile, doc.data, doc)
        check(spec, doc)
    except yamlconfig.ConfigError as exc:
        raise RuleError(exc.file, exc.line, exc.path, exc.message) from None
    return LoadedRules(spec, doc)


def load_rule_file(path: str) -> LoadedRules:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise RuleError(str(path), None, (), f"cannot read: {exc.strerror}") from None
    return parse_rules(text, str(path))
