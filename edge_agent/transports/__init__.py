"""How batches leave the gateway: MQTT (default) or HTTP, with the same ack semantics.

A transport sends encoded batches and hands back the collector's acks; it
never decides what to send or delete (that is the outbox window's job).
"""

from edge_agent.transports.base import Transport
from edge_agent.transports.mqtt import MqttTransport

__all__ = ["MqttTransport", "Transport"]
