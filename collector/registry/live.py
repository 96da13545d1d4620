"""The registry as a running collector sees it: re-read when the file changes, or on SIGHUP.

``refresh()`` compares the file's (inode, size, mtime) with the last read and
loads it again only when they differ; the service calls it once a second and
on SIGHUP (``force``). A file that no longer parses keeps the last good
registry in force: the error is logged and counted, never a crash, and never
an empty registry that would refuse every gateway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from collector.registry.model import Registry, RegistryError, file_stamp, load

log = logging.getLogger(__name__)

# How often the service looks at the file: an edit is in force within this.
REFRESH_INTERVAL_S = 1.0


@dataclass
class LiveStats:
    reloads: int = 0
    reload_errors: int = 0
    last_error: str = ""


class LiveRegistry:
    def __init__(self, path: Path) -> None:
        """Reads the file now: a collector does not start on a registry it cannot read."""
        self.path = path
        self.stats = LiveStats()
        self._stamp = file_stamp(path)
        self.current: Registry = load(path)

    def refresh(self, *, force: bool = False) -> bool:
        """Load the file again if it changed (or ``force``); True if a new registry is in force."""
        stamp = file_stamp(self.path)
        if not force and stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            registry = load(self.path)
        except RegistryError as exc:
            self.stats.reload_errors += 1
            self.stats.last_error = str(exc)
            log.error("registry not reloaded, the previous one stays in force: %s", exc)
            return False
        self.current = registry
        self.stats.reloads += 1
        log.info("registry reloaded: %d active gateways, %d revoked",
                 len(registry.active()), len(registry.gateways) - len(registry.active()))
        return True
