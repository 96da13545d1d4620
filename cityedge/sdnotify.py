"""systemd's service notification protocol, spoken by the agent and the collector.

With ``Type=notify`` systemd starts a service, sets ``NOTIFY_SOCKET`` to an
AF_UNIX datagram socket (a name starting with ``@`` is in the abstract
namespace) and waits for ``READY=1``; with ``WatchdogSec=`` it also sets
``WATCHDOG_USEC`` and restarts the service when ``WATCHDOG=1`` stops coming.
The watchdog is fed from the event loop (``watchdog_loop``), so a loop that
hangs, not only a process that dies, gets the service restarted. Around a
reload the service says ``RELOADING=1`` (with ``MONOTONIC_USEC``, which
systemd 253 and later want) and then ``READY=1``; on the way out
``STOPPING=1``; ``STATUS=`` is the one line ``systemctl status`` shows.

The protocol is sd_notify(3): one datagram of newline-separated
``KEY=value`` assignments. No library is needed for it. Without
``NOTIFY_SOCKET`` (not run by systemd, or ``Type=exec``) every call does
nothing. A notification that cannot be sent never stops the service: it is
counted (``failures``), and the first one is logged; nor does a slow reader stall
the event loop (the socket does not block: a full queue is such a failure).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

# The watchdog is fed at this fraction of WATCHDOG_USEC (sd_watchdog_enabled(3)
# recommends half the interval, so one late tick is not yet a restart).
WATCHDOG_FRACTION = 0.5
# STATUS= longer than this is cut: systemctl status shows one line.
MAX_STATUS_CHARS = 200


def _address(raw: str) -> str | bytes | None:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()  # abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # vsock and other kinds: not for a Raspberry Pi service


class Notifier:
    """Sends notifications to ``NOTIFY_SOCKET`` (taken from ``env``, os.environ by default)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = self._watchdog(env)
        self.sent = 0
        self.failures = 0
        self._sock: socket.socket | None = None

    @staticmethod
    def _watchdog(env: Mapping[str, str]) -> float | None:
        """The watchdog interval in seconds, or None when no watchdog is asked of us."""
        try:
            usec = int(env.get("WATCHDOG_USEC", "0"))
        except ValueError:
            return None
        pid = env.get("WATCHDOG_PID")
        if usec <= 0 or (pid and pid != str(os.getpid())):
            return None  # another process of the service is watched, not this one
        return usec / 1e6

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **assignments: str | int) -> bool:
        """One datagram of ``KEY=value`` lines (keyword names are the keys); False if not sent."""
        if self.address is None:
            return False
        text = "\n".join(f"{key}={value}" for key, value in assignments.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never wait on systemd: a full queue (BlockingIOError) is a failure, counted.
                self._sock.setblocking(False)
            self._sock.sendto(text.encode(), self.address)
        except OSError as exc:
            self.failures += 1
            if self.failures == 1:
                log.warning("cannot notify systemd at %s (%s); counted, the service runs on",
                            os.environ.get("NOTIFY_SOCKET", "?"), exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status[:MAX_STATUS_CHARS])

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status[:MAX_STATUS_CHARS])

    def reloading(self) -> bool:
        return self.notify(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000,
                           STATUS="reloading the config")

    def stopping(self, status: str) -> bool:
        return self.notify(STOPPING=1, STATUS=status[:MAX_STATUS_CHARS])

    async def watchdog_loop(self) -> None:
        """``WATCHDOG=1`` every half interval, for as long as the event loop runs it (no
        watchdog asked: it waits, so a service may treat its end as a failure)."""
        interval = self.watchdog_s
        if self.address is None or interval is None:
            await asyncio.Event().wait()
            return
        while True:
            self.notify(WATCHDOG=1)
            await asyncio.sleep(interval * WATCHDOG_FRACTION)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
