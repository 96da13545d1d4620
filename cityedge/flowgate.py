"""Backpressure for a subscriber, sans-IO: how many received messages are not answered yet.

An MQTT 5 client announces a Receive Maximum, and a broker that honours it never
has more than that many QoS 1 messages unacknowledged at the client. Debian's
Mosquitto 2.0.11 does not, once messages queue for a client: a subscriber that
announced 200 was measured holding 1,800 unacked (docs/delivery.md). So the
client bounds itself: it counts each message it hands on (``received``) and each
it has answered (``answered``: PUBACKed, whatever the outcome), and while
``paused`` it reads nothing more from the socket. TCP then pushes back on the
broker, which keeps the messages queued for us (its ``max_queued_messages``)
instead of our memory holding them.

One read of the socket can bring several packets, so a client may hold a few past
the limit; the shell bounds that (paho reads at most as many packets per call as
it has messages of its own in flight).
"""

from __future__ import annotations


class FlowGateError(ValueError):
    """The gate was set up or driven in a way no subscriber can be (a local mistake)."""


class FlowGate:
    """At most ``limit`` messages received and not answered before reading pauses."""

    __slots__ = ("limit", "open", "pauses", "peak")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise FlowGateError(f"a limit of {limit} messages")
        self.limit = limit
        self.open = 0  # received, not answered
        self.peak = 0
        self.pauses = 0  # times reading paused (the health point shows it)

    @property
    def paused(self) -> bool:
        return self.open >= self.limit

    def received(self) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        if self.open == self.limit:
            self.pauses += 1

    def answered(self) -> bool:
        """One message answered; True when that reopens reading."""
        if self.open <= 0:
            raise FlowGateError("more messages answered than received")
        self.open -= 1
        return self.open == self.limit - 1
