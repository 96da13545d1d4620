"""When was a reading really taken? Per-boot time anchors, sans-IO.

A Raspberry Pi has no real-time clock: until NTP syncs, the wall clock is
whatever fake-hwclock saved, possibly days off. Each reading is stored with
the boot id, the monotonic clock and whether the kernel said the clock was
synchronised. For each boot the gateway fixes, once, an *anchor*: a pair
(monotonic, true wall time) taken from NTP (the kernel clock becoming
synchronised) or from the collector's clock carried in an ack. The collector
then times an unsynchronised reading as ``anchor.wall + (mono - anchor.mono)``.

The anchor never changes once set, and a reading only leaves the gateway once
its timing is decided, so every resend gets the same timestamp (DESIGN
invariant 4):
- synchronised readings keep their own time;
- unsynchronised readings of the current boot wait (at most ``hold_max``) for
  the boot's anchor; past that, those taken so far are declared
  *unverified* (``unverified_before``) and go with their own time and a flag;
- readings of an earlier boot that never got an anchor can never get one
  (the monotonic clock restarted), so they are unverified for good.

Since the first anchor wins and times every reading of the boot, a time
answer is taken only if it is plausible (``plausible``): not before
``floor_ns`` (this release's ``TIME_FLOOR_NS``, or a later wall time an
anchor of any boot recorded, since time does not go back) and at most
``MAX_TIME_STEP_NS`` past it. The agent also takes it only from a verified
ack that answers a probe or batch in flight (anchoring.py, ``answer``).

Two phases, because only what the gateway stored may time a reading: every
``on_*`` and ``settle_old_boots`` only *proposes* a record and changes nothing;
the caller saves it and then ``commit``s it. A record that could not be saved
(a full disk) is never used: the hold stays, the boot keeps asking for an
anchor, and a restart on the same boot cannot time a sent reading differently.
"""

from __future__ import annotations

import datetime as _dt

from cityedge.uplink.timing import NEVER, Anchor, BootTime

# No true clock reads earlier than this release: 2026-01-01T00:00:00Z.
TIME_FLOOR_NS = int(_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC).timestamp()) * 10**9
# How far past the floor a time answer may be. Ten years is longer than a
# gateway runs one release (Raspberry Pi OS and Python 3.11 security support
# end years before), so a true answer is never refused while the release is
# supported; past it a gateway without NTP only sends its readings flagged
# time_unverified, nothing is lost. A forged 2100, or anything near the end
# of int64 nanoseconds (2262), is refused.
MAX_TIME_STEP_NS = 3653 * 24 * 3600 * 10**9


class Timebase:
    """Proposes the current boot's anchor and hold; the caller saves a proposal, then
    commits it (a proposal that was not saved is dropped and proposed again later)."""

    def __init__(self, boot: str, boots: dict[str, BootTime], *, hold_max_ns: int,
                 now_mono: int) -> None:
        self.boot = boot
        self.boots = dict(boots)
        self.hold_max_ns = hold_max_ns
        self._hold_since = now_mono

    @property
    def current(self) -> BootTime:
        return self.boots.get(self.boot, BootTime())

    def settle_old_boots(self, seen: set[str]) -> dict[str, BootTime]:
        """Boots found in the outbox that are not this one and have no anchor: unverified.

        Proposals only. They are the same whenever asked (the monotonic clock of a past
        boot restarted, so it can never get an anchor), and without an anchor a reading
        is unverified with or without its record (``reading_time``): saving them late
        changes no timestamp."""
        settled = {}
        for boot in seen - {self.boot, ""}:  # "": records made by the gateway, no clock to fix
            bt = self.boots.get(boot, BootTime())
            if bt.anchor is None and bt.unverified_before != NEVER:
                settled[boot] = BootTime(None, NEVER)
        return settled

    def commit(self, boot: str, record: BootTime) -> None:
        """A proposal was saved: it is the boot's record from now on. Proposals of one
        boot are saved and committed one at a time, each before the next is asked for."""
        if boot == self.boot and record.anchor is None:
            self._hold_since = record.unverified_before
        self.boots[boot] = record

    def _anchor(self, anchor: Anchor) -> BootTime | None:
        if self.current.anchor is not None:
            return None  # first anchor wins: readings may already be timed by it
        return BootTime(anchor, self.current.unverified_before)

    def on_synced(self, mono_ns: int, wall_ns: int) -> BootTime | None:
        """The kernel says the wall clock is right now."""
        return self._anchor(Anchor(mono_ns, wall_ns, "ntp"))

    def on_collector_time(self, mono_ns: int, time_ns: int) -> BootTime | None:
        """An ack carried the collector's clock, received at ``mono_ns``."""
        return self._anchor(Anchor(mono_ns, time_ns, "collector"))

    @property
    def floor_ns(self) -> int:
        """The earliest the true time can be: the release floor or the newest anchor's wall."""
        walls = [bt.anchor.wall_ns for bt in self.boots.values() if bt.anchor is not None]
        return max([TIME_FLOOR_NS, *walls])

    def plausible(self, time_ns: int) -> bool:
        """May a collector's time answer anchor this boot? (see the module doc)"""
        floor = self.floor_ns
        return floor <= time_ns <= floor + MAX_TIME_STEP_NS

    def on_tick(self, mono_ns: int) -> BootTime | None:
        """Past the hold limit without an anchor: what was read so far goes unverified."""
        if self.current.anchor is not None or mono_ns - self._hold_since < self.hold_max_ns:
            return None
        return BootTime(None, mono_ns)

    def held_from(self) -> int | None:
        """From which monotonic ns this boot's unsynchronised readings may not leave yet
        (their time is not decided), or None when nothing is held (the boot has its anchor).

        Synchronised readings and other boots' are never held. The outbox's query
        (``Outbox.first_held``) applies this to what is stored."""
        return None if self.current.anchor is not None else self.current.unverified_before
