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


def escapes_separator(text: str) -> bool:
    """Line protocol has no escape for a trailing backslash: it would escape the separator
    after it. No name or tag value may end in one."""
    return text.endswith("\\")


def tag_text_ok(text: str) -> bool:
    """The tag-value rule: printable (a newline ends the line, a lone surrogate cannot be
    encoded, and newer InfluxDB 1.x releases refuse control and format characters in
    names and tags: models.ValidToken, Go's unicode.IsPrint, the rule of
    ``str.isprintable``) and no trailing backslash (``escapes_separator``)."""
    return text.isprintable() and not escapes_separator(text)


def safe_tag(value: str, limit: int = 64) -> str:
    """A tag value made from untrusted text that keeps ``tag_text_ok``: characters that are
    not printable (surrogates, control characters) replaced, cut to ``limit``, and no
    trailing backslash left by the cut. Empty means the tag is left out."""
    text = value[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "\ufffd" for c in text)
    return text.rstrip("\\")
