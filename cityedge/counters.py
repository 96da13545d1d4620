"""Counters by reason as health fields, the same way on the gateway and the collector."""

from __future__ import annotations

import re
from collections.abc import Mapping

# A reason becomes part of an InfluxDB field name: our codes are snake_case already;
# anything else (a status text, an error class) is made one and cut.
_NOT_A_NAME = re.compile(r"[^a-z0-9_]")
MAX_REASON_CHARS = 48


def by_reason(prefix: str, counts: Mapping[str, int]) -> dict[str, int]:
    """One integer field per reason seen: ``refused_rate_limited=3`` (zeros left out)."""
    return {f"{prefix}_{_NOT_A_NAME.sub('_', reason.lower())[:MAX_REASON_CHARS]}": n
            for reason, n in sorted(counts.items()) if n}
