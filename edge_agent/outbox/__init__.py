"""The gateway's durable outbox and the ack window that drains it."""

from edge_agent.outbox.store import Depth, Outbox
from edge_agent.outbox.window import AckResult, DeliveryWindow, Plan, Resend, SendNew

__all__ = ["AckResult", "DeliveryWindow", "Depth", "Outbox", "Plan", "Resend", "SendNew"]
