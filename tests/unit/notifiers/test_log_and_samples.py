"""The log notifier's lines, and every notifier folder's sample.yaml and README staying in step."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import pytest
import yaml

from collector.alerts import AlertEvent
from collector.notifiers import REGISTRY, NotifierContext
from collector.notifiers.log import LogConfig, LogNotifier, format_event
from tests.alerts_helpers import parse_alerts

ROOT = Path(__file__).resolve().parents[3]
PLUGINS = ROOT / "collector" / "notifiers"
INCLUDE = re.compile(r"<!-- include: sample.yaml -->\n```yaml\n(.*?)```\n<!-- end include -->",
                     re.S)
FOLDERS = sorted(p.name for p in PLUGINS.iterdir() if (p / "__init__.py").exists())
EVENT = AlertEvent(alert_id="a1b2c3d4e5f60718", seq=2, rule="pm10_advisory", state="firing",
                   previous="pending", severity="advisory", time_ns=1709514000000000000,
                   started_ns=1709506800000000000, value=163.0,
                   message="PM10 advisory (firing) in 강남구: hourly mean 163 ug/m3",
                   scope={"district": "강남구"}, notify=True, repeat=True)


def test_text_line() -> None:
    assert format_event(EVENT, "text") == (
        "2024-03-04T01:00:00Z FIRING pm10_advisory (advisory) value=163 district=강남구 "
        "id=a1b2c3d4e5f60718:2 [repeat]: PM10 advisory (firing) in 강남구: hourly mean 163 ug/m3")


def test_log_notifier_logs_at_its_level(caplog: pytest.LogCaptureFixture) -> None:
    n = LogNotifier(LogConfig(level="error", format="json", logger="t.alerts"))
    asyncio.run(n.start(NotifierContext()))
    with caplog.at_level(logging.DEBUG, logger="t.alerts"):
        asyncio.run(n.send(EVENT))
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert json.loads(record.getMessage())["event_id"] == "a1b2c3d4e5f60718:2"
    assert n.stats() == {"sent": 1}


def test_every_folder_registers_its_plugin() -> None:
    assert FOLDERS == ["log", "mqtt_downlink", "webhook"]
    assert set(FOLDERS) <= set(REGISTRY)


@pytest.mark.parametrize("name", FOLDERS)
def test_each_plugin_folder_is_complete(name: str) -> None:
    folder = PLUGINS / name
    sample = (folder / "sample.yaml").read_text(encoding="utf-8")
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "## Example output" in readme
    found = INCLUDE.search(readme)
    assert found, f"{name}/README.md has no sample.yaml include block"
    assert found.group(1) == sample, f"{name}/README.md's copy of sample.yaml has drifted"
    [entry] = yaml.safe_load(sample)
    assert entry["type"] == name


@pytest.mark.parametrize("name", FOLDERS)
def test_each_sample_is_a_valid_notifier_entry(name: str, tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("rules: []\n")
    sample = (PLUGINS / name / "sample.yaml").read_text(encoding="utf-8")
    text = "rules: [r.yaml]\nnotifiers:\n" + "".join("  " + line + "\n"
                                                    for line in sample.splitlines())
    loaded = parse_alerts(text, tmp_path)
    [(instance, _, notifier)] = loaded.notifiers
    assert instance == name and notifier.name == name
