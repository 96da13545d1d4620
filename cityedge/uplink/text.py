"""Text from the wire, handled so that it can always be shown and stored.

A gateway's JSON can carry anything a string can hold: a lone surrogate (a
``\\udc80`` escape, which no UTF-8 encoder accepts), a 4 MB string, nesting
deep enough to make ``repr`` recurse. These helpers let validation name such a
value in a reason, and keep a rejected reading as text, without ever raising.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def utf8_ok(value: str) -> bool:
    """False for a lone surrogate: it cannot be encoded as UTF-8, so no line of line
    protocol (and no log file) can carry it as it is."""
    return _SURROGATE.search(value) is None


def brief(value: Any, limit: int = 60) -> str:
    """A short printable account of a value from the wire, for reasons and logs: never
    the whole of a 4 MB string, never a repr of deep nesting (which can recurse)."""
    if isinstance(value, str):
        more = f"...(+{len(value) - limit} chars)" if len(value) > limit else ""
        return repr(value[:limit]) + more  # repr escapes surrogates and control characters
    if value is None or isinstance(value, bool | int | float):
        text = repr(value)  # json caps an int at 4,300 digits
        return text if len(text) <= limit else f"{text[:limit]}..."
    if isinstance(value, dict | list):
        return f"<{type(value).__name__} of {len(value)}>"
    return f"<{type(value).__name__}>"


def raw_text(raw: Any) -> str:
    """A rejected reading as JSON text that can always be encoded: a lone surrogate goes
    back to the ``\\udXXX`` escape it came as (still valid JSON), and nesting too deep
    to print again becomes a note."""
    try:
        text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
    except (RecursionError, ValueError):
        return f"<{type(raw).__name__} nested too deep to print>"
    return encodable(text)


def encodable(text: str) -> str:
    """``text`` with each lone surrogate written as its ``\\udXXX`` escape (valid JSON)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
