"""The alert subsystem's one exception family.

``AlertError`` is the base of the rules', engine's and state files' errors.
``RuleError`` is a rule file that cannot be used (it is also the project's
``ConfigError``, so it names file:line and key path). ``UsageError`` is the
caller misusing the engine or the state files (h11's LocalProtocolError).
``NotifyError`` (a notifier's failure) and its three classes are the delivery
family the writers use too (cityedge/delivery_errors.py): they say what the
delivery loop should do next, as Telegraf's influxdb_v2 output does: try
again later, wait as told, or give up and record why.
"""

from __future__ import annotations

from cityedge.delivery_errors import DeliveryError, DeliveryRejected, Retryable, Throttled
from cityedge.yamlconfig import ConfigError

__all__ = ["AlertError", "DeliveryRejected", "NotifyError", "Retryable", "RuleError", "Throttled",
           "UsageError"]


class AlertError(Exception):
    """Base of the errors of collector.alerts' rules, engine and state (not of delivery)."""


class RuleError(ConfigError, AlertError):
    """A rule file is wrong; the message names file:line, key path and expectation."""


class UsageError(AlertError):
    """The caller misused the API (unknown alert id, corrupt state file, bad command)."""


# A notifier's failures are the delivery family shared with the writers
# (cityedge/delivery_errors.py): the names below are that family's classes.
NotifyError = DeliveryError
