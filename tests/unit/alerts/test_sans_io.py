"""The engine's modules do no I/O: importing one loads no socket, asyncio, aiohttp or paho."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CORE = ["engine", "evaluate", "events", "lifecycle", "points", "replay", "rulefile", "rules",
        "schedule", "snapshot", "units", "windows"]
IO = ["socket", "asyncio", "aiohttp", "paho", "sqlite3", "tinydb", "ssl"]


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io(module: str) -> None:
    code = (f"import sys, collector.alerts.{module}\n"
            f"print(' '.join(m for m in {IO!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"collector.alerts.{module} pulls in {out}"
