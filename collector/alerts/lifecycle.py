"""The alert lifecycle: every state, every input and every transition, in this one module.

Rule 1 (as in h11's _state.py): anything that changes an alert's state is a
row of ``TRANSITIONS``. The engine computes an input from the condition of an
alert's members and looks the move up here; it has no if-chain of its own.
``markdown()`` draws docs/alerts.md's state diagram and table from the same
dict, and a test keeps the document equal to it
(``python -m collector.alerts.diagram`` prints it).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    INACTIVE = "inactive"  # nothing wrong (or a pending alert withdrawn before it fired)
    PENDING = "pending"  # condition met, hold time not yet over
    FIRING = "firing"  # condition met for the hold time: notified
    ACKED = "acknowledged"  # firing, and a person said they are on it: no repeats
    FLAPPING = "flapping"  # fired too often within the flap window: notifications paused
    RESOLVED = "resolved"  # was firing, condition gone: notified


class Input(StrEnum):
    RAISE = "raise"  # some member meets the condition, none for its hold time yet
    HOLD = "hold"  # some member met the condition for its hold time
    HOLD_FLAPPING = "hold_flapping"  # HOLD again, with flap.count holds within flap.window
    CLEAR = "clear"  # no member meets the condition
    LEVEL = "level"  # still held, but the level (band, severity) changed
    ACK = "ack"  # acknowledged by a person (edge-collector alerts ack)
    SETTLE_HELD = "settle_held"  # flapping, quiet for flap.quiet, condition held
    SETTLE_CLEAR = "settle_clear"  # flapping, quiet for flap.quiet, condition not held


S, In = State, Input
# (state, input) -> (next state, notify). Every pair is listed; a test checks it.
TRANSITIONS: dict[tuple[State, Input], tuple[State, bool]] = {}


def _rows(state: State, moves: dict[Input, tuple[State, bool]]) -> None:
    for inp in Input:
        TRANSITIONS[(state, inp)] = moves.get(inp, (state, False))


_QUIET_MOVES = {
    In.RAISE: (S.PENDING, False),
    In.HOLD: (S.FIRING, True),
    In.HOLD_FLAPPING: (S.FLAPPING, True),
}
_rows(S.INACTIVE, _QUIET_MOVES)
_rows(S.RESOLVED, _QUIET_MOVES)
_rows(S.PENDING, {
    In.HOLD: (S.FIRING, True),
    In.HOLD_FLAPPING: (S.FLAPPING, True),
    In.CLEAR: (S.INACTIVE, False),
})
_rows(S.FIRING, {
    In.RAISE: (S.RESOLVED, True),
    In.CLEAR: (S.RESOLVED, True),
    In.LEVEL: (S.FIRING, True),
    In.ACK: (S.ACKED, True),
})
_rows(S.ACKED, {
    In.RAISE: (S.RESOLVED, True),
    In.CLEAR: (S.RESOLVED, True),
    In.LEVEL: (S.FIRING, True),
})
_rows(S.FLAPPING, {
    In.SETTLE_HELD: (S.FIRING, True),
    In.SETTLE_CLEAR: (S.RESOLVED, True),
})

# States in which no episode is open: leaving them starts a new alert (new alert id).
QUIET = frozenset({S.INACTIVE, S.RESOLVED})
# States that re-notify every `repeat` while they last.
REPEATS_IN = frozenset({S.FIRING})
# States a person can acknowledge.
ACKABLE = frozenset({S.FIRING})


def step(state: State, inp: Input) -> tuple[State, bool]:
    """The next state and whether the move is notified."""
    return TRANSITIONS[(state, inp)]


def edges() -> list[tuple[State, State, list[Input], bool]]:
    """Transitions that change something, grouped: (from, to, inputs, notify)."""
    grouped: dict[tuple[State, State, bool], list[Input]] = {}
    for (src, inp), (dst, notify) in TRANSITIONS.items():
        if src == dst and not notify:
            continue
        if src == S.RESOLVED and dst != S.RESOLVED:
            continue  # drawn once, from inactive: resolved behaves the same
        grouped.setdefault((src, dst, notify), []).append(inp)
    return [(s, d, inputs, n) for (s, d, n), inputs in grouped.items()]


def markdown() -> str:
    """The state diagram (Mermaid) and transition table for docs/alerts.md."""
    lines = ["```mermaid", "stateDiagram-v2", f"    [*] --> {S.INACTIVE.value}"]
    for src, dst, inputs, notify in edges():
        label = ", ".join(i.value for i in inputs) + (" (notify)" if notify else "")
        lines.append(f"    {src.value} --> {dst.value}: {label}")
    lines.append(f"    note right of {S.RESOLVED.value}: moves like {S.INACTIVE.value}")
    lines += ["```", "", "| state | " + " | ".join(i.value for i in Input) + " |",
              "| --- |" + " --- |" * len(Input)]
    for state in State:
        cells = []
        for inp in Input:
            dst, notify = TRANSITIONS[(state, inp)]
            cells.append(("**" + dst.value + "**" if notify else dst.value)
                         if (dst != state or notify) else "·")
        lines.append(f"| {state.value} | " + " | ".join(cells) + " |")
    lines += ["", "**bold**: the move is notified; ·: no change."]
    return "\n".join(lines) + "\n"

