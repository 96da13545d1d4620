"""Durations as rule files write them ("90s", "10m", "2h", "1h30m", "7d"), in nanoseconds.

Event times in cityedge are integer nanoseconds (InfluxDB's precision), so every
duration is converted once, at load, and the engine only adds and compares ints.
"""

from __future__ import annotations

import re

NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
      "d": 86_400_000_000_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")


def parse_duration(text: str) -> int:
    """``"1h30m"`` -> nanoseconds; raises ValueError with the expectation."""
    if not isinstance(text, str) or not _WHOLE.match(text.strip()):
        raise ValueError(f"expected a duration like 90s, 10m, 2h or 1h30m, got {text!r}")
    return sum(int(float(n) * NS[unit]) for n, unit in _PART.findall(text.strip()))
