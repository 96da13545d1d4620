"""systemd's notify protocol (cityedge/sdnotify.py) against a real AF_UNIX datagram socket the
test binds, as systemd does: by path and in the abstract namespace ('@')."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityedge.sdnotify import Notifier


def receive(sock: socket.socket, timeout: float = 2.0) -> dict[str, str]:
    sock.settimeout(timeout)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


@pytest.fixture
def bound(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    try:
        yield sock, str(path)
    finally:
        sock.close()


def test_ready_status_reloading_and_stopping_reach_the_socket(
        bound: tuple[socket.socket, str]) -> None:
    sock, path = bound
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled and n.watchdog_s is None
    assert n.ready("2 sensors; uplink up")
    assert receive(sock) == {"READY": "1", "STATUS": "2 sensors; uplink up"}
    assert n.reloading()
    got = receive(sock)
    assert got["RELOADING"] == "1" and int(got["MONOTONIC_USEC"]) > 0
    assert n.status("x" * 500)
    assert receive(sock) == {"STATUS": "x" * 200}  # one line in systemctl status
    assert n.stopping("stopping")
    assert receive(sock) == {"STOPPING": "1", "STATUS": "stopping"}
    assert (n.sent, n.failures) == (4, 0)
    n.close()


def test_an_abstract_socket_name_starts_with_an_at_sign() -> None:
    name = f"cityedge-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready("up")
        assert receive(sock)["READY"] == "1"
    finally:
        sock.close()


def test_the_watchdog_is_fed_from_the_event_loop_at_half_its_interval(
        bound: tuple[socket.socket, str]) -> None:
    sock, path = bound
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    assert n.watchdog_s == 0.2

    async def main() -> None:
        task = asyncio.create_task(n.watchdog_loop())
        await asyncio.sleep(0.55)
        task.cancel()

    asyncio.run(main())
    pings = []
    sock.setblocking(False)
    while True:
        try:
            pings.append(sock.recv(100))
        except BlockingIOError:
            break
    assert set(pings) == {b"WATCHDOG=1"} and 5 <= len(pings) <= 7, pings


def test_a_loop_that_hangs_stops_the_pings(bound: tuple[socket.socket, str]) -> None:
    sock, path = bound
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})

    async def main() -> None:
        task = asyncio.create_task(n.watchdog_loop())
        await asyncio.sleep(0.01)
        before = n.sent
        import time  # noqa: PLC0415
        time.sleep(0.5)  # the loop is stuck: nothing is sent meanwhile
        assert n.sent == before
        task.cancel()

    asyncio.run(main())
    assert receive(sock) == {"WATCHDOG": "1"}


def test_no_watchdog_for_another_pid_or_without_a_socket() -> None:
    other = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000",
                      "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_s is None
    mine = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000",
                     "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_s == 1.0
    off = Notifier({})
    assert not off.enabled and off.ready("up") is False and off.sent == 0

    async def main() -> None:  # disabled: it waits instead of ending the service
        task = asyncio.create_task(off.watchdog_loop())
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()

    asyncio.run(main())


def test_a_socket_that_is_gone_is_counted_never_raised(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert n.ready("up") is False
    assert n.status("still") is False
    assert (n.sent, n.failures) == (0, 2)
    assert caplog.text.count("cannot notify systemd") == 1
