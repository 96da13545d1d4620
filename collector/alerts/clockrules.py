"""The engine's rules on clock-period means: feeding readings, judging due periods.

A reading for such a rule goes into its series' kept periods
(collector.alerts.clock): a live one judges the periods it completes, a late
one re-judges them when it changed one already judged. ``scan(now)`` judges
the periods of series that went quiet once ``late_after`` has passed their
end; ``due`` says when the next scan can find something, so the engine's
tick costs nothing in between. What a judgement changes goes to ``move``,
the engine's member -> group -> lifecycle path; ``Change.late`` marks one made
on readings that arrived late (backfilled).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from collector.alerts.clock import Change, Step
from collector.alerts.evaluate import Member, clock_step, round_half_up
from collector.alerts.rules import RuleSet

Members = Sequence[Mapping[tuple[str, ...], Member]]  # per rule: series key -> member
Move = Callable[[int, Member, Change], None]  # (rule index, member, change)
NEVER = 1 << 62


class ClockRules:
    def __init__(self, rules: RuleSet, members: Members, move: Move) -> None:
        self.rules = rules.rules
        self.members = members
        self.move = move
        self.steps: dict[int, Step] = {i: clock_step(r) for i, r in enumerate(self.rules)
                                       if r.clock is not None}
        self.due = 0  # no period is due to be judged before this engine time
        # Readings older than every kept period of their series (beyond `backfill`):
        # stored by the collector, but no clock-mean rule can judge them any more.
        self.too_old = 0

    def reading(self, ri: int, m: Member, t: int, v: float, live: bool) -> None:
        """A reading for a clock-mean rule: judge the periods it completes, or re-judge."""
        rule, c = self.rules[ri], m.clock
        assert rule.clock is not None and c is not None
        k = c.add(rule.clock, t, v, not live)
        if k is None:
            self.too_old += 1
        if live:
            m.last_t = t
            through = (k if k is not None else rule.clock.index(t)) - 1
            self._changes(ri, m, c.evaluate(rule.clock, self.steps[ri], through))
        elif k is not None and c.done is not None and k <= c.done:
            change = c.replay(rule.clock, self.steps[ri])
            if change is not None:
                self._changes(ri, m, [change])
        due = c.due(rule.clock, rule.late_after_ns)
        if due is not None:
            self.due = min(self.due, due)

    def scan(self, now: int) -> None:
        """Judge the periods of series that went quiet, once late_after has passed their end."""
        next_due = NEVER
        for ri, step in self.steps.items():
            rule = self.rules[ri]
            assert rule.clock is not None
            through = rule.clock.index(now - rule.late_after_ns) - 1
            for m in list(self.members[ri].values()):
                c = m.clock
                assert c is not None
                due = c.due(rule.clock, rule.late_after_ns)
                if due is not None and due <= now:
                    self._changes(ri, m, c.evaluate(rule.clock, step, through))
                    due = c.due(rule.clock, rule.late_after_ns)
                if due is not None:
                    next_due = min(next_due, due)
        self.due = next_due

    def _changes(self, ri: int, m: Member, changes: list[Change]) -> None:
        digits = self.rules[ri].round
        for ch in changes:
            value = ch.value if digits is None else round_half_up(ch.value, digits)
            self.move(ri, m, Change(ch.time_ns, ch.status, value, ch.late))
