"""A TCP proxy on loopback that a test can cut or stall: the uplink going away, or going
silent (a frozen host, a dead link), without a firewall."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a target; ``cut(seconds)`` drops every connection
    and refuses new ones until the time is up; ``stall(seconds)`` keeps connections
    open but passes nothing (unread bytes wait in the kernel, as on a dead link)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._cut_until = 0.0
        self._stall_until = 0.0
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="proxy")

    def start(self) -> CuttableProxy:
        self._thread.start()
        return self

    def cut(self, seconds: float) -> None:
        with self._lock:
            self._cut_until = time.monotonic() + seconds
            conns, self._conns = self._conns, set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def stall(self, seconds: float) -> None:
        self._stall_until = time.monotonic() + seconds

    @property
    def is_cut(self) -> bool:
        return time.monotonic() < self._cut_until

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.is_cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        try:
            # A cut may close both sockets before this thread registers them (fd -1).
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while not self._stop.is_set():
                if time.monotonic() < self._stall_until:
                    time.sleep(0.02)
                    continue
                for key, _ in sel.select(0.1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns.discard(a)
                self._conns.discard(b)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self.cut(0)
