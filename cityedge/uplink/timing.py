"""Reading time on the wire: per-boot anchors and the rule that turns them into timestamps.

Shared by the gateway (which decides anchors, edge_agent/timebase.py) and the
collector (which applies ``reading_time``). The rule is a pure function of
what the gateway stored with the reading, so a resend gets the identical
timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

# The largest int64: the largest seq (a SQLite rowid), monotonic time and integer
# field InfluxDB can store.
MAX_INT64 = (1 << 63) - 1
# InfluxDB 1.x's time range (models.MinNanoTime, MaxNanoTime).
MIN_TIME_NS = -9_223_372_036_854_775_806
MAX_TIME_NS = 9_223_372_036_854_775_806
# ``unverified_before`` of a boot whose readings stay unverified: past any mono_ns.
NEVER = MAX_INT64


def storable_time(value: object) -> TypeGuard[int]:
    """A timestamp InfluxDB can store: an int (not a bool) within its time range."""
    return (isinstance(value, int) and not isinstance(value, bool)
            and MIN_TIME_NS <= value <= MAX_TIME_NS)


@dataclass(frozen=True, slots=True)
class Anchor:
    mono_ns: int
    wall_ns: int
    source: str  # "ntp" or "collector"


@dataclass(frozen=True, slots=True)
class BootTime:
    """How the collector times one boot's unsynchronised readings."""

    anchor: Anchor | None = None
    # Unsynchronised readings with mono_ns below this go uncorrected, flagged.
    unverified_before: int = 0

    def to_json(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {"unverified_before": self.unverified_before}
        if self.anchor is not None:
            out |= {"anchor_mono": self.anchor.mono_ns, "anchor_wall": self.anchor.wall_ns,
                    "anchor_source": self.anchor.source}
        return out

    @classmethod
    def from_json(cls, doc: dict[str, int | str]) -> BootTime:
        anchor = None
        if "anchor_mono" in doc:
            anchor = Anchor(int(doc["anchor_mono"]), int(doc["anchor_wall"]),
                            str(doc.get("anchor_source", "")))
        return cls(anchor, int(doc.get("unverified_before", 0)))


def reading_time(time_ns: int, boot: str, mono_ns: int, synced: bool,
                 boots: dict[str, BootTime]) -> tuple[int, str]:
    """The timestamp a reading gets, and how it was decided: "own", "corrected", "unverified".

    A pure function of what the gateway stored: the collector's half of the rule.
    """
    if synced or not boot:
        return time_ns, "own"
    bt = boots.get(boot)
    if bt is None or mono_ns < bt.unverified_before or bt.anchor is None:
        return time_ns, "unverified"
    return bt.anchor.wall_ns + (mono_ns - bt.anchor.mono_ns), "corrected"
