"""Webhook notifier: POST each alert event as JSON (aiohttp), signed, with a timeout.

Retries and backoff are the runner's (collector/alerts/delivery.py); this
plugin only classifies each outcome (cityedge/http_outcome.py's table): 2xx
delivered, 408/425/429/503 throttled (honouring Retry-After), other 5xx,
timeouts and refused connections retryable, anything else rejected for good.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from cityedge import yamlconfig
from cityedge.redact import redact_text, redact_url
from collector.alerts.errors import Retryable
from collector.alerts.events import AlertEvent
from collector.notifiers.base import NotifierContext, register
from collector.notifiers.webhook.payload import EVENT_HEADER, SIGNATURE_HEADER, body, classify, sign


@dataclass(frozen=True)
class WebhookConfig:
    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)
    timeout: float = field(default=10.0, metadata={"min": 0.1, "max": 120.0})
    headers: dict[str, str] = field(repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url: expected http:// or https://, got {redact_url(self.url)!r}")


class WebhookNotifier:
    name = "webhook"

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self.counts = {"sent": 0, "failed": 0}

    @classmethod
    def from_options(cls, options: dict[str, Any], doc: yamlconfig.Located,
                     path: yamlconfig.KeyPath) -> WebhookNotifier:
        return cls(yamlconfig.bind(WebhookConfig, options, doc, path))

    def validate(self) -> None:
        for key in self.config.headers:
            if key.lower() in ("content-type", SIGNATURE_HEADER.lower()):
                raise ValueError(f"headers: {key} is set by the notifier itself")

    async def start(self, context: NotifierContext) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout))

    async def send(self, event: AlertEvent) -> None:
        assert self._session is not None, "start() first"
        payload = body(event)
        headers = {**self.config.headers, "Content-Type": "application/json",
                   EVENT_HEADER: event.event_id, "Idempotency-Key": event.event_id}
        if self.config.secret:
            headers[SIGNATURE_HEADER] = sign(self.config.secret, payload, int(time.time()))
        try:
            async with self._session.post(self.config.url, data=payload, headers=headers) as resp:
                error = classify(resp.status, await resp.text(), resp.headers.get("Retry-After"),
                                 resp.headers.get("Date"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.counts["failed"] += 1
            # The URL is the webhook's credential: never in a log line or a dead letter.
            raise Retryable(f"POST {redact_url(self.config.url)}: {redact_text(repr(exc))}"
                            ) from None
        if error is not None:
            self.counts["failed"] += 1
            raise error
        self.counts["sent"] += 1

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def stats(self) -> dict[str, int]:
        return dict(self.counts)


register("webhook", WebhookNotifier.from_options)
