"""The notifier plugin interface and the name -> factory registry.

A notifier is tiny: ``validate()`` checks its config without touching the
network, ``start()`` connects, ``send(event)`` delivers one alert event or
raises a classified ``NotifyError`` (Retryable, Throttled,
DeliveryRejected), and ``close()`` lets go. Queueing, retries, backoff and
counting drops belong to the runner (collector/alerts/delivery.py), never to a
plugin: Telegraf's models/ vs plugins/ split. Each plugin registers itself from its folder's
``__init__.py``; the runner never names one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cityedge.uplink.seal import KeyRing
from cityedge.uplink.topics import DEFAULT_PREFIX
from cityedge.yamlconfig import KeyPath, Located
from collector.alerts.events import AlertEvent


def _no_gateways(match: Mapping[str, str]) -> list[str]:
    return []


@dataclass(frozen=True)
class NotifierContext:
    """What the runner lends a notifier at start.

    gateways: known gateway ids whose location tags (district, site, site_kind)
    equal every item of the given mapping; the engine learns them from readings.
    topic_prefix: the MQTT topic prefix the collector uses (cityedge/v1).
    keyring: each gateway's seal key, for what is sent to a gateway
    (cityedge/uplink/seal.py); None: nothing is sealed (insecure).
    """

    gateways: Callable[[Mapping[str, str]], list[str]] = _no_gateways
    topic_prefix: str = DEFAULT_PREFIX
    keyring: KeyRing | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("collector.notifiers"))


class Notifier(Protocol):
    name: str

    def validate(self) -> None:
        """Check the config without any I/O; raise ValueError("key: message")."""

    async def start(self, context: NotifierContext) -> None: ...

    async def send(self, event: AlertEvent) -> None: ...

    async def close(self) -> None: ...

    def stats(self) -> dict[str, int]:
        """The plugin's own counters (sent, acked, ...): the collector's health point
        (cityedge_collector) shows each as ``notify_<name>_<counter>``
        (collector/alerts/delivery.py ``Delivery.health_fields``)."""


NotifierFactory = Callable[[dict[str, Any], Located, KeyPath], Notifier]
REGISTRY: dict[str, NotifierFactory] = {}


def register(name: str, factory: NotifierFactory) -> None:
    REGISTRY[name] = factory


def build(kind: str, options: dict[str, Any], doc: Located, path: KeyPath) -> Notifier:
    """Make and validate one notifier; errors name the config file's line and key."""
    if kind not in REGISTRY:
        raise doc.error((*path, "type"),
                        f"expected one of {', '.join(sorted(REGISTRY))}, got {kind!r}")
    notifier = REGISTRY[kind](options, doc, path)
    try:
        notifier.validate()
    except ValueError as exc:
        key, _, message = str(exc).partition(": ")
        raise doc.error((*path, key), message or str(exc)) from None
    return notifier
