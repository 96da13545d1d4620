"""Where alert events go: one folder per notifier, each registering a factory by name."""

from collector.notifiers import log, mqtt_downlink, webhook  # noqa: F401  (register themselves)
from collector.notifiers.base import REGISTRY, Notifier, NotifierContext, build, register

__all__ = ["REGISTRY", "Notifier", "NotifierContext", "build", "register"]
