"""The tree is ruff-clean (rules in pyproject.toml), so style is checked with every run.

ruff comes with the ``test`` extra. Without it, the test fails under CI=true
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


def test_ruff_reports_nothing() -> None:
    if importlib.util.find_spec("ruff") is None:
        message = "ruff is not installed (pip install -e '.[test]')"
        if IN_CI:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "concise", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"ruff check:\n{result.stdout}{result.stderr}", pytrace=False)
