"""Log lines a flood cannot multiply: at most one per reason per interval, with a count.

A thousand refused batches a second must not become a thousand log lines a
second (a flood of slow connections once wrote 7.9 MB of log in 10 s). The
first refusal of a kind is logged at once; the same kind within the interval
is only counted, and the next line says how many were held back. Every
refusal is also counted where the health point reads it, so nothing is lost
by not logging it. Sans-IO like the cores: the caller passes the time.
"""

from __future__ import annotations

import logging
from collections import Counter

# Seconds between two lines for the same reason.
DEFAULT_INTERVAL_S = 10.0
# Reasons tracked one by one (the codes are a fixed set of a few dozen); any
# more share the key "other", so the tracking itself stays bounded.
MAX_KEYS = 64


class LogThrottle:
    def __init__(self, logger: logging.Logger, interval: float = DEFAULT_INTERVAL_S,
                 level: int = logging.WARNING, max_keys: int = MAX_KEYS) -> None:
        self.logger = logger
        self.interval = interval
        self.level = level
        self.max_keys = max_keys
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def note(self, key: str, message: str, now: float,
             exc_info: BaseException | None = None) -> bool:
        """Log ``message`` unless a line for ``key`` went out less than ``interval`` ago;
        then count it instead. True when it was logged."""
        held = self.admit(key, now)
        if held is None:
            return False
        if held:
            message = f"{message} (and {held} more like it since the last line)"
        self.logger.log(self.level, "%s", message, exc_info=exc_info)
        return True

    def admit(self, key: str, now: float) -> int | None:
        """None when a line for ``key`` is not due (it is counted instead); else the
        number held back since the last one, and the caller logs its line now."""
        if key not in self._last and len(self._last) >= self.max_keys:
            key = "other"
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] += 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)

    def flush(self, now: float) -> None:
        """One summary line, by key, for what was held back longer than the interval."""
        due = sorted(k for k in self._held if now - self._last[k] >= self.interval)
        if not due:
            return
        counts = ", ".join(f"{k}={self._held.pop(k)}" for k in due)
        self.logger.log(self.level, "held back since the last line: %s", counts)
        for k in due:
            self._last[k] = now

    @property
    def held(self) -> int:
        return sum(self._held.values())

    @property
    def tracked(self) -> int:
        """Reasons with a line on record (at most max_keys, plus "other")."""
        return len(self._last)
