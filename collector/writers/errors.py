"""How a failed write is classified, which decides what the collector does next.

Modelled on Telegraf's influxdb_v2 output: 2xx delivered; 400/422 rejected
(never retried as is: the batch is split to isolate the bad point, which is
dead-lettered); 413 too large (split); 429/503 throttled (wait Retry-After);
anything else retryable, including 401/403/404: a wrong password or a
missing database is fixed by a person, and until then the readings wait in
the gateways' outboxes instead of being dead-lettered.
"""

from __future__ import annotations


class WriteError(Exception):
    """Base of every writer failure."""


class Retryable(WriteError):
    """Try the same write again later."""


class Throttled(Retryable):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PointsRejected(WriteError):
    """The database refused the content; retrying the same bytes cannot help."""


class TooLarge(WriteError):
    """The request body was too large; split it."""


def classify(status: int, body: str, retry_after: str | None) -> WriteError:
    text = f"HTTP {status}: {body.strip()[:500]}"
    if status in (400, 422):
        return PointsRejected(text)
    if status == 413:
        return TooLarge(text)
    if status in (429, 503):
        try:
            wait = float(retry_after) if retry_after else 1.0
        except ValueError:
            wait = 1.0
        return Throttled(text, max(0.0, min(wait, 300.0)))
    return Retryable(text)
