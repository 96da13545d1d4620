"""The commented sample config for each kind of site (configs/agent.<site>.sample.yaml) is
one `edge-agent check` accepts once its ports and paths are this machine's: the text is
the shipped file's, only its device paths and /etc, /var/lib and /run folders moved."""

from __future__ import annotations

import os
import pty
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cityedge import shipped
from edge_agent import cli

KINDS = {"dust_pole": "dust_zone", "bus_stop": "bus_stop", "apartment": "apartment"}


@pytest.fixture
def ptys() -> Iterator[list[str]]:
    """Ports that exist: pseudo-terminals' follower sides."""
    pairs = [pty.openpty() for _ in range(4)]
    try:
        yield [os.ttyname(follower) for _, follower in pairs]
    finally:
        for pair in pairs:
            for fd in pair:
                os.close(fd)


def installed_here(text: str, folder: Path, ports: list[str]) -> str:
    """The sample as installed on this machine: each port a pty, the packaged folders
    under ``folder`` (the config's own folder stays where the file is)."""
    free = iter(ports)
    text = re.sub(r"(?m)^(\s+port: )/dev/\S+$", lambda m: m.group(1) + next(free), text)
    for packaged in ("/var/lib/cityedge", "/run/cityedge"):
        text = text.replace(packaged, str(folder / "state"))
    return text.replace("outbox:\n", f"outbox:\n  path: {folder / 'state' / 'outbox.sqlite'}\n")


@pytest.mark.parametrize("site", shipped.SITE_SAMPLES)
def test_each_site_sample_passes_check(site: str, tmp_path: Path, ptys: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    sample = shipped.site_sample(site)
    text = sample.read_text(encoding="utf-8")
    config = tmp_path / "agent.yaml"
    config.write_text(installed_here(text, tmp_path, ptys), encoding="utf-8")
    (tmp_path / "gateway.secret").write_text("s3cret-from-the-registry\n")
    (tmp_path / "state").mkdir()
    assert cli.main(["check", "--config", str(config)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    doc = yaml.safe_load(text)
    assert f"{config}: ok ({len(doc['sensors'])} sensors" in out
    assert doc["gateway"]["site"]["kind"] == KINDS[site]


@pytest.mark.parametrize("site", shipped.SITE_SAMPLES)
def test_each_site_sample_is_commented_and_names_its_schema(site: str) -> None:
    lines = shipped.site_sample(site).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# yaml-language-server: $schema=schemas/agent.schema.json"
    prose = [line for line in lines if line.lstrip().startswith("## ")]
    assert len(prose) >= 15, "a sample explains itself"
    assert sum("SET" in line for line in prose) >= 3, "and says what the installer must set"


def test_sample_config_prints_a_site_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sample-config", "--site", "bus_stop"]) == 0
    assert capsys.readouterr().out == shipped.site_sample("bus_stop").read_text(encoding="utf-8")
