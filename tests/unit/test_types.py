"""The packages type-check under mypy --strict (settings in pyproject.toml), checked with
every run like ruff: a type error is a failing test, not a note for later.

mypy comes with the ``test`` extra. Without it, the test fails under CI=true
and is skipped elsewhere, the policy tests/conftest.py applies to Mosquitto.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PACKAGES = ("cityedge", "edge_agent", "collector", "simulators")


def test_mypy_strict_reports_nothing() -> None:
    if importlib.util.find_spec("mypy") is None:
        message = "mypy is not installed (pip install -e '.[test]')"
        if IN_CI:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", *PACKAGES],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"mypy --strict:\n{result.stdout}{result.stderr}", pytrace=False)
