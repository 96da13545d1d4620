"""The webhook notifier (registers itself as "webhook")."""

from collector.notifiers.webhook.notifier import WebhookConfig, WebhookNotifier
from collector.notifiers.webhook.payload import body, classify, sign, verify

__all__ = ["WebhookConfig", "WebhookNotifier", "body", "classify", "sign", "verify"]
