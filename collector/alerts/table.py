"""The engine's bounded tables: members per rule, and the gateway directory.

Every new series makes a member under each rule it matches, and every new
gateway an entry in the directory. Both are kept least recently seen first
and bounded (``EngineLimits``). A table that is full makes room by forgetting
its least recently seen *quiet* member: status OK, no hold running, no
gateway down, no clock-hour run under way (``quiet``). A member that holds an
alert up or is on its way to one is never forgotten. When the first
``EVICT_SCAN`` members in line are all busy, the new series is refused under
that rule: its reading is stored by the collector like any other and every
other rule judges it as usual, but this rule does not watch the series until
room frees up. Both outcomes are counted (``evicted``, ``refused``). A
forgotten member starts afresh when its series sends again: windows refill,
a silence rule watches it again from its next reading.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from collector.alerts.evaluate import OK, Member

Key = tuple[str, ...]

# Members per rule (and per rule's late track): ~1-7 KB each with the shipped rules; a
# city of 3,300 gateways has some 15,000 sensors.
MAX_MEMBERS = 50_000
# Gateways in the directory (location tags for downlinks and offline alerts).
MAX_GATEWAYS = 100_000
# Members looked at, least recently seen first, for one that may be forgotten.
EVICT_SCAN = 32
# How far ahead of the engine's clock a reading may be stamped and still count as
# live (gateway clocks drift; NTP keeps them within seconds).
MAX_FUTURE_NS = 5 * 60 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """The engine's bounds (the collector's ``alerts:`` settings of the same names)."""

    max_members: int = MAX_MEMBERS
    max_gateways: int = MAX_GATEWAYS
    max_future_ns: int = MAX_FUTURE_NS


def quiet(m: Member) -> bool:
    """Nothing of the member's would be lost but its statistics: it may be forgotten."""
    if m.status != OK or m.since is not None or m.down_since is not None:
        return False
    return m.clock is None or (m.clock.status == OK and m.clock.run == 0)


@dataclass
class TableCounts:
    evicted: int = 0  # quiet members forgotten to make room
    refused: int = 0  # new series not watched by a rule: its table was full of busy members
    gateways_forgotten: int = 0  # directory entries forgotten to make room


class MemberTable(OrderedDict[Key, Member]):
    """One rule's members, least recently seen first, at most ``cap`` of them."""

    def __init__(self, cap: int, counts: TableCounts) -> None:
        super().__init__()
        self.cap = cap
        self.counts = counts

    def seen(self, key: Key) -> Member | None:
        """The member for key (now the most recently seen), or None."""
        m = self.get(key)
        if m is not None:
            self.move_to_end(key)
        return m

    def admit(self, key: Key, make: Callable[[], Member],
              forget: Callable[[Member], None]) -> Member | None:
        """A new member for key; None when the table is full of busy members (refused).

        ``forget`` is told of each member evicted to make room.
        """
        while len(self) >= self.cap:
            victim = self._victim()
            if victim is None:
                self.counts.refused += 1
                return None
            forget(self.pop(victim))
            self.counts.evicted += 1
        m = self[key] = make()
        return m

    def _victim(self) -> Key | None:
        busy: list[Key] = []
        found: Key | None = None
        for key, m in self.items():
            if quiet(m):
                found = key
                break
            busy.append(key)
            if len(busy) >= EVICT_SCAN:
                break
        for key in busy:  # not candidates now: the next scan starts past them
            self.move_to_end(key)
        return found


class Directory(OrderedDict[str, dict[str, str]]):
    """Where each gateway stands (its location tags), least recently seen first, bounded."""

    def __init__(self, cap: int, counts: TableCounts) -> None:
        super().__init__()
        self.cap = cap
        self.counts = counts
        self.where: dict[str, tuple[str | None, ...]] = {}  # the entries, as tuples

    def learn(self, gw: str, where: tuple[str | None, ...], tags: dict[str, str]) -> None:
        if self.where.get(gw) == where:
            self.move_to_end(gw)
            return
        if gw not in self:
            while len(self) >= self.cap:
                old, _ = self.popitem(last=False)
                self.where.pop(old, None)
                self.counts.gateways_forgotten += 1
        else:
            self.move_to_end(gw)
        self.where[gw] = where
        self[gw] = tags
