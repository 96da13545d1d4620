"""One alert instance: a rule and the tag values it groups by, with its lifecycle state.

The engine keeps one ``Group`` per rule and scope (and one more per scope on
a ``late: report`` rule's late track); snapshot.py saves and restores them.
"""

from __future__ import annotations

from collections import deque

from collector.alerts.lifecycle import QUIET, Input, State
from collector.alerts.rules import Rule


class Group:
    """One alert instance: a rule and the tag values it groups by, with its lifecycle state."""

    __slots__ = ("alert_id", "holds", "key", "last_arrival", "last_change", "last_input",
                 "last_notified", "last_t", "late", "level", "levels", "n_held", "n_pending",
                 "rule", "scope", "seq", "started", "state", "value")

    def __init__(self, rule: Rule, key: tuple[str, ...], scope: dict[str, str], late: bool) -> None:
        self.rule, self.key, self.scope, self.late = rule, key, scope, late
        self.state = State.INACTIVE
        self.alert_id = ""
        self.seq = 0
        self.started = 0
        self.n_pending = self.n_held = 0
        self.levels: dict[int, int] = {}
        self.level = 0
        self.value = 0.0
        self.last_input = Input.CLEAR
        self.last_change = 0
        self.last_notified = 0
        self.last_arrival = 0  # engine time the last late reading for it arrived
        self.last_t = 0  # event time of that reading
        self.holds: deque[int] = deque()

    def forgettable(self, now: int) -> bool:
        """Quiet, no member holds it up, no flap history that still counts: nothing to keep."""
        flap = self.rule.flap
        return (self.state in QUIET and not self.n_pending and not self.n_held
                and (flap is None or not self.holds or self.holds[-1] <= now - flap.window_ns))


