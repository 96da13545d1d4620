"""InfluxDB 2.x's words for a refused write, read into a ``Refusal`` (sans-IO).

2.x answers a write it refused in part with 400 and ``{"code": "invalid",
"message": "partial write: ..."}``; the message is 1.x's error text (the same
storage engine: field type conflicts, points beyond retention, series limits),
so it is read with 1.x's rules (collector/writers/influxdb_v1/refusal.py).
Anything else names nothing (``UNNAMED``).
"""

from __future__ import annotations

from collector.writers.errors import UNNAMED, Refusal
from collector.writers.influxdb_v1.refusal import error_text, refusal_of


def message_text(body: str) -> str:
    """The ``message`` of 2.x's JSON answer, or the body itself when it is not that."""
    return error_text(body, "message")


def parse_refusal(body: str) -> Refusal:
    """What a 400 answer from /api/v2/write says was refused."""
    text = message_text(body)
    return refusal_of(text) if text.startswith("partial write: ") else UNNAMED
