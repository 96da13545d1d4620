"""Every MQTT topic cityedge uses, in one place.

``{prefix}/{gateway}/up``      gateway -> collector, batches of readings (QoS 1)
``{prefix}/{gateway}/ack``     collector -> gateway, end-to-end acks (QoS 1)
``{prefix}/{gateway}/status``  gateway health: retained ``online``, last will ``offline``
``{prefix}/{gateway}/down``    collector -> gateway, commands and alert displays
``{prefix}/{gateway}/down_ack`` gateway -> collector, a terminal's ack of a display

Collectors subscribe to uplinks through an MQTT 5 shared subscription so that
several of them split the load and each batch reaches exactly one. The
alert lease of several collectors is not on the broker but in etcd
(docs/alerts.md, "Several collectors").
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "cityedge/v1"
DEFAULT_SHARE_GROUP = "collectors"
# The level under the prefix that only collectors use: no gateway may take it as its id.
COLLECTORS_LEVEL = "collectors"
RESERVED_LEVELS = frozenset({COLLECTORS_LEVEL})


@dataclass(frozen=True, slots=True)
class Grants:
    """What one broker user may do, as topic filters (the broker's ACL, generated from these).

    ``read`` also covers shared subscriptions: Mosquitto 2.0 checks read access
    when it delivers a message, against the message's own topic, so
    ``$share/collectors/{prefix}/+/up`` delivers what ``{prefix}/+/up`` allows.
    """

    write: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    readwrite: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = DEFAULT_PREFIX

    def up(self, gateway: str) -> str:
        return f"{self.prefix}/{gateway}/up"

    def ack(self, gateway: str) -> str:
        return f"{self.prefix}/{gateway}/ack"

    def status(self, gateway: str) -> str:
        return f"{self.prefix}/{gateway}/status"

    def down(self, gateway: str) -> str:
        return f"{self.prefix}/{gateway}/down"

    def down_ack(self, gateway: str) -> str:
        return f"{self.prefix}/{gateway}/down_ack"

    def up_subscription(self, share_group: str | None = DEFAULT_SHARE_GROUP) -> str:
        topic = f"{self.prefix}/+/up"
        return f"$share/{share_group}/{topic}" if share_group else topic

    def status_subscription(self) -> str:
        return f"{self.prefix}/+/status"

    def gateway_grants(self, gateway: str) -> Grants:
        """A gateway speaks only for itself: its own uplink, status and display acks out,
        its own acks and downlink in."""
        return Grants(write=(self.up(gateway), self.status(gateway), self.down_ack(gateway)),
                      read=(self.ack(gateway), self.down(gateway)))

    def collector_grants(self) -> Grants:
        """Collectors read every gateway's uplink, status and display acks, write every
        gateway's acks and downlink, and share their own ``collectors/`` tree."""
        every = "+"
        return Grants(
            write=(self.ack(every), self.down(every)),
            read=(self.up(every), self.status(every), self.down_ack(every)),
            readwrite=(f"{self.prefix}/{COLLECTORS_LEVEL}/#",),
        )

    def gateway_of(self, topic: str) -> str | None:
        """The gateway id in ``{prefix}/{gateway}/<kind>``, or None if the topic is not ours."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        rest = topic[len(head) :].split("/")
        if len(rest) != 2 or not rest[0]:
            return None
        return rest[0]
