"""What an HTTP answer means for a delivery, sans-IO: one table and one Retry-After parser.

Every client that delivers over HTTP (the gateway's uplink, the InfluxDB
writer, the webhook notifier) asks ``classify`` what an answer is, then maps
the ``Kind`` to its own action, after Telegraf's influxdb_v2 output
(plugins/outputs/influxdb_v2/http.go):

========== ============================ =========================================
kind        statuses                     meaning
========== ============================ =========================================
OK          2xx                          delivered
THROTTLED   408, 425, 429, 503           come back later (``retry_after`` if told)
TRANSIENT   other 5xx                    the server failed; try again after a backoff
TOO_LARGE   413                          the body is too large; split it
REJECTED    400, 422                     this content is wrong; resending it cannot help
AUTH        401, 403, 407                the credential is wrong; a person fixes it
REFUSED     anything else (1xx, 3xx,     the endpoint will not take it (wrong URL,
            404, other 4xx)              a proxy's page)
========== ============================ =========================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum

# A Retry-After beyond this is treated as this: five minutes is as long as a
# gateway or a writer holds off on one answer's word (callers may pass their own).
RETRY_AFTER_MAX_S = 300.0
# How much of a body an outcome keeps for logs and dead letters.
DETAIL_CHARS = 500


class Kind(Enum):
    OK = "ok"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    TOO_LARGE = "too_large"
    REJECTED = "rejected"
    AUTH = "auth"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    """kind: what to do; status: the answer's; retry_after: seconds from its Retry-After
    (capped; None when absent or unreadable); detail: the start of its body, stripped."""

    kind: Kind
    status: int
    retry_after: float | None
    detail: str


_BY_STATUS = {
    408: Kind.THROTTLED, 425: Kind.THROTTLED, 429: Kind.THROTTLED, 503: Kind.THROTTLED,
    413: Kind.TOO_LARGE,
    400: Kind.REJECTED, 422: Kind.REJECTED,
    401: Kind.AUTH, 403: Kind.AUTH, 407: Kind.AUTH,
}


def kind_of(status: int) -> Kind:
    if 200 <= status < 300:
        return Kind.OK
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return Kind.TRANSIENT if status >= 500 else Kind.REFUSED


def classify(status: int, headers: Mapping[str, str], body: bytes | str = b"", *,
             max_retry_after: float = RETRY_AFTER_MAX_S) -> HttpOutcome:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return HttpOutcome(
        kind_of(status), status,
        parse_retry_after(headers.get("Retry-After"), headers.get("Date"), max_retry_after),
        text.strip()[:DETAIL_CHARS])


def parse_retry_after(value: str | None, server_date: str | None = None,
                      cap: float = RETRY_AFTER_MAX_S) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), capped; None if absent.

    An HTTP-date is measured against the response's own Date header: the
    client's clock may be wrong (a gateway has no RTC), the server's two headers are not.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
            now = parsedate_to_datetime(server_date) if server_date else None
        except (TypeError, ValueError, IndexError):
            return None
        if now is None or when.tzinfo is None or now.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, min(seconds, cap))
