"""Time-of-day and weekday schedules on local wall time (Asia/Seoul unless a file says otherwise).

Korean noise limits change at 06:00 and 22:00 local time; a reading's event
time (UTC nanoseconds) is converted with zoneinfo, so a zone with daylight
saving would be handled too. A window "22-06" wraps midnight and belongs to
the weekday it starts on: Friday 22:00 to Saturday 06:00 is Friday's night.
Windows are half-open, [start, end): 06:00:00 is day, 05:59:59 is night.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^(\d{1,2})(?::(\d{2}))?-(\d{1,2})(?::(\d{2}))?$")
MINUTE_NS = 60_000_000_000


def parse_hours(text: str) -> tuple[int, int]:
    """``"06-22"`` or ``"06:30-22:00"`` -> (start, end) in minutes of the day."""
    m = _HOURS.match(text.replace(" ", ""))
    if not m:
        raise ValueError(f"expected hours like 06-22 or 22:30-06:00, got {text!r}")
    start = int(m[1]) * 60 + int(m[2] or 0)
    end = int(m[3]) * 60 + int(m[4] or 0)
    if start > 24 * 60 or end > 24 * 60 or int(m[2] or 0) > 59 or int(m[4] or 0) > 59:
        raise ValueError(f"hours out of 00:00-24:00 in {text!r}")
    if start == end:
        raise ValueError(f"empty window {text!r}; write 00-24 for the whole day")
    return start, end


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (install the tzdata package if the system has none)"
        ) from None


@dataclass(frozen=True, slots=True)
class Window:
    """One named window: minutes [start, end) of the day, on the given weekdays (0 = Monday)."""

    name: str
    start: int
    end: int
    days: frozenset[int]

    def contains(self, minute: int, weekday: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end and weekday in self.days
        if minute >= self.start:
            return weekday in self.days
        if minute < self.end:
            return (weekday - 1) % 7 in self.days
        return False


class Schedules:
    """Which named window an event time falls in; the first listed match wins."""

    def __init__(self, zone: ZoneInfo, windows: tuple[Window, ...]) -> None:
        self.zone = zone
        self.windows = windows
        self.names = frozenset(w.name for w in windows)
        # One-slot cache: readings arrive roughly in time order, and the answer
        # only changes on minute boundaries.
        self._minute = -1
        self._name: str | None = None

    def at(self, time_ns: int) -> str | None:
        minute_index = time_ns // MINUTE_NS
        if minute_index == self._minute:
            return self._name
        local = datetime.fromtimestamp(minute_index * 60, self.zone)
        minute, weekday = local.hour * 60 + local.minute, local.weekday()
        name = next((w.name for w in self.windows if w.contains(minute, weekday)), None)
        self._minute, self._name = minute_index, name
        return name
