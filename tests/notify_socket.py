"""A datagram socket where systemd's would be (NOTIFY_SOCKET), for tests of real processes."""

from __future__ import annotations

import socket
import threading
from pathlib import Path


class NotifySocket:
    """What systemd would receive: each datagram as a dict of its assignments, read as they
    come (the kernel queues only a few datagrams per socket)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append(dict(line.split("=", 1) for line in data.split("\n")))

    def poll(self) -> list[dict[str, str]]:
        return list(self.messages)

    def sequence(self) -> list[str]:
        """The messages in order, watchdog pings and bare STATUS= left out."""
        return ["+".join(k for k in m if k not in ("STATUS", "MONOTONIC_USEC"))
                for m in self.poll() if set(m) - {"STATUS", "WATCHDOG"}]

    def close(self) -> None:
        self._stop.set()
        self._reader.join(5)
        self.sock.close()
