"""Redacting URLs before they are logged or stored: webhook URLs carry their token in
the path (``https://hooks.example/services/T0/B0/XXXX``), others in the query
(``?token=...``) or the userinfo (``https://user:pw@host``).

The rule, for every ``http``, ``https``, ``mqtt``, ``mqtts``, ``ws`` or ``wss`` URL:
- scheme, host and port are kept: they say where a request went;
- userinfo (``user:pw@``) is dropped;
- of the path only the first segment is kept, the rest becomes ``***``
  (``/services/T0/B0/XXXX`` -> ``/services/***``; ``/write`` stays ``/write``);
- a query becomes ``?***`` and a fragment ``#***``.

``redact_text`` applies the rule to every such URL inside a message (an
exception's text, an HTTP library's error), so it is safe on anything a log
line or a dead letter may carry.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
# Up to a space, a quote or an angle bracket, and not ending in punctuation ("POST URL: ...").
_URL = re.compile(r"\b(?:https?|mqtts?|wss?)://[^\s'\"<>]*[^\s'\"<>.,:;!?)]", re.IGNORECASE)
_PARTS = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:[^/?#@]*@)?(?P<host>[^/?#]*)"
    r"(?P<path>[^?#]*)(?P<query>\?[^#]*)?(?P<fragment>#.*)?$",
    re.DOTALL,
)


def redact_url(url: str) -> str:
    """The URL as it may be shown: see the module's rule."""
    m = _PARTS.match(url)
    if m is None:
        return MASK
    segments = m["path"].split("/")  # "", first, rest...
    path = m["path"]
    if len(segments) > 2 and any(segments[2:]):  # "", the first segment, then the rest
        path = f"/{segments[1]}/{MASK}"
    return (m["scheme"] + m["host"] + path + (f"?{MASK}" if m["query"] else "")
            + (f"#{MASK}" if m["fragment"] else ""))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (cheap when there is none)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


class RedactingFormatter(logging.Formatter):
    """A log formatter that redacts URLs in the whole line, tracebacks included: the net
    under the explicit redaction where errors are stored."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure_logging(level: str | int, fmt: str) -> None:
    """``logging.basicConfig`` with a RedactingFormatter on the root handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])
