"""The MQTT downlink notifier (registers itself as "mqtt_downlink")."""

from collector.notifiers.mqtt_downlink.message import display_for
from collector.notifiers.mqtt_downlink.notifier import DownlinkConfig, DownlinkNotifier

__all__ = ["DownlinkConfig", "DownlinkNotifier", "display_for"]
