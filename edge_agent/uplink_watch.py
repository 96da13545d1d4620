"""When the uplink goes down and when it comes back, one log line each (sans-IO).

A broker or collector that cannot be reached is retried quietly (backoff) by the
transports; a technician reading the journal still has to see it. The agent feeds
``observe`` the link state every few seconds; it answers with the line to log, if
any: down once it has been down ``GRACE_S`` (a blip is not an outage), a reminder
every ``REMIND_S`` while it stays down, and back when it returns, each with how many
readings wait in the outbox (they are kept and sent when the link returns).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

# Seconds the link must be down before it is reported (a reconnect takes a few).
GRACE_S = 10.0
# Seconds between reminders while it stays down.
REMIND_S = 300.0


@dataclass(frozen=True)
class LogLine:
    level: int
    text: str


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class UplinkWatch:
    """Link transitions for one uplink ``target`` (e.g. "MQTT broker host:8883")."""

    def __init__(self, target: str, now: float) -> None:
        self.target = target
        self.up = False
        self.down_since: float | None = now  # not connected yet at start
        self.reported_at: float | None = None  # when the outage was last logged
        self.outages = 0  # reported outages, for the status output
        self.last_change = now

    def observe(self, up: bool, now: float, problem: str, waiting: int) -> LogLine | None:
        if up:
            return self._up(now, waiting)
        if self.up:
            self.up, self.down_since, self.last_change = False, now, now
        assert self.down_since is not None
        down_for = now - self.down_since
        if down_for < GRACE_S:
            return None
        if self.reported_at is not None and now - self.reported_at < REMIND_S:
            return None
        first = self.reported_at is None
        self.reported_at = now
        if first:
            self.outages += 1
        why = f" ({problem})" if problem else ""
        verb = "down" if first else "still down"
        return LogLine(logging.WARNING,
                       f"uplink {verb}: cannot reach {self.target} for {_span(down_for)}{why};"
                       f" {waiting} readings waiting in the outbox, kept and sent when it"
                       " returns")

    def _up(self, now: float, waiting: int) -> LogLine | None:
        if self.up:
            return None
        was_reported = self.reported_at is not None
        down_for = 0.0 if self.down_since is None else now - self.down_since
        self.up, self.down_since, self.reported_at, self.last_change = True, None, None, now
        if was_reported:
            return LogLine(logging.WARNING,
                           f"uplink back: {self.target} after {_span(down_for)} down;"
                           f" sending the {waiting} readings waiting in the outbox")
        return LogLine(logging.INFO, f"uplink up: {self.target}")
