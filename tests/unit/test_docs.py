"""The README shows the shipped sample configs verbatim, and the samples are valid."""

from __future__ import annotations

import re
from pathlib import Path

from collector.config import load_config as load_collector
from edge_agent.config import load_config as load_agent

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = re.compile(r"<!-- include: (\S+) -->\n```\w*\n(.*?)```\n<!-- end include -->", re.S)


def test_readme_includes_match_their_files() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = INCLUDE.findall(readme)
    assert {path for path, _ in found} >= {"configs/agent.sample.yaml",
                                           "configs/collector.sample.yaml"}
    for path, body in found:
        assert body == (ROOT / path).read_text(encoding="utf-8"), (
            f"README.md's copy of {path} has drifted: paste the file between its include markers"
        )


def test_sample_configs_are_valid() -> None:
    agent = load_agent(ROOT / "configs" / "agent.sample.yaml")
    assert agent.gateway.site.district == "강남구"
    assert agent.sensors[0].profile == "pms5003"
    collector = load_collector(ROOT / "configs" / "collector.sample.yaml").config
    assert collector.writer["type"] == "influxdb_v1"
