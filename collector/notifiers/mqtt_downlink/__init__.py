"""The MQTT downlink notifier (registers itself as "mqtt_downlink")."""

from collector.notifiers.mqtt_downlink.message import (
    Display,
    DisplayAck,
    DownlinkError,
    decode_ack,
    decode_display,
    encode_ack,
    encode_display,
    terminal_ack,
)
from collector.notifiers.mqtt_downlink.notifier import DownlinkConfig, DownlinkNotifier

__all__ = [
    "Display",
    "DisplayAck",
    "DownlinkConfig",
    "DownlinkError",
    "DownlinkNotifier",
    "decode_ack",
    "decode_display",
    "encode_ack",
    "encode_display",
    "terminal_ack",
]
