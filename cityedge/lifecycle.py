"""Signals for a long-running service, written once for the agent and the collector.

uvicorn's ``handle_exit`` shape: the first SIGINT or SIGTERM asks the service
to finish gracefully (``should_exit``), a second one exits at once. SIGHUP
calls the service's reload, or, where there is nothing to reload, is logged
and ignored: its default action would end the process without a line in the
log (a closed SSH session sends it).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

log = logging.getLogger(__name__)


class ExitSignals:
    """Installs the handlers on the running loop; ``should_exit`` is what the service awaits."""

    def __init__(self, *, stopping: str, forced: str,
                 reload: Callable[[], None] | None = None) -> None:
        self.should_exit = asyncio.Event()
        self._stopping, self._forced, self._reload = stopping, forced, reload

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, self.handle_hangup)

    def handle_exit(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.should_exit.is_set():
            log.warning("second %s: exiting now (%s)", name, self._forced)
            raise SystemExit(1)
        log.info("%s: %s", name, self._stopping)
        self.should_exit.set()

    def handle_hangup(self) -> None:
        if self._reload is None:
            log.info("SIGHUP: nothing to reload here; restart the service to read its config")
            return
        self._reload()
