"""The gateway's durable outbox and the ack window that drains it."""

from edge_agent.outbox.store import Depth, Outbox
from edge_agent.outbox.window import DeliveryWindow, Plan, Resend, SendNew

__all__ = ["DeliveryWindow", "Depth", "Outbox", "Plan", "Resend", "SendNew"]
