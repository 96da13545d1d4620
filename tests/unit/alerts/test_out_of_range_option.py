"""A value flagged out of range (outside the sensor's datasheet range) counts, unless a rule skips.

The agent keeps such a reading and names the fields in its ``out_of_range``
field (docs/profiles.md); rules evaluate them by default, because a sensor
saturating in smoke is the moment an advisory matters; ``out_of_range: skip``
leaves them out of that rule only.
"""

from __future__ import annotations

import pytest

from collector.alerts import Engine
from collector.alerts.errors import RuleError
from tests.alerts_helpers import rules_from_text
from tests.unit.alerts.timeline import R, at, run

RULE = "  - {{name: pm, kind: threshold, field: pm2_5_ugm3, above: 1000{extra}}}\n"
SMOKE: dict[str, float | bool | str] = {
    "pm2_5_ugm3": 1780.0, "pm10_ugm3": 1949.0, "out_of_range": "pm2_5_ugm3,pm10_ugm3"}


def engine(extra: str = "") -> Engine:
    return Engine(rules_from_text("defaults: {flap: {enabled: false}}\nrules:\n"
                                  + RULE.format(extra=extra)))


def test_flagged_values_are_evaluated_by_default() -> None:
    steps = [R(at("03-04 10:00"), SMOKE), R(at("03-04 10:01"), {"pm2_5_ugm3": 20.0})]
    assert run(engine(), steps) == [("03-04 10:00", "pm", "firing", 1780.0),
                                    ("03-04 10:01", "pm", "resolved", 20.0)]


def test_skip_leaves_out_only_the_flagged_field() -> None:
    steps = [R(at("03-04 10:00"), SMOKE),
             R(at("03-04 10:01"), {**SMOKE, "out_of_range": "pm10_ugm3"}),  # pm2_5 not flagged
             R(at("03-04 10:02"), {"pm2_5_ugm3": 20.0})]
    assert run(engine(", out_of_range: skip"), steps) == [
        ("03-04 10:01", "pm", "firing", 1780.0),
        ("03-04 10:02", "pm", "resolved", 20.0),
    ]


def test_the_option_is_checked_and_changes_the_fingerprint_only_when_set() -> None:
    default, explicit, skip = (engine(extra).rules.rules[0] for extra in (
        "", ", out_of_range: evaluate", ", out_of_range: skip"))
    assert default.fingerprint == explicit.fingerprint != skip.fingerprint
    wanted = r"rules\[0\]\.out_of_range: expected one of 'evaluate', 'skip'"
    with pytest.raises(RuleError, match=wanted):
        engine(", out_of_range: drop")
