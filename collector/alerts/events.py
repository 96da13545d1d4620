"""What goes into the engine and what comes out: small frozen values.

Readings go in as ``collector.lineprotocol.Point`` (what the collector already
writes), gateway status as ``Status``, people's commands as ``Ack`` and
``Silence``; ``AlertEvent`` comes out. Notifiers, the InfluxDB points and the
``rules test`` replay all read the same ``AlertEvent``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime


def iso(time_ns: int) -> str:
    """RFC 3339 in UTC with the nanoseconds kept (event times are ns)."""
    secs, ns = divmod(time_ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ns:09d}Z" if ns else f"{base}Z"


def alert_id(rule: str, group: tuple[str, ...], started_ns: int, late: bool) -> str:
    """Deterministic: the same rule, scope and episode start give the same id in every collector.

    Receivers (webhook endpoints, bus terminals) dedupe on it, which is what
    keeps two evaluating collectors from notifying twice (docs/alerts.md).
    """
    text = "\x1f".join((rule, *group, str(started_ns), "late" if late else "live"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One change of one alert (or one repeat of a long-firing one).

    alert_id: the episode's id (see ``alert_id``); seq: this event's number within
    the episode, so (alert_id, seq) is unique and stable for receivers to dedupe.
    state/previous: lifecycle states (lifecycle.State values).
    time_ns: event time (the reading, status or deadline that caused it), not arrival.
    started_ns: when the episode began (first pending or firing).
    value: the watched value (mean, rate, count, seconds silent...) at time_ns.
    scope: the tags that say where, e.g. {"district": "강남구"}.
    notify: the lifecycle marks this move as one people are told about.
    late: caused by readings from a backlog (rule option late: report).
    repeat: a reminder for an alert still firing after `repeat`.
    silenced: a matching silence (edge-collector alerts silence) was active.
    members: how many sensors (or gateways) of the group meet the condition.
    fencing_token: the lease's token (``lease: etcd``) of the leader that made it;
        0 without one. Receivers may refuse a token lower than one they have seen.
    """

    alert_id: str
    seq: int
    rule: str
    state: str
    previous: str
    severity: str
    time_ns: int
    started_ns: int
    value: float
    message: str
    scope: Mapping[str, str]
    notify: bool
    late: bool = False
    repeat: bool = False
    silenced: bool = False
    members: int = 0
    display: str = ""
    fencing_token: int = 0

    @property
    def event_id(self) -> str:
        return f"{self.alert_id}:{self.seq}"

    def as_dict(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "time": iso(self.time_ns),
            "time_ns": self.time_ns,
            "rule": self.rule,
            "scope": dict(self.scope),
            "state": self.state,
            "previous": self.previous,
            "severity": self.severity,
            "value": self.value,
            "message": self.message,
            "alert_id": self.alert_id,
            "seq": self.seq,
            "started": iso(self.started_ns),
            "notify": self.notify,
            "late": self.late,
            "repeat": self.repeat,
            "silenced": self.silenced,
            "members": self.members,
        }
        if self.fencing_token:
            doc["fencing_token"] = self.fencing_token
        return doc


@dataclass(frozen=True, slots=True)
class Status:
    """A gateway's status message (retained online, last will offline) at time_ns."""

    gateway: str
    online: bool
    time_ns: int


@dataclass(frozen=True, slots=True)
class Silence:
    """Mute notifications of matching alerts until until_ns (events are still written).

    rule: a rule name or "*"; match: scope tags that must be equal.
    """

    id: str
    rule: str
    match: Mapping[str, str]
    until_ns: int
    created_ns: int
    by: str = ""
    comment: str = ""

    def covers(self, rule: str, scope: Mapping[str, str], time_ns: int) -> bool:
        if time_ns >= self.until_ns or self.rule not in ("*", rule):
            return False
        return all(scope.get(k) == v for k, v in self.match.items())


@dataclass(frozen=True, slots=True)
class Ack:
    """A person acknowledged an alert: no more repeats until it resolves or changes level."""

    alert_id: str
    time_ns: int
    by: str = ""
    comment: str = ""
