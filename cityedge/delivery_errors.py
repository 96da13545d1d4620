"""The one exception family for delivering to something else: a database, a webhook, a broker.

A writer (collector/writers/) or a notifier (collector/notifiers/) raises one
of these, and the loop that drives it (collector/delivery.py,
collector/alerts/delivery.py) decides from the class alone, as Telegraf's
outputs do: try again after a backoff, wait as told, split, or give up and
record why. Named like Telegraf's classes, hence no "Error" suffix.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """Base of every classified delivery failure."""


class Retryable(DeliveryError):
    """Try the same thing again after a backoff (network down, 5xx, timeout)."""


class Throttled(Retryable):
    """The receiver asked us to slow down; wait ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryRejected(DeliveryError):
    """The receiver refused this content for good; retrying it as is cannot help."""


class TooLarge(DeliveryError):
    """The request body was too large; split it."""
