"""Rule files: every mistake is reported at its file:line and key path, before anything runs."""

from __future__ import annotations

import textwrap

import pytest

from collector.alerts import RuleError
from collector.alerts.rulefile import KIND_KEYS, parse_rules
from collector.alerts.units import parse_duration
from tests.alerts_helpers import rules_from_text

ONE_OF_EACH = """
schedules:
  day: {hours: "06-22"}
  night: {hours: "22-06"}
rules:
  - {name: t, kind: threshold, field: x, above: 10, clear: 8, hold: 5m,
     mean: {window: 1h, step: 5m, min_coverage: 0.5}, round: 0}
  - {name: b, kind: band, field: x, bands: [{level: good, min: 0}, {level: bad, min: 10}]}
  - {name: r, kind: range, field: x, low: 1, high: {day: 5, night: 4}}
  - {name: ra, kind: rate, field: x, per: 1m, above: 3}
  - {name: s, kind: stuck, field: x, count: 10, duration: 1h, tolerance: 0.1}
  - {name: c, kind: count, field: x, above: {day: 57, night: 52}, window: 1h, times: 3}
  - {name: si, kind: silence, after: 10m, group_by: gateway}
  - {name: o, kind: offline, after: 1m}
"""


def test_one_rule_of_each_kind_loads() -> None:
    rules = rules_from_text(ONE_OF_EACH)
    assert [r.kind for r in rules] == list(KIND_KEYS)
    t = rules.by_name["t"]
    assert (t.mean_step, t.mean_n, t.hold_ns) == (5 * 60 * 10**9, 12, 5 * 60 * 10**9)
    assert rules.by_name["b"].fire_from == 1  # default: every band above the first


CASES = [
    ("missing above/below",
     "rules:\n  - name: a\n    kind: threshold\n    field: x\n",
     "f.yaml:2: rules[0].above: ", "needs exactly one of above or below"),
    ("key of another kind",
     "rules:\n  - name: a\n    kind: silence\n    after: 1m\n    field: x\n",
     "f.yaml:5: rules[0].field: ", "not used by kind 'silence'"),
    ("typo in a key",
     "rules:\n  - name: a\n    kind: silence\n    afer: 1m\n",
     "f.yaml:4: rules[0].afer: ", "unknown key 'afer'"),
    ("bad duration",
     "rules:\n  - name: a\n    kind: threshold\n    field: x\n    above: 1\n    hold: 2 hours\n",
     "f.yaml:6: rules[0].hold: ", "expected a duration like 90s"),
    ("step does not divide window",
     "rules:\n  - name: a\n    kind: threshold\n    field: x\n    above: 1\n"
     "    mean:\n      window: 1h\n      step: 7m\n",
     "f.yaml:8: rules[0].mean.step: ", "7m does not divide the window 1h"),
    ("unknown schedule",
     "schedules:\n  day: {hours: 06-22}\nrules:\n  - name: a\n    kind: threshold\n"
     "    field: x\n    above:\n      day: 39\n      nite: 34\n",
     "f.yaml:9: rules[0].above.nite: ", "unknown schedule 'nite' (schedules: day)"),
    ("bad hours",
     "schedules:\n  day: {hours: 6 to 22}\nrules: []\n",
     "f.yaml:2: schedules.day.hours: ", "expected hours like 06-22"),
    ("bad weekday",
     "schedules:\n  day:\n    days: [mon, tues]\nrules: []\n",
     "f.yaml:3: schedules.day.days[1]: ", "expected one of 'mon'"),
    ("duplicate name",
     "rules:\n  - {name: a, kind: silence, after: 1m}\n  - {name: a, kind: silence, after: 2m}\n",
     "f.yaml:3: rules[1].name: ", "duplicate rule name 'a' (also rules[0])"),
    ("bands out of order",
     "rules:\n  - name: a\n    kind: band\n    field: x\n    bands:\n"
     "      - {level: good, min: 10}\n      - {level: bad, min: 5}\n",
     "f.yaml:7: rules[0].bands[1].min: ", "band minimums must increase"),
    ("fire_from not a band",
     "rules:\n  - name: a\n    kind: band\n    field: x\n    fire_from: awful\n    bands:\n"
     "      - {level: good, min: 0}\n",
     "f.yaml:5: rules[0].fire_from: ", "expected one of good, got 'awful'"),
    ("template placeholder",
     "rules:\n  - name: a\n    kind: silence\n    after: 1m\n    message: '{value.real} gone'\n",
     "f.yaml:5: rules[0].message: ", "must be a plain name"),
    ("bad name", "rules:\n  - {name: PM10-Alert, kind: silence, after: 1m}\n",
     "f.yaml:2: rules[0].name: ", "lower_snake_case"),
    ("grouping by a reserved tag",
     "rules:\n  - {name: a, kind: silence, after: 1m, group_by: [state]}\n",
     "f.yaml:2: rules[0].group_by: ", "written by the engine"),
    ("unknown time zone", "timezone: Asia/Busan\nrules: []\n",
     "f.yaml:1: timezone: ", "unknown time zone 'Asia/Busan'"),
    ("coverage above 1",
     "rules:\n  - name: a\n    kind: threshold\n    field: x\n    above: 1\n"
     "    mean: {window: 1h, min_coverage: 1.5}\n",
     "f.yaml:6: rules[0].mean.min_coverage: ", "expected <= 1.0"),
    ("not YAML", "rules: [\n", "f.yaml:2: <top>: ", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "where", "what"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_errors_name_file_line_key_and_expectation(text: str, where: str, what: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(textwrap.dedent(text), "f.yaml")
    message = str(info.value)
    assert message.startswith(where), message
    assert what in message, message


@pytest.mark.parametrize(("text", "ns"), [("90s", 90 * 10**9), ("10m", 600 * 10**9),
                                          ("1h30m", 5400 * 10**9), ("24h", 86400 * 10**9),
                                          ("250ms", 250 * 10**6), ("0s", 0)])
def test_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


def test_changing_a_rule_changes_its_fingerprint_only() -> None:
    a = rules_from_text(ONE_OF_EACH)
    b = rules_from_text(ONE_OF_EACH.replace("count: 10,", "count: 11,"))
    changed = {r.name for r in a if r.fingerprint != b.by_name[r.name].fingerprint}
    assert changed == {"s"}
