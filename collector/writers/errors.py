"""How a failed write is classified, which decides what the collector does next.

The classes are the delivery family (cityedge/delivery_errors.py) and the
status table is cityedge/http_outcome.py's; a writer maps its kinds so:
rejected (400/422) is never retried as is: the batch is split to isolate the
bad point, which is dead-lettered; too large (413) is split; throttled
(408/425/429/503) waits Retry-After (1 s if not told); everything else is
retryable, including 401/403/404: a wrong password or a missing database is
fixed by a person, and until then the readings wait in the gateways'
outboxes instead of being dead-lettered.

A refusal that says what it refused is a ``PartialWrite``: its ``refusal``
names the points (a field type conflict: measurement, field and the refused
type), or says how many were beyond the retention policy, or that a series
limit was hit, in terms that belong to no one database. Each writer parses its
database's words next to itself (collector/writers/influxdb_v1/refusal.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from cityedge import http_outcome
from cityedge.delivery_errors import DeliveryError as WriteError
from cityedge.delivery_errors import DeliveryRejected, Retryable, Throttled, TooLarge
from cityedge.http_outcome import Kind

__all__ = ["DeliveryRejected", "PartialWrite", "Refusal", "RefusalKind", "Retryable", "Throttled",
           "TooLarge", "WriteError", "classify"]

# The wait on a throttling answer without a Retry-After.
THROTTLED_DEFAULT_S = 1.0


def classify(status: int, body: str, headers: Mapping[str, str]) -> WriteError:
    outcome = http_outcome.classify(status, headers, body)
    text = f"HTTP {status}: {outcome.detail}"
    if outcome.kind is Kind.REJECTED:
        return DeliveryRejected(text)
    if outcome.kind is Kind.TOO_LARGE:
        return TooLarge(text)
    if outcome.kind is Kind.THROTTLED:
        wait = outcome.retry_after
        return Throttled(text, THROTTLED_DEFAULT_S if wait is None else wait)
    return Retryable(text)


class RefusalKind(Enum):
    # Points of one measurement whose field has another type than the database has:
    # refused for good (dead-lettered), everything else in the write was written.
    FIELD_TYPE = "field_type_conflict"
    # The ``dropped`` oldest points are older than the retention policy keeps.
    RETENTION = "beyond_retention"
    # A series or tag-value limit of the database: new series are refused until an
    # operator raises it; not the points' fault, so they are never dead-lettered.
    SERIES_LIMIT = "series_limit"
    # Refused, but the answer does not say which points.
    UNNAMED = "unnamed"


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a database said it refused in a write it otherwise took."""

    kind: RefusalKind
    # Points refused, when the answer says (None: it does not).
    dropped: int | None = None
    # FIELD_TYPE: the refused points are those of ``measurement`` whose ``field`` is of
    # ``value_type`` ("float", "integer", "string", "boolean"), the line protocol's types.
    measurement: str = ""
    field: str = ""
    value_type: str = ""


UNNAMED = Refusal(RefusalKind.UNNAMED)


class PartialWrite(DeliveryRejected):
    """A refusal (HTTP 400) whose ``refusal`` says what was refused."""

    def __init__(self, message: str, refusal: Refusal) -> None:
        super().__init__(message)
        self.refusal = refusal
