"""The webhook's wire format, sans-IO: the JSON body, its signature, what an answer means.

Receivers verify with ``verify()`` (or the same three lines in any language):
the ``X-Cityedge-Signature`` header is ``t=<unix seconds>,v1=<hex>`` where
hex is HMAC-SHA256(secret, "<t>.<body>"). Signing the timestamp with the body
lets a receiver refuse replays older than a few minutes. ``Idempotency-Key``
is the event id (alert id and event number): a retried POST, or the same event
from a second collector, carries the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from cityedge import http_outcome
from cityedge.http_outcome import Kind
from collector.alerts.errors import DeliveryRejected, NotifyError, Retryable, Throttled
from collector.alerts.events import AlertEvent

BODY_VERSION = 1
SIGNATURE_HEADER = "X-Cityedge-Signature"
EVENT_HEADER = "X-Cityedge-Event-Id"
# Receivers should refuse signatures older than this (Stripe uses the same 5 minutes).
DEFAULT_TOLERANCE_S = 300
# A Retry-After beyond this is capped: an alert an hour late is barely an alert.
MAX_RETRY_AFTER_S = 600.0
# The wait on a throttling answer without a (readable) Retry-After.
THROTTLED_DEFAULT_S = 5.0


def body(event: AlertEvent) -> bytes:
    doc = {"version": BODY_VERSION, "event_id": event.event_id, **event.as_dict()}
    if event.display:
        doc["display"] = event.display
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(secret: str, payload: bytes, now_s: int) -> str:
    mac = hmac.new(secret.encode(), f"{now_s}.".encode() + payload, hashlib.sha256)
    return f"t={now_s},v1={mac.hexdigest()}"


def verify(secret: str, header: str, payload: bytes, now_s: int,
           tolerance_s: int = DEFAULT_TOLERANCE_S) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now_s - t) > tolerance_s:
        return False
    expected = sign(secret, payload, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def classify(status: int, text: str, retry_after_header: str | None,
             date_header: str | None = None) -> NotifyError | None:
    """None for 2xx; else what the delivery loop should do (cityedge/http_outcome.py's
    kinds): throttled waits Retry-After (5 s if not told), other 5xx retries after
    the backoff, anything else is rejected for good."""
    headers = {k: v for k, v in (("Retry-After", retry_after_header), ("Date", date_header))
               if v is not None}
    outcome = http_outcome.classify(status, headers, text, max_retry_after=MAX_RETRY_AFTER_S)
    if outcome.kind is Kind.OK:
        return None
    message = f"HTTP {status}: {outcome.detail[:300]}"
    if outcome.kind is Kind.THROTTLED:
        wait = outcome.retry_after
        return Throttled(message, THROTTLED_DEFAULT_S if wait is None else wait)
    if outcome.kind is Kind.TRANSIENT:
        return Retryable(message)
    return DeliveryRejected(message)
