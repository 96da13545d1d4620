"""status.mode and status.group in the agent's config: the bits a socket may have."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityedge.yamlconfig import ConfigError
from edge_agent.config import StatusConfig, load_config

BASE = """gateway: {id: gw-1, site: {district: d, site: s, kind: dust_zone}}
sensors: []
"""


@pytest.mark.parametrize(("text", "bits"), [
    ("", 0o660), ("status: {mode: 0660}", 0o660), ("status: {mode: '0640'}", 0o640),
    ("status: {mode: 0600, group: cityedge}", 0o600)])
def test_accepted_modes(tmp_path: Path, text: str, bits: int) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(BASE + text + "\n")
    assert load_config(path).status.bits == bits


@pytest.mark.parametrize(("text", "why"), [
    ("status: {mode: 0666}", "others may not), got 0666"),
    ("status: {mode: 0460}", "got 0460"),       # the agent itself could not write
    ("status: {mode: 0770}", "got 0770"),       # execute bits mean nothing on a socket
    ("status: {mode: 660}", "got 1224"),        # decimal 660: not the bits meant
    ("status: {mode: rw-rw----}", "expected octal permission bits such as 0660")])
def test_refused_modes_say_why_at_their_line(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(BASE + text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:3: status") and why in str(err.value)


def test_the_default_lets_the_agents_group_ask() -> None:
    assert (StatusConfig().socket, StatusConfig().group, StatusConfig().bits) == (
        None, None, 0o660)
