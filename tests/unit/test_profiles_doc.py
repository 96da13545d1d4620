"""docs/profiles.md names every shipped profile, reason code, counter and command role."""

from __future__ import annotations

from pathlib import Path

from edge_agent.decoding import COMMAND_ROLES, Reason, load_profiles
from edge_agent.serial_port import COUNTERS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "profiles.md").read_text(encoding="utf-8")


def test_every_profile_is_in_the_table() -> None:
    for model, profile in load_profiles(ROOT / "firmware_profiles").items():
        row = next((line for line in DOC.splitlines() if line.startswith(f"| `{model}` |")), None)
        assert row is not None, f"docs/profiles.md has no row for {model}"
        for measurement in profile.measurements:
            assert measurement in row, (model, measurement)


def test_every_reason_counter_and_role_is_documented() -> None:
    for reason in Reason:
        assert f"`{reason}`" in DOC, reason
    for counter in COUNTERS:
        assert f"| `{counter}` |" in DOC, counter
    assert "| `rejected_<reason>` |" in DOC
    for role in COMMAND_ROLES:
        assert f"| `{role}` |" in DOC, role
