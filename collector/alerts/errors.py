"""The alert subsystem's one exception family.

``AlertError`` is the base. ``RuleError`` is a rule file that cannot be used
(it is also the project's ``ConfigError``, so it names file:line and key
path). ``UsageError`` is the caller misusing the engine or the state files
(h11's LocalProtocolError). ``NotifyError`` and its three classes say what
the delivery loop should do next, as Telegraf's influxdb_v2 output does:
try again later, wait as told, or give up and record why.
"""

from __future__ import annotations

from cityedge.yamlconfig import ConfigError


class AlertError(Exception):
    """Base of every error raised by collector.alerts and collector.notifiers."""


class RuleError(ConfigError, AlertError):
    """A rule file is wrong; the message names file:line, key path and expectation."""


class UsageError(AlertError):
    """The caller misused the API (unknown alert id, corrupt state file, bad command)."""


class NotifyError(AlertError):
    """A notifier could not deliver an event."""


# Named like collector.writers.errors (Telegraf's classes), hence no "Error" suffix.
class Retryable(NotifyError):
    """Try the same event again after a backoff (network down, 5xx, timeout)."""


class Throttled(Retryable):
    """The receiver asked us to slow down; wait ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotificationRejected(NotifyError):
    """The receiver refused this event for good (4xx); retrying cannot help."""
