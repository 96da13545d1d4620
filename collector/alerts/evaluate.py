"""Per-kind evaluation of one series: what a reading does to a member's statistics and condition.

Two verbs per kind, looked up in ``KINDS`` (no if-chain in the engine):
``absorb`` adds a reading to order-independent statistics (window buckets,
exceedance times) and is called for late readings too; ``judge`` runs on
in-order live readings only and answers (raised, value, level), or None when
the rule cannot tell yet (too little data in the window, first reading of a
rate). A limit value itself counts as reached: ``above: 150`` is raised at
150, and ``clear: 100`` is cleared only below 100 (docs/alerts.md, "Limits").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from collector.alerts.clock import HELD, OK, PENDING, ClockHours
from collector.alerts.rules import Level, Rule
from collector.alerts.windows import Hits, MeanWindow

__all__ = ["HELD", "KINDS", "OK", "PENDING", "Member", "Verdict", "clock_step", "hold",
           "round_half_up"]
Verdict = tuple[bool, float, int] | None


class Member:
    """The state of one series (a sensor, or a whole group for silence/offline) under one rule."""

    __slots__ = ("clock", "down_since", "hits", "key", "last_seen", "last_t", "level", "prev_t",
                 "prev_v", "raised", "run_n", "run_t0", "run_v", "since", "status", "tags", "value",
                 "win")

    def __init__(self, rule: Rule, key: tuple[str, ...], tags: dict[str, str]) -> None:
        self.key = key
        self.tags = tags
        self.last_t = -1  # event time of the last in-order reading judged
        self.raised = False
        self.since: int | None = None  # event time the condition became true
        self.status = OK
        self.level = 0
        self.value = 0.0
        self.win = MeanWindow(rule.mean_step, rule.mean_n) if rule.mean_step else None
        self.clock = ClockHours() if rule.clock is not None else None
        self.hits = Hits(rule.window_ns) if rule.kind == "count" else None
        self.prev_t: int | None = None
        self.prev_v = 0.0
        self.run_v = 0.0
        self.run_n = 0
        self.run_t0 = 0
        self.last_seen = -1
        self.down_since: int | None = None


def _hysteresis(rule: Rule, m: Member, t: int, x: float) -> bool:
    """Raised at the raise level or beyond; once firing, cleared only strictly past clear.

    The clear level applies only to a member that has held (its alert fires):
    a pending condition must keep meeting the raise level for the whole hold.
    """
    level: Level | None = rule.clear_level if m.status == HELD else rule.raise_level
    assert level is not None
    limit = level.at(t)
    if limit is None:  # outside every schedule the rule names: the rule does not apply
        return False
    # The same comparison both ways; only the level differs (raise vs clear).
    return x >= limit if rule.direction > 0 else x <= limit


def _signal(rule: Rule, m: Member, v: float) -> float | None:
    x: float | None = m.win.mean(rule.min_coverage) if m.win is not None else v
    if x is not None and rule.round is not None:
        x = round_half_up(x, rule.round)
    return x


def round_half_up(x: float, digits: int) -> float:
    """Round as published tables do (30.5 -> 31), not banker's rounding (round(30.5) == 30)."""
    scale: int = 10**digits
    return float(int(x * scale + (0.5 if x >= 0 else -0.5))) / scale


def _absorb_mean(rule: Rule, m: Member, t: int, v: float) -> None:
    if m.win is not None:
        m.win.add(t, v)


def _absorb_hits(rule: Rule, m: Member, t: int, v: float) -> None:
    assert rule.raise_level is not None and m.hits is not None
    limit = rule.raise_level.at(t)
    if limit is not None and (v >= limit if rule.direction > 0 else v <= limit):
        m.hits.add(t)


def _absorb_nothing(rule: Rule, m: Member, t: int, v: float) -> None:
    return None


def _absorb_seen(rule: Rule, m: Member, t: int, v: float) -> None:
    m.last_seen = max(m.last_seen, t)


def _judge_threshold(rule: Rule, m: Member, t: int, v: float) -> Verdict:
    x = _signal(rule, m, v)
    return None if x is None else (_hysteresis(rule, m, t, x), x, 0)


def _judge_band(rule: Rule, m: Member, t: int, v: float) -> Verdict:
    x = _signal(rule, m, v)
    if x is None:
        return None
    level = -1
    for i, (_, low) in enumerate(rule.bands):
        if x >= low:
            level = i
    return (level >= rule.fire_from, x, max(level, 0))


def _judge_range(rule: Rule, m: Member, t: int, v: float) -> Verdict:
    x = _signal(rule, m, v)
    if x is None:
        return None
    low = rule.low.at(t) if rule.low is not None else None
    high = rule.high.at(t) if rule.high is not None else None
    out = (low is not None and x <= low) or (high is not None and x >= high)
    return (out, x, 0)


def _judge_rate(rule: Rule, m: Member, t: int, v: float) -> Verdict:
    prev_t, prev_v = m.prev_t, m.prev_v
    m.prev_t, m.prev_v = t, v
    if prev_t is None or t <= prev_t:
        return None
    rate = (v - prev_v) * rule.per_ns / (t - prev_t)
    return (_hysteresis(rule, m, t, rate), rate, 0)


def _judge_stuck(rule: Rule, m: Member, t: int, v: float) -> Verdict:
    if m.run_n and abs(v - m.run_v) <= rule.tolerance:
        m.run_n += 1
    else:
        m.run_v, m.run_n, m.run_t0 = v, 1, t
    stuck = bool(rule.stuck_count and m.run_n >= rule.stuck_count) or bool(
        rule.stuck_ns and t - m.run_t0 >= rule.stuck_ns)
    return (stuck, float(m.run_n), 0)


def _judge_count(rule: Rule, m: Member, t: int, v: float) -> Verdict:
    assert m.hits is not None
    n = m.hits.count(t)
    return (n >= rule.times, float(n), 0)


def _judge_seen(rule: Rule, m: Member, t: int, v: float) -> Verdict:
    return (False, 0.0, 0)


@dataclass(frozen=True, slots=True)
class KindOps:
    absorb: Callable[[Rule, Member, int, float], None]
    judge: Callable[[Rule, Member, int, float], Verdict]
    needs_field: bool = True


KINDS: dict[str, KindOps] = {
    "threshold": KindOps(_absorb_mean, _judge_threshold),
    "band": KindOps(_absorb_mean, _judge_band),
    "range": KindOps(_absorb_mean, _judge_range),
    "rate": KindOps(_absorb_nothing, _judge_rate),
    "stuck": KindOps(_absorb_nothing, _judge_stuck),
    "count": KindOps(_absorb_hits, _judge_count),
    "silence": KindOps(_absorb_seen, _judge_seen, needs_field=False),
    "offline": KindOps(_absorb_nothing, _judge_seen, needs_field=False),
}


def hold(rule: Rule, m: Member, t: int, raised: bool) -> int:
    """Apply the hold time: the member's new status (OK, PENDING, HELD) at event time t."""
    m.raised = raised
    if not raised:
        m.since = None
        return OK
    if m.since is None:
        m.since = t
    return HELD if t - m.since >= rule.hold_ns else PENDING


def clock_step(rule: Rule) -> Callable[[int, int, float | None, int], tuple[int, int]]:
    """How one completed clock period moves a member: (status, run, mean, start) -> (status, run).

    ``run`` counts consecutive covered periods at or past the raise level;
    ``consecutive`` of them hold. Once held, a period strictly past the clear
    level lifts; an uncovered period (mean None) withdraws a pending run and
    leaves a held one as it is.
    """
    need = rule.consecutive
    raise_level, clear_level = rule.raise_level, rule.clear_level
    assert raise_level is not None and clear_level is not None

    def reached(limit: float | None, x: float) -> bool:
        if limit is None:  # outside every schedule the rule names
            return False
        return x >= limit if rule.direction > 0 else x <= limit

    def step(status: int, run: int, mean: float | None, start: int) -> tuple[int, int]:
        if mean is None:
            return (status, run) if status == HELD else (OK, 0)
        x = mean if rule.round is None else round_half_up(mean, rule.round)
        if status == HELD:
            return (HELD, run) if reached(clear_level.at(start), x) else (OK, 0)
        if not reached(raise_level.at(start), x):
            return OK, 0
        return (HELD, run + 1) if run + 1 >= need else (PENDING, run + 1)

    return step
