"""docs/alerts.md: its config sample loads, and every rule kind and shipped rule file is covered."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cityedge import yamlconfig
from collector.alerts.config import load_alerts
from collector.alerts.rulefile import KIND_KEYS
from tests.alerts_helpers import rules_from_text

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")


def test_the_alerts_sample_is_a_valid_section() -> None:
    found = re.search(r"<!-- alerts sample.*?-->\n```yaml\n(.*?)```\n<!-- end alerts sample -->",
                      DOC, re.S)
    assert found, "docs/alerts.md lost its alerts sample markers"
    doc = yamlconfig.parse(found.group(1), "docs/alerts.md")
    loaded = load_alerts(doc.data["alerts"], doc, ROOT)
    assert len(loaded.rules) == 19
    assert [name for name, _, _ in loaded.notifiers] == ["log", "webhook", "mqtt_downlink"]


def test_one_example_per_kind_and_each_example_is_a_valid_rule() -> None:
    examples = re.findall(r"```yaml\n(- name: .*?)```", DOC, re.S)
    kinds = [yaml.safe_load(text)[0]["kind"] for text in examples]
    assert sorted(kinds) == sorted(KIND_KEYS)
    text = "schedules:\n  day: {hours: '06-22'}\n  night: {hours: '22-06'}\nrules:\n"
    text += "".join("  " + line + "\n" for ex in examples for line in ex.splitlines())
    assert len(rules_from_text(text, "docs/alerts.md")) == len(KIND_KEYS)
