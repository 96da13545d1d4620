"""InfluxDB 1.x's words for a refused write, read into a ``Refusal`` (sans-IO).

A 400 from /write is a partial write: InfluxDB wrote every point it did not
refuse, and its error says why the rest was refused. Measured on 1.6 (Debian's
influxd), the answers are:

- ``partial write: field type conflict: input field "f" on measurement "m" is
  type string, already exists as type float dropped=N``: the first conflict
  only; ``dropped`` counts every conflicting point of that shard, so one write
  can hold more conflicts than the answer names (the next write names the next);
- ``partial write: points beyond retention policy dropped=N``: only when
  nothing else was refused (a conflict hides it);
- ``partial write: max-series-per-database limit exceeded: (L) dropped=N`` and
  ``... max-values-per-tag limit exceeded (n/L): ...``;
- ``field type conflict`` alone (points across shards), ``unable to parse ...``
  and anything else: nothing named.
"""

from __future__ import annotations

import json
import re

from collector.writers.errors import UNNAMED, Refusal, RefusalKind

# The answer is JSON ({"error": "..."}), kept short: a longer one is not a refusal we read.
MAX_ANSWER_CHARS = 4096

_DROPPED = re.compile(r" dropped=(\d+)$")
# InfluxDB writes the names as they are (Go's %s, no escaping): a name holding '" on
# measurement "' would read ambiguously. Ingest's names are [A-Za-z0-9_], and the
# pipeline checks the points it matches against ``dropped`` before it trusts a match.
_CONFLICT = re.compile(
    r'^partial write: field type conflict: input field "(.*)" on measurement "(.*)" '
    r"is type (float|integer|string|boolean|unsigned), already exists as type \w+ "
    r"dropped=\d+$", re.DOTALL)
_SERIES_LIMITS = ("max-series-per-database limit exceeded", "max-values-per-tag limit exceeded")


def error_text(body: str, key: str = "error") -> str:
    """The ``key`` of InfluxDB's JSON answer (1.x says "error", 2.x "message"), or the
    body itself when it is not that."""
    body = body.strip()[:MAX_ANSWER_CHARS]
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    text = doc.get(key) if isinstance(doc, dict) else None
    return text if isinstance(text, str) else body


def parse_refusal(body: str) -> Refusal:
    """What a 400 answer from /write says was refused; ``UNNAMED`` when it names nothing."""
    return refusal_of(error_text(body))


def refusal_of(text: str) -> Refusal:
    """A refusal from InfluxDB's error text (2.x says the same words in its ``message``)."""
    if not text.startswith("partial write: "):
        return UNNAMED
    found = _DROPPED.search(text)
    dropped = int(found.group(1)) if found else None
    if (m := _CONFLICT.match(text)) is not None:
        return Refusal(RefusalKind.FIELD_TYPE, dropped, measurement=m.group(2),
                       field=m.group(1), value_type=m.group(3))
    if text.startswith("partial write: points beyond retention policy") and dropped:
        return Refusal(RefusalKind.RETENTION, dropped)
    if any(text.startswith(f"partial write: {limit}") for limit in _SERIES_LIMITS):
        return Refusal(RefusalKind.SERIES_LIMIT, dropped)
    return UNNAMED
