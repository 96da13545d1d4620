"""A simulated MQTT broker and candidates, on simulated time, for the election's properties.

The broker does what the election relies on, and no more: it keeps retained
messages (an empty payload deletes), delivers each connection's messages in
order, publishes a connection's will when the connection closes (at once when
the socket closes, after 1.5 keepalives of silence otherwise, never after a
clean disconnect), and kicks an older connection of the same client id.
Each link direction has its own random delay (at most ``delay``) and stays in
order, as TCP does; a stall holds a link's messages until it ends, and a
connection the broker has closed in the meantime loses them. Clients notice a
dead connection when a stall ends (the reset) or after two keepalives without
hearing anything (paho's PINGREQ gets no answer).
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.alerts.election import Election, LeaseMessage, decode, encode

RECONNECT_S = 0.5
TIMER_S = 0.1


@dataclass
class Conn:
    node: Node
    alive: bool = True
    last_heard: float = 0.0
    up_free: float = 0.0  # when the last message on the link arrives (links stay in order)
    down_free: float = 0.0
    clean: bool = False


@dataclass
class Node:
    name: str
    skew_ns: int
    election: Election
    alive: bool = True
    conn: Conn | None = None
    up_stall_until: float = 0.0
    down_stall_until: float = 0.0
    last_received: float = 0.0
    incarnation: int = 0
    led: list[tuple[float, float]] = field(default_factory=list)


class Sim:
    def __init__(self, names: list[str], *, keepalive: float, settle: float, delay: float,
                 seed: int, skews_ns: list[int] | None = None) -> None:
        self.now = 0.0
        self.keepalive, self.settle, self.delay = keepalive, settle, delay
        self.rng = random.Random(seed)
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.retained: dict[str, bytes] = {}
        self.conns: list[Conn] = []
        skews = skews_ns or [0] * len(names)
        self.nodes = {n: Node(n, s, Election(n, keepalive, settle)) for n, s in zip(names, skews,
                                                                                      strict=True)}
        self.overlaps: list[tuple[float, list[str]]] = []

    # -- the event queue --------------------------------------------------------------
    def at(self, t: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, action))

    def run(self, until: float, check_every: float = 0.05) -> None:
        t = self.now
        while t <= until:
            self.at(t, self.check)
            t += check_every
        while self._events and self._events[0][0] <= until:
            self.now, _, action = heapq.heappop(self._events)
            action()
        self.now = until

    def leaders(self) -> list[str]:
        return sorted(n.name for n in self.nodes.values()
                      if n.alive and n.election.leading(self.now))

    def check(self) -> None:
        leading = self.leaders()
        if len(leading) > 1:
            self.overlaps.append((self.now, leading))

    # -- links ------------------------------------------------------------------------
    def _arrival(self, free: float, stall_until: float) -> float:
        return max(free, self.now + self.rng.uniform(0, self.delay),
                   stall_until + self.rng.uniform(0, self.delay))

    def _up(self, conn: Conn, action: Callable[[], None]) -> None:
        conn.up_free = self._arrival(conn.up_free, conn.node.up_stall_until)

        def arrive() -> None:
            if conn.alive:  # the broker drops what arrives on a connection it closed
                action()
        self.at(conn.up_free, arrive)

    def _down(self, conn: Conn, action: Callable[[], None]) -> None:
        conn.down_free = self._arrival(conn.down_free, conn.node.down_stall_until)

        def arrive() -> None:
            if conn.node.conn is conn:  # the client moved on to another connection
                action()
        self.at(conn.down_free, arrive)

    # -- the broker -----------------------------------------------------------------------
    def _publish(self, topic: str, payload: bytes, retain: bool) -> None:
        if retain:
            if payload:
                self.retained[topic] = payload
            else:
                self.retained.pop(topic, None)
        for c in self.conns:
            if c.alive:
                self._down(c, functools.partial(self._deliver, c.node, topic, payload))

    def _heard(self, conn: Conn) -> None:
        conn.last_heard = self.now
        self.at(self.now + 1.5 * self.keepalive, lambda: self._keepalive(conn))

    def _keepalive(self, conn: Conn) -> None:
        if conn.alive and self.now - conn.last_heard >= 1.5 * self.keepalive - 1e-9:
            self._close(conn)

    def _close(self, conn: Conn) -> None:
        if not conn.alive:
            return
        conn.alive = False
        self.conns.remove(conn)
        if not conn.clean:
            self._publish(conn.node.name, b"", True)  # the will
        node = conn.node
        if node.conn is conn and node.alive:
            # The reset reaches the client behind what the broker sent before it.
            self._down(conn, lambda: self._lost(node, conn))

    def _broker_connect(self, conn: Conn) -> None:
        for old in [c for c in self.conns if c.node.name == conn.node.name]:
            self._close(old)  # the same client id: the broker kicks the older connection
        self.conns.append(conn)
        self._heard(conn)
        self._down(conn, lambda: self._connected(conn.node))
        for topic, payload in list(self.retained.items()):
            self._down(conn, functools.partial(self._deliver, conn.node, topic, payload))

    # -- the clients ------------------------------------------------------------------------
    def start(self, name: str, at: float) -> None:
        def act() -> None:
            node = self.nodes[name]
            if node.conn is None and node.incarnation == 0:  # not already restarted
                self._connect(node)
                self._timer(node, node.incarnation)
        self.at(at, act)

    def _connect(self, node: Node) -> None:
        if not node.alive:
            return
        conn = Conn(node)
        node.conn = conn
        node.last_received = self.now
        self._up(conn, lambda: self._broker_connect(conn))

    def _connected(self, node: Node) -> None:
        node.last_received = self.now
        self._send(node, node.election.connected(self.now))

    def _deliver(self, node: Node, topic: str, payload: bytes) -> None:
        if not node.alive:
            return
        node.last_received = self.now
        out = node.election.receive(decode(topic, payload), self.now,
                                    int(self.now * 1e9) + 10**18 + node.skew_ns)
        self._send(node, out)

    def _send(self, node: Node, messages: list[LeaseMessage]) -> None:
        conn = node.conn
        if conn is None:
            return
        for m in messages:
            payload, retain = encode(m)

            def arrive(m: LeaseMessage = m, payload: bytes = payload, retain: bool = retain,
                       conn: Conn = conn) -> None:
                self._heard(conn)
                self._publish(m.holder, payload, retain)

            self._up(conn, arrive)

    def _timer(self, node: Node, incarnation: int) -> None:
        if not node.alive or node.incarnation != incarnation:
            return
        if node.conn is not None and self.now - node.last_received >= 2 * self.keepalive:
            self._lost(node, node.conn)  # paho: no PINGRESP within a keepalive
        self._send(node, node.election.tick(self.now))
        self.at(self.now + TIMER_S, lambda: self._timer(node, incarnation))

    def _lost(self, node: Node, conn: Conn) -> None:
        if node.conn is not conn or not node.alive:
            return
        node.conn = None
        node.election.disconnected()
        if conn.alive:
            self._up(conn, lambda: self._close(conn))  # the client closes its socket
        self.at(self.now + RECONNECT_S, lambda: self._connect(node))

    # -- faults -------------------------------------------------------------------------------
    def kill(self, name: str, at: float) -> None:
        """kill -9: the kernel closes the socket, so the broker sees it (and sends the will)."""
        def act() -> None:
            node = self.nodes[name]
            if not node.alive:
                return
            node.alive = False
            if node.conn is not None:
                conn = node.conn
                self._up(conn, lambda: self._close(conn))
        self.at(at, act)

    def restart(self, name: str, at: float) -> None:
        """A new process with the same id: a fresh election."""
        def act() -> None:
            node = self.nodes[name]
            if node.alive:
                return
            node.alive, node.conn = True, None
            node.incarnation += 1
            node.election = Election(name, self.keepalive, self.settle)
            node.up_stall_until = node.down_stall_until = 0.0
            self._connect(node)
            self._timer(node, node.incarnation)
        self.at(at, act)

    def stall(self, name: str, at: float, seconds: float, up: bool = True,
              down: bool = True) -> None:
        """The host's network stops passing packets for a while (TCP holds them)."""
        def act() -> None:
            node = self.nodes[name]
            if up:
                node.up_stall_until = max(node.up_stall_until, self.now + seconds)
            if down:
                node.down_stall_until = max(node.down_stall_until, self.now + seconds)
        self.at(at, act)

    def release(self, name: str, at: float) -> None:
        """Clean shutdown: withdraw, then a clean DISCONNECT (no will) a moment later."""
        def act() -> None:
            node = self.nodes[name]
            if not node.alive or node.conn is None:
                return
            conn = node.conn
            self._send(node, node.election.release())
            conn.clean = True

            def gone() -> None:
                node.alive = False
                self._up(conn, lambda: self._close(conn))
            self.at(self.now + 0.2, gone)
        self.at(at, act)
