"""What the gateway knows about its own clock: boot id, monotonic time, NTP sync state.

A Raspberry Pi has no real-time clock: until NTP syncs, the wall clock is
whatever was saved at shutdown. Each reading therefore also carries the boot
id and the monotonic clock, from which the collector can correct the time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import secrets
import time
from pathlib import Path

_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (Linux); only ``status`` is read, the
    # padding covers the rest of the kernel's structure.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 200),
    ]


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:16]
    except OSError:
        return secrets.token_hex(8)  # no /proc: a fresh id per process is the safe fallback


def kernel_clock_synced() -> bool | None:
    """True when the kernel says NTP discipline is active (adjtimex), None if unknown."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR and not (tx.status & _STA_UNSYNC)


class Clock:
    """Stamps readings; ``setting`` is the config's clock_synced: "auto", True or False."""

    def __init__(self, setting: bool | str = "auto") -> None:
        self.setting = setting
        self.boot = boot_id()
        self._last_ns: dict[str, int] = {}

    def synced(self) -> bool:
        if isinstance(self.setting, bool):
            return self.setting
        return bool(kernel_clock_synced())

    def stamp(self, sensor: str) -> tuple[int, int]:
        """(wall ns, monotonic ns); a sensor never gets the same wall time twice in a run."""
        wall, mono = time.time_ns(), time.monotonic_ns()
        last = self._last_ns.get(sensor)
        if last is not None and wall == last:
            wall += 1  # same measurement + tags + time would overwrite the previous point
        self._last_ns[sensor] = wall
        return wall, mono
