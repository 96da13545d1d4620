"""How a failed write is classified, which decides what the collector does next.

The classes are the delivery family (cityedge/delivery_errors.py) and the
status table is cityedge/http_outcome.py's; a writer maps its kinds so:
rejected (400/422) is never retried as is: the batch is split to isolate the
bad point, which is dead-lettered; too large (413) is split; throttled
(408/425/429/503) waits Retry-After (1 s if not told); everything else is
retryable, including 401/403/404: a wrong password or a missing database is
fixed by a person, and until then the readings wait in the gateways'
outboxes instead of being dead-lettered.
"""

from __future__ import annotations

from collections.abc import Mapping

from cityedge import http_outcome
from cityedge.delivery_errors import DeliveryError as WriteError
from cityedge.delivery_errors import DeliveryRejected as Rejected
from cityedge.delivery_errors import Retryable, Throttled, TooLarge
from cityedge.http_outcome import Kind

__all__ = ["Rejected", "Retryable", "Throttled", "TooLarge", "WriteError", "classify"]

# The wait on a throttling answer without a Retry-After.
THROTTLED_DEFAULT_S = 1.0


def classify(status: int, body: str, headers: Mapping[str, str]) -> WriteError:
    outcome = http_outcome.classify(status, headers, body)
    text = f"HTTP {status}: {outcome.detail}"
    if outcome.kind is Kind.REJECTED:
        return Rejected(text)
    if outcome.kind is Kind.TOO_LARGE:
        return TooLarge(text)
    if outcome.kind is Kind.THROTTLED:
        wait = outcome.retry_after
        return Throttled(text, THROTTLED_DEFAULT_S if wait is None else wait)
    return Retryable(text)
