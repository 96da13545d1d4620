"""The transition table is complete, and docs/alerts.md shows the diagram drawn from it."""

from __future__ import annotations

import re
from pathlib import Path

from collector.alerts.lifecycle import QUIET, TRANSITIONS, Input, State, markdown, step

ROOT = Path(__file__).resolve().parents[3]


def test_every_state_has_a_row_for_every_input() -> None:
    assert set(TRANSITIONS) == {(s, i) for s in State for i in Input}


def test_only_firing_and_its_ends_are_notified() -> None:
    notified = {dst for (_, _), (dst, notify) in TRANSITIONS.items() if notify}
    assert notified == {State.FIRING, State.RESOLVED, State.ACKED, State.FLAPPING}
    assert not any(n for (src, _), (dst, n) in TRANSITIONS.items() if dst == State.PENDING)


def test_resolved_moves_like_inactive() -> None:
    for inp in Input:
        a, b = step(State.INACTIVE, inp), step(State.RESOLVED, inp)
        stays = a == (State.INACTIVE, False)
        assert b == ((State.RESOLVED, False) if stays else a), inp


def test_quiet_states_cannot_be_reached_from_firing_silently() -> None:
    for (src, _), (dst, notify) in TRANSITIONS.items():
        if src in (State.FIRING, State.ACKED, State.FLAPPING) and dst in QUIET:
            assert notify, (src, dst)


def test_docs_show_the_generated_diagram() -> None:
    text = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- lifecycle: generated.*?-->\n(.*?)<!-- end lifecycle -->", text, re.S)
    assert found, "docs/alerts.md lost its lifecycle markers"
    assert found.group(1) == markdown(), (
        "docs/alerts.md's diagram has drifted: paste `python -m collector.alerts.diagram`")
